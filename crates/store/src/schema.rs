//! Versioned migrations, one list per backend.

use crate::db::{Backend, Conn};
use crate::StoreError;

/// SQLite migrations, applied in order.
const SQLITE: &[&str] = &[
    r#"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT, language TEXT, merged_into INTEGER,
    search_text TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), kind TEXT NOT NULL,
    address TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (kind, address));
CREATE INDEX identities_customer ON identities(customer_id);
CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL,
    password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), subject TEXT,
    status TEXT NOT NULL, priority TEXT NOT NULL, assignee_id INTEGER, team_id INTEGER,
    tags TEXT NOT NULL DEFAULT '[]', channel TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, first_response_at INTEGER, resolved_at INTEGER,
    last_message_at INTEGER, last_event_id INTEGER NOT NULL DEFAULT 0);
CREATE INDEX cases_customer ON cases(customer_id, status);
CREATE INDEX cases_updated ON cases(updated_at, id);
CREATE INDEX cases_status_updated ON cases(status, updated_at, id);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id), customer_id INTEGER NOT NULL,
    direction TEXT NOT NULL, internal INTEGER NOT NULL DEFAULT 0, channel TEXT NOT NULL, subject TEXT,
    text TEXT NOT NULL, html TEXT, attachments TEXT NOT NULL DEFAULT '[]', provider_message_id TEXT,
    author_id INTEGER, delivery_state TEXT, delivery_error TEXT, created_at INTEGER NOT NULL);
CREATE INDEX messages_case ON messages(case_id, id);
CREATE INDEX messages_customer ON messages(customer_id);
CREATE VIRTUAL TABLE messages_fts USING fts5(subject, text, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE customers_fts USING fts5(search_text, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE inbound_keys (
    channel TEXT NOT NULL, idem_key TEXT NOT NULL, message_id INTEGER NOT NULL, case_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (channel, idem_key));
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, case_id INTEGER, customer_id INTEGER,
    payload TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX events_case ON events(case_id, id);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL, locked_until INTEGER, locked_by TEXT, last_error TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX jobs_due ON jobs(status, run_at);
"#,
    r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX sessions_user ON sessions(user_id);
ALTER TABLE users ADD COLUMN language TEXT;
CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id), user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (team_id, user_id));
CREATE TABLE canned_responses (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, shortcut TEXT, body TEXT NOT NULL, language TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE cases ADD COLUMN merged_into INTEGER;
"#,
    r#"
CREATE UNIQUE INDEX canned_responses_shortcut ON canned_responses(shortcut);
CREATE INDEX team_members_user ON team_members(user_id);
"#,
    r#"
CREATE TABLE case_reads (
    user_id INTEGER NOT NULL, case_id INTEGER NOT NULL, seen_event_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, case_id));
"#,
    r#"
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
"#,
    r#"
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
"#,
    // Idempotency keys per sending client (scope), with a fingerprint of the message.
    r#"
CREATE TABLE inbound_keys_scoped (
    channel TEXT NOT NULL, scope TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint TEXT,
    message_id INTEGER NOT NULL, case_id INTEGER NOT NULL, customer_id INTEGER NOT NULL, event_id INTEGER NOT NULL,
    PRIMARY KEY (channel, scope, idem_key));
INSERT INTO inbound_keys_scoped (channel, scope, idem_key, message_id, case_id, customer_id, event_id)
    SELECT channel, '', idem_key, message_id, case_id, customer_id, event_id FROM inbound_keys;
DROP TABLE inbound_keys;
ALTER TABLE inbound_keys_scoped RENAME TO inbound_keys;
"#,
];

/// PostgreSQL migrations, applied in order.
const POSTGRES: &[&str] = &[
    r#"
CREATE TABLE customers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT, language TEXT, merged_into BIGINT,
    search_text TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX customers_search ON customers USING GIN (to_tsvector('simple', search_text));
CREATE TABLE identities (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer_id BIGINT NOT NULL REFERENCES customers(id),
    kind TEXT NOT NULL, address TEXT NOT NULL, created_at BIGINT NOT NULL, UNIQUE (kind, address));
CREATE INDEX identities_customer ON identities(customer_id);
CREATE TABLE teams (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL);
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE api_tokens (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL);
CREATE TABLE cases (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer_id BIGINT NOT NULL REFERENCES customers(id),
    subject TEXT, status TEXT NOT NULL, priority TEXT NOT NULL, assignee_id BIGINT, team_id BIGINT,
    tags TEXT NOT NULL DEFAULT '[]', channel TEXT NOT NULL, created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL, first_response_at BIGINT, resolved_at BIGINT, last_message_at BIGINT,
    last_event_id BIGINT NOT NULL DEFAULT 0);
CREATE INDEX cases_customer ON cases(customer_id, status);
CREATE INDEX cases_updated ON cases(updated_at, id);
CREATE INDEX cases_status_updated ON cases(status, updated_at, id);
CREATE TABLE messages (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, case_id BIGINT NOT NULL REFERENCES cases(id),
    customer_id BIGINT NOT NULL, direction TEXT NOT NULL, internal BIGINT NOT NULL DEFAULT 0,
    channel TEXT NOT NULL, subject TEXT, text TEXT NOT NULL, html TEXT, attachments TEXT NOT NULL DEFAULT '[]',
    provider_message_id TEXT, author_id BIGINT, delivery_state TEXT, delivery_error TEXT,
    created_at BIGINT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('german', coalesce(subject, '') || ' ' || text) ||
        to_tsvector('english', coalesce(subject, '') || ' ' || text)) STORED);
CREATE INDEX messages_case ON messages(case_id, id);
CREATE INDEX messages_customer ON messages(customer_id);
CREATE INDEX messages_tsv ON messages USING GIN (tsv);
CREATE TABLE inbound_keys (
    channel TEXT NOT NULL, idem_key TEXT NOT NULL, message_id BIGINT NOT NULL, case_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL, event_id BIGINT NOT NULL, PRIMARY KEY (channel, idem_key));
CREATE TABLE events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, case_id BIGINT,
    customer_id BIGINT, payload TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX events_case ON events(case_id, id);
CREATE TABLE jobs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, queue TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL, run_at BIGINT NOT NULL, locked_until BIGINT, locked_by TEXT,
    last_error TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX jobs_due ON jobs(status, run_at);
"#,
    r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX sessions_user ON sessions(user_id);
ALTER TABLE users ADD COLUMN language TEXT;
CREATE TABLE team_members (
    team_id BIGINT NOT NULL REFERENCES teams(id), user_id BIGINT NOT NULL REFERENCES users(id),
    PRIMARY KEY (team_id, user_id));
CREATE TABLE canned_responses (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, title TEXT NOT NULL, shortcut TEXT,
    body TEXT NOT NULL, language TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE cases ADD COLUMN merged_into BIGINT;
"#,
    r#"
CREATE UNIQUE INDEX canned_responses_shortcut ON canned_responses(shortcut);
CREATE INDEX team_members_user ON team_members(user_id);
"#,
    r#"
CREATE TABLE case_reads (
    user_id BIGINT NOT NULL, case_id BIGINT NOT NULL, seen_event_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, case_id));
"#,
    r#"
ALTER TABLE users ADD COLUMN active BIGINT NOT NULL DEFAULT 1;
"#,
    r#"
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
"#,
    // Idempotency keys per sending client (scope), with a fingerprint of the message.
    r#"
ALTER TABLE inbound_keys ADD COLUMN scope TEXT NOT NULL DEFAULT '', ADD COLUMN fingerprint TEXT;
ALTER TABLE inbound_keys ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE inbound_keys DROP CONSTRAINT inbound_keys_pkey;
ALTER TABLE inbound_keys ADD PRIMARY KEY (channel, scope, idem_key);
"#,
];

/// Applies every migration not yet applied; returns how many ran. Safe to call from several
/// nodes at once (PostgreSQL: an advisory lock serialises them).
pub fn migrate(conn: &mut Conn) -> Result<usize, StoreError> {
    let list = match conn.backend() {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    match conn.backend() {
        Backend::Sqlite => conn.batch("BEGIN IMMEDIATE")?,
        Backend::Postgres => conn.batch("BEGIN; SELECT pg_advisory_xact_lock(707001)")?,
    }
    let result = (|| {
        conn.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )?;
        let done = conn
            .query_opt("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?
            .map(|r| r.i64(0))
            .unwrap_or(0);
        let mut ran = 0;
        for (i, sql) in list.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= done {
                continue;
            }
            conn.batch(sql)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                &crate::params![version, crate::now_us()],
            )?;
            ran += 1;
        }
        Ok(ran)
    })();
    match result {
        Ok(n) => {
            conn.batch("COMMIT")?;
            Ok(n)
        }
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}
