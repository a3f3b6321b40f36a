//! Database fixtures: a SQLite file in a temporary directory, a fresh PostgreSQL database per
//! test, and a store opened on either.
//!
//! PostgreSQL is taken from `KONTOR_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the role must be allowed to create
//! databases. Each test gets its own database `kontor_t_<random>`, dropped afterwards (also
//! when the test panics). If the server cannot be reached, the test is skipped with a notice,
//! unless `CI=true`, where it fails.

use std::path::Path;

use kontor_store::{Backend, Conn, Store, StoreError, StoreSettings};
use tempfile::TempDir;

use crate::url::{redact, with_database};

/// The PostgreSQL server used when `KONTOR_TEST_DATABASE_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The environment variable naming the PostgreSQL server tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "KONTOR_TEST_DATABASE_URL";

/// The PostgreSQL server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// Whether an unreachable PostgreSQL fails the test instead of skipping it: with `CI=true`.
pub fn postgres_required() -> bool {
    required_by_ci(std::env::var("CI").ok().as_deref())
}

/// The rule behind [`postgres_required`], for a given value of `CI`.
pub fn required_by_ci(ci: Option<&str>) -> bool {
    ci == Some("true")
}

/// Why a test database could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The PostgreSQL server did not accept a connection.
    #[error("PostgreSQL at {url} is unreachable ({error}); set KONTOR_TEST_DATABASE_URL or start the server")]
    Unreachable {
        /// The server URL, password hidden.
        url: String,
        /// What the connection attempt said.
        error: StoreError,
    },
    /// The server was reached but refused `CREATE DATABASE`.
    #[error("cannot create test database {name} on {url}: {error}")]
    Create {
        /// The database that was to be created.
        name: String,
        /// The server URL, password hidden.
        url: String,
        /// What the server said.
        error: StoreError,
    },
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// A SQLite database file `kontor.db` in a fresh temporary directory, removed when dropped.
pub struct SqliteDatabase {
    dir: TempDir,
    url: String,
}

impl SqliteDatabase {
    /// A new temporary directory with the (not yet created) database file's URL.
    pub fn new() -> SqliteDatabase {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let url = format!("sqlite:{}", dir.path().join("kontor.db").display());
        SqliteDatabase { dir, url }
    }

    /// `sqlite:<dir>/kontor.db`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary directory holding the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for SqliteDatabase {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A fresh PostgreSQL database, dropped (best effort, `WITH (FORCE)`) when this is dropped.
#[derive(Debug)]
pub struct PostgresDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    /// Creates a database `kontor_t_<random>` on the server at `server_url`. Blocking: call it
    /// off the async runtime (the synchronous PostgreSQL client runs its own runtime).
    pub fn create_on(server_url: &str) -> Result<PostgresDatabase, DatabaseError> {
        let name = format!("kontor_t_{:016x}", rand::random::<u64>());
        let mut admin = Conn::open(Backend::Postgres, server_url)
            .map_err(|error| DatabaseError::Unreachable { url: redact(server_url), error })?;
        admin.batch(&format!("CREATE DATABASE {name}")).map_err(|error| DatabaseError::Create {
            name: name.clone(),
            url: redact(server_url),
            error,
        })?;
        let url = with_database(server_url, &name);
        Ok(PostgresDatabase { server_url: server_url.to_string(), name, url })
    }

    /// A fresh database on [`postgres_server_url`], or `None` (test skipped, with a notice)
    /// if the server is unreachable outside CI. Panics if the server is unreachable with
    /// `CI=true`, or if it refuses to create the database.
    pub async fn create() -> Option<PostgresDatabase> {
        let server = postgres_server_url();
        let created = tokio::task::spawn_blocking(move || PostgresDatabase::create_on(&server))
            .await
            .unwrap_or_else(|e| panic!("the create-database task failed: {e}"));
        match created {
            Ok(db) => Some(db),
            Err(e @ DatabaseError::Unreachable { .. }) => {
                if postgres_required() {
                    panic!("{e} (CI=true: PostgreSQL tests must run)");
                }
                eprintln!("notice: skipping PostgreSQL test: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, `kontor_t_<random>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server it was created on.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server_url.clone(), self.name.clone());
        // A plain thread: the synchronous PostgreSQL client must not run inside the async
        // runtime, and this also works while unwinding from a failed assertion.
        let _ = std::thread::spawn(move || {
            let dropped = Conn::open(Backend::Postgres, &server)
                .and_then(|mut c| c.batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            if let Err(e) = dropped {
                eprintln!("notice: could not drop test database {name}: {e}");
            }
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------------
// Either backend, and a store on it
// ---------------------------------------------------------------------------------------------

/// The database of one test, on either backend; removed when dropped.
pub enum TestDatabase {
    /// A SQLite file in a temporary directory.
    Sqlite(SqliteDatabase),
    /// A fresh PostgreSQL database.
    Postgres(PostgresDatabase),
}

impl TestDatabase {
    /// The database's URL, for `Store::open` or `--database-url`.
    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite(db) => db.url(),
            TestDatabase::Postgres(db) => db.url(),
        }
    }

    /// The backend the database is on.
    pub fn backend(&self) -> Backend {
        match self {
            TestDatabase::Sqlite(_) => Backend::Sqlite,
            TestDatabase::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Opens a store off the async runtime: the synchronous PostgreSQL client runs its own
/// runtime and must not be driven from inside ours. Panics if the store cannot be opened.
pub async fn open_store(url: String) -> Store {
    tokio::task::spawn_blocking(move || Store::open(&url, StoreSettings::default()))
        .await
        .unwrap_or_else(|e| panic!("the open-store task failed: {e}"))
        .unwrap_or_else(|e| panic!("cannot open the store: {e}"))
}

/// Drops a store on a plain thread: dropping pooled PostgreSQL connections inside the async
/// runtime panics, and a plain thread also works while unwinding.
fn drop_store(store: Option<Store>) {
    let _ = std::thread::spawn(move || drop(store)).join();
}

/// A store on a fresh database, cleaned up when dropped (also when the test panics).
pub struct StoreFixture {
    store: Option<Store>,
    database: TestDatabase,
}

impl StoreFixture {
    /// A store on a fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> StoreFixture {
        let database = TestDatabase::Sqlite(SqliteDatabase::new());
        let store = open_store(database.url().to_string()).await;
        StoreFixture { store: Some(store), database }
    }

    /// A store on a fresh PostgreSQL database, or `None` (test skipped) if the server is
    /// unreachable outside CI (see [`PostgresDatabase::create`]).
    pub async fn postgres() -> Option<StoreFixture> {
        let database = TestDatabase::Postgres(PostgresDatabase::create().await?);
        // From here on the fixture owns the database, so a failing open still drops it.
        let mut fx = StoreFixture { store: None, database };
        fx.store = Some(open_store(fx.url().to_string()).await);
        Some(fx)
    }

    /// The store under test.
    pub fn store(&self) -> &Store {
        self.store.as_ref().unwrap_or_else(|| panic!("the fixture's store is not open"))
    }

    /// The URL of the database under test (for opening further "nodes" on it).
    pub fn url(&self) -> &str {
        self.database.url()
    }

    /// The database under test.
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// Opens a further store ("node") on the same database.
    pub async fn open_node(&self) -> StoreNode {
        StoreNode(Some(open_store(self.url().to_string()).await))
    }
}

impl Drop for StoreFixture {
    fn drop(&mut self) {
        // The store first; the database (a field) is dropped after this.
        drop_store(self.store.take());
    }
}

/// A further store ("node") on a fixture's database; dropped on a plain thread.
pub struct StoreNode(Option<Store>);

impl StoreNode {
    /// The store itself, for a test that drops it where it likes (e.g. inside the runtime).
    pub fn into_store(mut self) -> Store {
        self.0.take().unwrap_or_else(|| panic!("the node is not open"))
    }
}

impl std::ops::Deref for StoreNode {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.0.as_ref().unwrap_or_else(|| panic!("the node is not open"))
    }
}

impl Drop for StoreNode {
    fn drop(&mut self) {
        drop_store(self.0.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ci_true_makes_postgresql_required() {
        for (ci, required) in [(Some("true"), true), (Some("false"), false), (Some("1"), false), (None, false)] {
            assert_eq!(required_by_ci(ci), required, "CI={ci:?}");
        }
    }

    #[test]
    fn an_unreachable_server_is_reported_without_its_password() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let err = PostgresDatabase::create_on("postgres://kontor:s3cret@127.0.0.1:1/postgres").unwrap_err();
        assert!(matches!(err, DatabaseError::Unreachable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("kontor:***@127.0.0.1:1") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn a_sqlite_database_lives_in_its_own_directory_until_dropped() {
        let db = SqliteDatabase::new();
        let dir = db.dir().to_path_buf();
        assert_eq!(db.url(), format!("sqlite:{}", dir.join("kontor.db").display()));
        assert!(dir.is_dir());
        drop(db);
        assert!(!dir.exists());
    }
}
