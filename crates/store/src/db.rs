//! One synchronous connection type over both backends, so the domain SQL is written once.
//!
//! SQL is written with `?` placeholders and portable types (BIGINT, TEXT, integers for
//! flags and microsecond timestamps); for PostgreSQL the placeholders become `$1..$n`.

use std::collections::HashMap;
use std::time::Duration;

use kontor_core::{CaseId, CustomerId, MessageId, TeamId, Timestamp, UserId};

use crate::StoreError;

/// Which database engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Raw bytes: a SQLite BLOB, a PostgreSQL BYTEA (never read as text).
    Bytes(Vec<u8>),
}

impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Bytes(v)
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Self {
        Val::Bytes(v.to_vec())
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(v as i64)
    }
}
/// A moment is stored as microseconds since the epoch.
impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Self {
        Val::Int(v.as_micros())
    }
}

/// Ids are stored as their numbers.
macro_rules! id_vals {
    ($($id:ty),+) => {$(
        impl From<$id> for Val {
            fn from(v: $id) -> Self {
                Val::Int(v.get())
            }
        }
    )+};
}
id_vals!(CaseId, CustomerId, MessageId, TeamId, UserId);

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Val::Null)
    }
}

/// Builds an array of `Val` from mixed values.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { [$($crate::db::Val::from($v)),*] };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    /// A required integer column: an error for NULL or a non-integer (a corrupt row).
    pub fn req_i64(&self, i: usize, column: &str) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Ok(*v),
            Some(Val::Null) | None => Err(StoreError::Corrupt(format!("{column} is NULL"))),
            Some(other) => Err(StoreError::Corrupt(format!("{column} is not an integer: {other:?}"))),
        }
    }
    /// A required text column: an error for NULL.
    pub fn req_text(&self, i: usize, column: &str) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Ok(s.clone()),
            Some(Val::Null) | None => Err(StoreError::Corrupt(format!("{column} is NULL"))),
            Some(other) => Err(StoreError::Corrupt(format!("{column} is not text: {other:?}"))),
        }
    }
    /// A required timestamp column (microseconds since the epoch): an error for NULL or a
    /// non-integer.
    pub fn req_ts(&self, i: usize, column: &str) -> Result<Timestamp, StoreError> {
        self.req_i64(i, column).map(Timestamp::from_micros)
    }
    /// A nullable timestamp column (microseconds since the epoch): an error for a non-integer.
    pub fn opt_ts(&self, i: usize, column: &str) -> Result<Option<Timestamp>, StoreError> {
        match self.0.get(i) {
            Some(Val::Null) | None => Ok(None),
            _ => self.req_ts(i, column).map(Some),
        }
    }
    /// A required column holding one of an enum's spellings: an error for NULL or an unknown
    /// value (never a default).
    pub fn req_enum<T>(&self, i: usize, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.req_text(i, column)?;
        parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} holds an unknown value {text:?}")))
    }
    /// A nullable column holding one of an enum's spellings: an error for an unknown value.
    pub fn opt_enum<T>(&self, i: usize, column: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, StoreError> {
        match self.opt_text(i) {
            None => Ok(None),
            Some(text) => parse(&text)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("{column} holds an unknown value {text:?}"))),
        }
    }
    /// Integer column, 0 for NULL (lenient): only where a missing value really means 0.
    /// Stored values, `RETURNING id` and aggregates such as `COUNT` are read with
    /// [`Row::req_i64`].
    pub fn i64(&self, i: usize) -> i64 {
        self.opt_i64(i).unwrap_or(0)
    }
    /// Nullable integer column.
    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Some(*v),
            Some(Val::Real(v)) => Some(*v as i64),
            Some(Val::Text(s)) => s.parse().ok(),
            _ => None,
        }
    }
    /// Float column (0.0 for NULL).
    pub fn f64(&self, i: usize) -> f64 {
        match self.0.get(i) {
            Some(Val::Int(v)) => *v as f64,
            Some(Val::Real(v)) => *v,
            _ => 0.0,
        }
    }
    /// Text column, "" for NULL (lenient): for computed text such as a search snippet, or
    /// where a row must not fail its reader; stored values are read with [`Row::req_text`].
    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }
    /// Nullable text column.
    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Some(s.clone()),
            Some(Val::Int(v)) => Some(v.to_string()),
            _ => None,
        }
    }
    /// Nullable bytes column (BLOB / BYTEA).
    pub fn opt_bytes(&self, i: usize) -> Option<&[u8]> {
        match self.0.get(i) {
            Some(Val::Bytes(b)) => Some(b),
            Some(Val::Text(s)) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// An open connection to either backend.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

/// A PostgreSQL client with its own prepared-statement cache.
pub struct PgConn {
    /// Always `Some` until dropped (see `Drop`).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl Drop for PgConn {
    /// The synchronous client shuts down its own runtime when dropped, which panics on a
    /// thread that runs an async runtime: drop it on a plain thread there.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(client)).join();
            } else {
                drop(client);
            }
        }
    }
}

impl PgConn {
    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        self.client.as_mut().ok_or_else(|| StoreError::Unavailable("connection closed".into()))
    }
}

impl Conn {
    /// Opens a connection for `url` (`sqlite:PATH` or `postgres://...`).
    pub fn open(backend: Backend, url: &str) -> Result<Conn, StoreError> {
        match backend {
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
                let c = rusqlite::Connection::open(path).map_err(StoreError::from)?;
                c.busy_timeout(Duration::from_secs(10)).map_err(StoreError::from)?;
                c.execute_batch(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
                     PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;",
                )
                .map_err(StoreError::from)?;
                c.set_prepared_statement_cache_capacity(128);
                Ok(Conn::Sqlite(c))
            }
            Backend::Postgres => {
                let mut cfg: postgres::Config =
                    url.parse().map_err(|e: postgres::Error| StoreError::Config(format!("database URL: {e}")))?;
                cfg.connect_timeout(Duration::from_secs(3));
                cfg.application_name("kontor");
                let client = cfg.connect(postgres::NoTls).map_err(StoreError::from)?;
                Ok(Conn::Postgres(Box::new(PgConn { client: Some(client), statements: HashMap::new() })))
            }
        }
    }

    /// The backend of this connection.
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns the number of rows changed.
    pub fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Conn::Postgres(pg) => {
                let st = pg.statement(sql)?;
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)).collect();
                Ok(pg.client()?.execute(&st, &refs)?)
            }
        }
    }

    /// Runs one query and returns all rows.
    pub fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Val::Null,
                            rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Val::Real(v),
                            rusqlite::types::ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                            rusqlite::types::ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
                        });
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Conn::Postgres(pg) => {
                let st = pg.statement(sql)?;
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)).collect();
                let rows = pg.client()?.query(&st, &refs)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs several statements without parameters (DDL, BEGIN/COMMIT).
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => Ok(pg.client()?.batch_execute(sql)?),
        }
    }

    /// True if the connection can no longer be used.
    pub fn is_broken(&self) -> bool {
        match self {
            Conn::Sqlite(_) => false,
            Conn::Postgres(pg) => pg.client.as_ref().is_none_or(|c| c.is_closed()),
        }
    }

    /// Access to the PostgreSQL client for LISTEN/NOTIFY.
    pub fn pg_client(&mut self) -> Option<&mut postgres::Client> {
        match self {
            Conn::Postgres(pg) => pg.client.as_mut(),
            Conn::Sqlite(_) => None,
        }
    }
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client()?.prepare(&numbered_placeholders(sql))?;
        if self.statements.len() > 4096 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// Rewrites `?` placeholders as `$1, $2, ...` (outside of string literals).
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut in_str = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                in_str = !in_str;
                out.push(ch);
            }
            '?' if !in_str => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(ch),
        }
    }
    out
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Val::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v as i64))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v as i64))
        } else if *t == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?.map(|v| Val::Real(v as f64))
        } else if *t == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Val::Real)
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(|v| Val::Int(v as i64))
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Val::Bytes)
        } else if *t == Type::VOID {
            None
        } else {
            r.try_get::<_, Option<String>>(i)?.map(Val::Text)
        };
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Val::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            Val::Int(v) if *ty == Type::TEXT || *ty == Type::VARCHAR => v.to_string().to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Real(v) if *ty == Type::FLOAT4 => (*v as f32).to_sql(ty, out),
            Val::Real(v) => v.to_sql(ty, out),
            Val::Text(s) => s.as_str().to_sql(ty, out),
            Val::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_string_literals() {
        assert_eq!(
            numbered_placeholders("SELECT ? , '?' , x FROM t WHERE a=? AND b='it''s?'"),
            "SELECT $1 , '?' , x FROM t WHERE a=$2 AND b='it''s?'"
        );
    }
}
