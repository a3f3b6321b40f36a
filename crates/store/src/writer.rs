//! The single writer thread with group commit, and the PostgreSQL LISTEN thread.

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use tokio::sync::{oneshot, watch};

use crate::db::{Backend, Conn};
use crate::{params, StoreError};

/// Channel on which committed event ids are announced to other nodes.
pub const EVENTS_CHANNEL: &str = "kontor_events";
/// Advisory lock that serialises write transactions across nodes on PostgreSQL. It makes
/// event ids visible in commit order (a reader that saw id N never later finds a smaller new
/// id), and since it is taken first, before any row lock, two nodes cannot deadlock on it.
/// With group commit it is taken once per batch, not once per operation.
const WRITE_LOCK: i64 = 707002;

/// A transaction shared by the operations of one group commit.
pub struct Tx<'a> {
    /// The connection, inside an open transaction.
    pub conn: &'a mut Conn,
    /// The time of this transaction, in microseconds since the epoch.
    pub now: i64,
    max_event: &'a mut i64,
    event_lock: &'a mut bool,
}

impl Tx<'_> {
    /// The backend of the connection.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// Appends an event row; returns its id.
    pub fn event(
        &mut self,
        kind: &str,
        case_id: Option<i64>,
        customer_id: Option<i64>,
        payload: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        if self.conn.backend() == Backend::Postgres && !*self.event_lock {
            self.conn.query("SELECT pg_advisory_xact_lock(?)", &params![WRITE_LOCK])?;
            *self.event_lock = true;
        }
        let row = self
            .conn
            .query_opt(
                "INSERT INTO events (kind, case_id, customer_id, payload, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                &params![kind, case_id, customer_id, payload.to_string(), self.now],
            )?
            .ok_or_else(|| StoreError::Database("event insert returned no id".into()))?;
        let id = row.i64(0);
        *self.max_event = (*self.max_event).max(id);
        Ok(id)
    }
}

/// One queued write operation.
pub trait WriteOp: Send {
    /// Runs the operation; false if it failed (its changes are rolled back).
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool;
    /// Delivers the result once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: &Result<(), StoreError>);
}

/// A write operation with a typed result.
pub struct Op<R, F> {
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Op<R, F> {
    pub fn new(f: F) -> (Self, oneshot::Receiver<Result<R, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Op { f: Some(f), out: None, reply }, rx)
    }
}

impl<R, F> WriteOp for Op<R, F>
where
    R: Send,
    F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send,
{
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(tx);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        let result = match (self.out, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (Some(Ok(_)), Err(e)) => Err(e.clone()),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(StoreError::Database("operation was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

pub(crate) fn spawn(
    backend: Backend,
    url: String,
    conn: Conn,
    rx: crossbeam_channel::Receiver<Box<dyn WriteOp>>,
    latest: watch::Sender<i64>,
    max_batch: usize,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("kontor-writer".into())
        .spawn(move || writer_loop(backend, url, Some(conn), rx, latest, max_batch.max(1)))
        .map(|_| ())
        .map_err(|e| StoreError::Database(format!("cannot start writer: {e}")))
}

fn writer_loop(
    backend: Backend,
    url: String,
    mut conn: Option<Conn>,
    rx: crossbeam_channel::Receiver<Box<dyn WriteOp>>,
    latest: watch::Sender<i64>,
    max_batch: usize,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            conn = match Conn::open(backend, &url) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "Writer cannot reach the database.");
                    let err = Err(StoreError::Unavailable(e.to_string()));
                    batch.into_iter().for_each(|op| op.finish(&err));
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else { continue };
        let (result, max_event) = run_batch(c, &mut batch);
        if let Err(e) = &result {
            tracing::warn!(error = %e, ops = batch.len(), "Group commit failed.");
            if e.is_unavailable() || c.is_broken() {
                conn = None;
            }
        }
        // Publish the new event id before answering, so a caller that reads
        // `latest_event_id()` after its write returned sees at least its own event.
        if result.is_ok() && max_event > 0 {
            bump(&latest, max_event);
        }
        batch.into_iter().for_each(|op| op.finish(&result));
    }
}

fn run_batch(c: &mut Conn, batch: &mut [Box<dyn WriteOp>]) -> (Result<(), StoreError>, i64) {
    let begin = match c.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
        Backend::Postgres => format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
    };
    if let Err(e) = c.batch(&begin) {
        let _ = c.batch("ROLLBACK");
        return (Err(e), 0);
    }
    let mut max_event = 0i64;
    // On PostgreSQL the write lock is already held.
    let mut event_lock = c.backend() == Backend::Postgres;
    let now = crate::now_us();
    let single = batch.len() == 1;
    for op in batch.iter_mut() {
        // A failing operation must not take the others down: each runs in a savepoint
        // (skipped when it is alone, where a rollback of the whole transaction does the same).
        if !single {
            if let Err(e) = c.batch("SAVEPOINT op") {
                let _ = c.batch("ROLLBACK");
                return (Err(e), 0);
            }
        }
        let before = max_event;
        let ok = op.apply(&mut Tx { conn: c, now, max_event: &mut max_event, event_lock: &mut event_lock });
        let step = if single {
            Ok(())
        } else if ok {
            c.batch("RELEASE SAVEPOINT op")
        } else {
            max_event = before;
            c.batch("ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op")
        };
        if let Err(e) = step {
            let _ = c.batch("ROLLBACK");
            return (Err(e), 0);
        }
        if single && !ok {
            let _ = c.batch("ROLLBACK");
            return (Ok(()), 0);
        }
    }
    if max_event > 0 && c.backend() == Backend::Postgres {
        if let Err(e) = c.query("SELECT pg_notify(?, ?)", &params![EVENTS_CHANNEL, max_event.to_string()]) {
            let _ = c.batch("ROLLBACK");
            return (Err(e), 0);
        }
    }
    match c.batch("COMMIT") {
        Ok(()) => (Ok(()), max_event),
        Err(e) => {
            let _ = c.batch("ROLLBACK");
            (Err(e), 0)
        }
    }
}

/// Listens for other nodes' events (PostgreSQL `LISTEN`), reconnecting as needed.
/// The thread ends once `alive` can no longer be upgraded (the store was dropped).
pub(crate) fn spawn_listener(
    url: String,
    latest: watch::Sender<i64>,
    alive: std::sync::Weak<()>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("kontor-listen".into())
        .spawn(move || loop {
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(e) = listen_once(&url, &latest, &alive) {
                tracing::warn!(error = %e, "Event listener lost the database; reconnecting.");
            }
            std::thread::sleep(Duration::from_millis(500));
        })
        .map(|_| ())
        .map_err(|e| StoreError::Database(format!("cannot start listener: {e}")))
}

fn bump(latest: &watch::Sender<i64>, id: i64) {
    latest.send_if_modified(|v| {
        if id > *v {
            *v = id;
            true
        } else {
            false
        }
    });
}

fn listen_once(url: &str, latest: &watch::Sender<i64>, alive: &std::sync::Weak<()>) -> Result<(), StoreError> {
    let mut conn = Conn::open(Backend::Postgres, url)?;
    conn.batch(&format!("LISTEN {EVENTS_CHANNEL}"))?;
    // Catch up on anything committed while we were not listening.
    if let Some(r) = conn.query_opt("SELECT COALESCE(MAX(id), 0) FROM events", &[])? {
        bump(latest, r.i64(0));
    }
    let client = conn.pg_client().ok_or_else(|| StoreError::Config("not PostgreSQL".into()))?;
    loop {
        let mut notes = client.notifications();
        let mut it = notes.timeout_iter(Duration::from_secs(5));
        loop {
            match it.next() {
                Ok(Some(n)) => {
                    if let Ok(id) = n.payload().parse::<i64>() {
                        bump(latest, id);
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(e.into()),
            }
        }
        drop(it);
        drop(notes);
        if alive.upgrade().is_none() {
            return Ok(());
        }
        // Quiet for a while: check that the connection is still alive.
        client.batch_execute("SELECT 1")?;
    }
}
