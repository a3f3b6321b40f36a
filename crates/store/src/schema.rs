//! Versioned migrations, one folder of SQL files per backend (`migrations/sqlite`,
//! `migrations/postgres`); a new migration is a new file in both and a line in each list.

use crate::db::{Backend, Conn};
use crate::StoreError;

/// SQLite migrations (`migrations/sqlite/NNNN_name.sql`), applied in order; the number is the version.
const SQLITE: &[&str] = &[
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/sqlite/0002_sessions.sql"),
    include_str!("../migrations/sqlite/0003_canned_responses.sql"),
    include_str!("../migrations/sqlite/0004_case_reads.sql"),
    include_str!("../migrations/sqlite/0005_user_active.sql"),
    include_str!("../migrations/sqlite/0006_token_revoked.sql"),
    include_str!("../migrations/sqlite/0007_inbound_key_scope.sql"),
    include_str!("../migrations/sqlite/0008_outbound_provider_ids.sql"),
    include_str!("../migrations/sqlite/0009_contact_duration.sql"),
    include_str!("../migrations/sqlite/0010_attachments.sql"),
    include_str!("../migrations/sqlite/0011_pending_delivery_reports.sql"),
    include_str!("../migrations/sqlite/0012_events_by_reference.sql"),
    include_str!("../migrations/sqlite/0013_inbound_keys_by_key.sql"),
    include_str!("../migrations/sqlite/0014_mail_source_and_auto_submitted.sql"),
    include_str!("../migrations/sqlite/0015_message_cc.sql"),
    include_str!("../migrations/sqlite/0016_channel_cursors.sql"),
    include_str!("../migrations/sqlite/0017_message_recipients.sql"),
    include_str!("../migrations/sqlite/0018_message_sources.sql"),
    include_str!("../migrations/sqlite/0019_assistant.sql"),
    include_str!("../migrations/sqlite/0020_rules_and_approvals.sql"),
];

/// PostgreSQL migrations (`migrations/postgres/NNNN_name.sql`), applied in order.
const POSTGRES: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_sessions.sql"),
    include_str!("../migrations/postgres/0003_canned_responses.sql"),
    include_str!("../migrations/postgres/0004_case_reads.sql"),
    include_str!("../migrations/postgres/0005_user_active.sql"),
    include_str!("../migrations/postgres/0006_token_revoked.sql"),
    include_str!("../migrations/postgres/0007_inbound_key_scope.sql"),
    include_str!("../migrations/postgres/0008_outbound_provider_ids.sql"),
    include_str!("../migrations/postgres/0009_contact_duration.sql"),
    include_str!("../migrations/postgres/0010_attachments.sql"),
    include_str!("../migrations/postgres/0011_pending_delivery_reports.sql"),
    include_str!("../migrations/postgres/0012_events_by_reference.sql"),
    include_str!("../migrations/postgres/0013_inbound_keys_by_key.sql"),
    include_str!("../migrations/postgres/0014_mail_source_and_auto_submitted.sql"),
    include_str!("../migrations/postgres/0015_message_cc.sql"),
    include_str!("../migrations/postgres/0016_channel_cursors.sql"),
    include_str!("../migrations/postgres/0017_message_recipients.sql"),
    include_str!("../migrations/postgres/0018_message_sources.sql"),
    include_str!("../migrations/postgres/0019_assistant.sql"),
    include_str!("../migrations/postgres/0020_rules_and_approvals.sql"),
];

/// The SQL of one migration (`version` counts from 1) for a backend, for tests and tools
/// that need to run a data migration again (each data migration is idempotent).
pub fn migration(backend: Backend, version: usize) -> Option<&'static str> {
    let list = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    version.checked_sub(1).and_then(|i| list.get(i)).copied()
}

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
        let done = match conn.query_opt("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])? {
            Some(r) => r.req_i64(0, "MAX(schema_migrations.version)")?,
            None => 0,
        };
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
