//! Canned responses: prepared answers inserted into replies by title or shortcut.

use kontor_core::CannedResponse;
use serde_json::json;

use crate::db::{Conn, Row};
use crate::writer::Tx;
use crate::{params, Store, StoreError};

const CANNED_COLS: &str = "id, title, shortcut, body, language, created_at, updated_at";

/// Longest shortcut accepted, in characters.
const MAX_SHORTCUT_CHARS: usize = 32;
/// Longest language tag accepted, in characters.
const MAX_LANGUAGE_CHARS: usize = 16;

/// The fields of a canned response as written by a user.
struct Fields {
    title: String,
    /// Lower-cased; must not contain spaces; blank means none.
    shortcut: Option<String>,
    body: String,
    /// `de`, `en`, ...; blank means any language.
    language: Option<String>,
}

fn canned_from_row(r: &Row) -> Result<CannedResponse, StoreError> {
    Ok(CannedResponse {
        id: r.req_i64(0, "canned_responses.id")?,
        title: r.req_text(1, "canned_responses.title")?,
        shortcut: r.opt_text(2),
        body: r.req_text(3, "canned_responses.body")?,
        language: r.opt_text(4),
        created_at: r.req_ts(5, "canned_responses.created_at")?,
        updated_at: r.req_ts(6, "canned_responses.updated_at")?,
    })
}

fn load_canned(c: &mut Conn, id: i64) -> Result<CannedResponse, StoreError> {
    c.query_opt(&format!("SELECT {CANNED_COLS} FROM canned_responses WHERE id = ?"), &params![id])?
        .map(|r| canned_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("canned response {id}")))?
}

/// Trims and checks the fields; blank optional fields become `None`.
fn validate(n: Fields) -> Result<Fields, StoreError> {
    let title = n.title.trim().to_string();
    if title.is_empty() {
        return Err(StoreError::invalid("title", "must not be empty"));
    }
    let body = n.body.trim_end().to_string();
    if body.trim().is_empty() {
        return Err(StoreError::invalid("body", "must not be empty"));
    }
    let shortcut = n.shortcut.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    if let Some(s) = &shortcut {
        if s.chars().count() > MAX_SHORTCUT_CHARS || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StoreError::invalid(
                "shortcut",
                format!("at most {MAX_SHORTCUT_CHARS} characters without spaces"),
            ));
        }
    }
    let language = n.language.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    if let Some(l) = &language {
        if l.chars().count() > MAX_LANGUAGE_CHARS || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StoreError::invalid("language", "a language tag such as de or en"));
        }
    }
    Ok(Fields { title, shortcut, body, language })
}

/// Refuses a shortcut that another canned response (not `except`) already has.
fn check_shortcut_free(tx: &mut Tx<'_>, shortcut: Option<&str>, except: i64) -> Result<(), StoreError> {
    let Some(s) = shortcut else { return Ok(()) };
    if let Some(r) =
        tx.conn.query_opt("SELECT id FROM canned_responses WHERE shortcut = ? AND id <> ?", &params![s, except])?
    {
        let other = r.req_i64(0, "canned_responses.id")?;
        return Err(StoreError::Conflict(format!("shortcut {s} is used by canned response {other}")));
    }
    Ok(())
}

impl Store {
    /// Canned responses by title. With a language: those in that language and those for
    /// any language; without: all.
    pub async fn list_canned(&self, language: Option<&str>) -> Result<Vec<CannedResponse>, StoreError> {
        let language = language.map(|l| l.trim().to_lowercase()).filter(|l| !l.is_empty());
        self.read(move |c| {
            let rows = match &language {
                Some(l) => c.query(
                    &format!(
                        "SELECT {CANNED_COLS} FROM canned_responses WHERE language = ? OR language IS NULL \
                         ORDER BY title, id"
                    ),
                    &params![l.as_str()],
                )?,
                None => c.query(&format!("SELECT {CANNED_COLS} FROM canned_responses ORDER BY title, id"), &[])?,
            };
            rows.iter().map(canned_from_row).collect()
        })
        .await
    }

    /// One canned response.
    pub async fn canned(&self, id: i64) -> Result<CannedResponse, StoreError> {
        self.read(move |c| load_canned(c, id)).await
    }

    /// Creates a canned response; appends `canned.created`. A shortcut already in use is a
    /// conflict.
    pub async fn create_canned(
        &self,
        title: String,
        shortcut: Option<String>,
        body: String,
        language: Option<String>,
    ) -> Result<CannedResponse, StoreError> {
        let n = validate(Fields { title, shortcut, body, language })?;
        self.write(move |tx| {
            check_shortcut_free(tx, n.shortcut.as_deref(), 0)?;
            let now = tx.now;
            let r = tx
                .conn
                .query_opt(
                    &format!(
                        "INSERT INTO canned_responses (title, shortcut, body, language, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?) RETURNING {CANNED_COLS}"
                    ),
                    &params![n.title.as_str(), n.shortcut.as_deref(), n.body.as_str(), n.language.as_deref(), now, now],
                )?
                .ok_or_else(|| StoreError::Database("canned response insert returned no id".into()))?;
            let canned = canned_from_row(&r)?;
            tx.event(kontor_core::EventKind::CannedCreated, None, None, &json!({ "canned": canned }))?;
            Ok(canned)
        })
        .await
    }

    /// Replaces the fields of a canned response; appends `canned.updated`. A shortcut used
    /// by another canned response is a conflict.
    pub async fn update_canned(
        &self,
        id: i64,
        title: String,
        shortcut: Option<String>,
        body: String,
        language: Option<String>,
    ) -> Result<CannedResponse, StoreError> {
        let n = validate(Fields { title, shortcut, body, language })?;
        self.write(move |tx| {
            load_canned(tx.conn, id)?;
            check_shortcut_free(tx, n.shortcut.as_deref(), id)?;
            tx.conn.execute(
                "UPDATE canned_responses SET title = ?, shortcut = ?, body = ?, language = ?, updated_at = ? WHERE id = ?",
                &params![
                    n.title.as_str(),
                    n.shortcut.as_deref(),
                    n.body.as_str(),
                    n.language.as_deref(),
                    tx.now,
                    id
                ],
            )?;
            let canned = load_canned(tx.conn, id)?;
            tx.event(kontor_core::EventKind::CannedUpdated, None, None, &json!({ "canned": canned }))?;
            Ok(canned)
        })
        .await
    }

    /// Deletes a canned response; appends `canned.deleted`.
    pub async fn delete_canned(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let removed = tx.conn.execute("DELETE FROM canned_responses WHERE id = ?", &params![id])?;
            if removed == 0 {
                return Err(StoreError::NotFound(format!("canned response {id}")));
            }
            tx.event(kontor_core::EventKind::CannedDeleted, None, None, &json!({ "canned_id": id }))?;
            Ok(())
        })
        .await
    }
}
