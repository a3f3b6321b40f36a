//! Kontor's test kit: the fixtures the test suites share, so each suite states only what it
//! tests.
//!
//! - [`db`]: a temporary SQLite database and a fresh PostgreSQL database per test (from
//!   `KONTOR_TEST_DATABASE_URL`, skipped when unreachable unless `CI=true`), and
//!   [`db::StoreFixture`], a store opened on either one.
//! - [`dovecot`]: a real IMAP server (Debian's dovecot) in a temporary directory.
//! - [`url`]: taking database URLs apart (other database name, other host, password hidden).
//! - `server` (feature `server`): the real router on an ephemeral port over a fresh SQLite
//!   store, with sign-in, CSRF, cookie and JSON-call helpers; `sse`: a reader of event streams;
//!   `fake_sms`: a made-up SMS provider's webhook for tests of the channel contract.
//!
//! Only ever a dev-dependency: no library or binary of the workspace may depend on it, and it
//! must not depend on the `kontor` binary crate. Its helpers panic with a message where a
//! test must stop (a panic is how a test reports a failure); the one fallible operation a
//! caller may want to handle, creating a database, returns a typed [`db::DatabaseError`].

pub mod db;
pub mod dovecot;
#[cfg(feature = "server")]
pub mod fake_sms;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod sse;
pub mod url;

pub use db::{PostgresDatabase, SqliteDatabase, StoreFixture, StoreNode, TestDatabase};

/// A folder of the shared public test material (`../shared/data/<sub>` beside the repository,
/// or `$KONTOR_SHARED_DATA/<sub>`), read in place; `None` (with a note that the test is
/// skipped) when it is not there.
pub fn shared_data(sub: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("KONTOR_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: the shared test material is not at {} (set KONTOR_SHARED_DATA)", dir.display());
        None
    }
}
