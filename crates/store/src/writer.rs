//! The single writer thread with group commit, and the PostgreSQL LISTEN thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use tokio::sync::{oneshot, watch};

use crate::db::{Backend, Conn};
use crate::{params, StoreError};

/// Channel on which committed event ids are announced to other nodes.
pub const EVENTS_CHANNEL: &str = "kontor_events";
/// Channel for ephemeral presence signals (who views or types in a case); never stored.
pub const PRESENCE_CHANNEL: &str = "kontor_presence";
/// Advisory lock that serialises write transactions across nodes on PostgreSQL. It makes
/// event ids visible in commit order (a reader that saw id N never later finds a smaller new
/// id), and since it is taken first, before any row lock, two nodes cannot deadlock on it.
/// With group commit it is taken once per batch, not once per operation.
const WRITE_LOCK: i64 = 707002;

/// What the writer has done so far (for metrics and tests).
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Transactions committed or attempted.
    pub batches: AtomicU64,
    /// Operations submitted.
    pub ops: AtomicU64,
    /// Operations merged into set-based ones by a [`Merge`] hook (today: inbound messages
    /// stored by the bulk ingest path).
    pub bulk_messages: AtomicU64,
    /// Merged operations that failed as a whole and were redone one by one.
    pub bulk_fallbacks: AtomicU64,
}

/// A snapshot of [`WriterCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub batches: u64,
    pub ops: u64,
    pub bulk_messages: u64,
    pub bulk_fallbacks: u64,
}

impl WriterCounters {
    /// The current values.
    pub fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            bulk_messages: self.bulk_messages.load(Ordering::Relaxed),
            bulk_fallbacks: self.bulk_fallbacks.load(Ordering::Relaxed),
        }
    }
}

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

    /// Records that events up to `id` were written by a bulk statement.
    pub(crate) fn note_event(&mut self, id: i64) {
        *self.max_event = (*self.max_event).max(id);
    }

    /// On PostgreSQL, takes the write lock before an event row is written (so event ids
    /// become visible in commit order), unless this transaction holds it already.
    pub(crate) fn take_event_lock(&mut self) -> Result<(), StoreError> {
        if self.conn.backend() == Backend::Postgres && !*self.event_lock {
            self.conn.query("SELECT pg_advisory_xact_lock(?)", &params![WRITE_LOCK])?;
            *self.event_lock = true;
        }
        Ok(())
    }

    /// Appends an event row; returns its id.
    pub fn event(
        &mut self,
        kind: kontor_core::EventKind,
        case_id: Option<i64>,
        customer_id: Option<i64>,
        payload: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        self.take_event_lock()?;
        let row = self
            .conn
            .query_opt(
                "INSERT INTO events (kind, case_id, customer_id, payload, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                &params![kind.as_str(), case_id, customer_id, payload.to_string(), self.now],
            )?
            .ok_or_else(|| StoreError::Database("event insert returned no id".into()))?;
        let id = row.req_i64(0, "events.id")?;
        *self.max_event = (*self.max_event).max(id);
        Ok(id)
    }
}

/// One queued write operation.
pub trait WriteOp: std::any::Any + Send {
    /// Runs the operation; false if it failed (its changes are rolled back).
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool;
    /// Delivers the result once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: &Result<(), StoreError>);
    /// The hook that may combine this operation with others of its kind in the same batch
    /// into one set-based operation; `None` (the default) runs it on its own.
    fn merge(&self) -> Option<&'static Merge> {
        None
    }
    /// After a failed `apply`: the parts to run one by one instead (`Err(self)` if it has none).
    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>>;
    /// True if this operation's changes may be lost in a power failure or an operating-system
    /// crash after it was answered — because what it writes is redone anyway when lost (a job
    /// claim, a lease) and appends no events (those are seen at once, so their ids must never
    /// be handed out twice after a crash). A transaction made
    /// only of such operations commits without waiting for the disk (SQLite
    /// `synchronous=NORMAL`, PostgreSQL `synchronous_commit = off`); it stays atomic, and the
    /// next durable commit makes it durable too, since the log is written in order. False (the
    /// default) for everything else.
    fn relaxed(&self) -> bool {
        false
    }
    /// True if this operation may wait a little ([`SHARE_WAIT`]) for other operations to
    /// commit with: while other durable operations came in within that time, a batch made only of
    /// such operations waits for the next one to arrive, so that they share its commit instead
    /// of holding the writer for a commit (and its wait for the disk) of their own. For
    /// background writes that nobody waits for (the analysis' results): under load they ride
    /// along with ingest's commits; once no durable write came for that long they commit at once. False (the
    /// default) for everything else.
    fn waits_to_share(&self) -> bool {
        false
    }
}

/// How long a batch of operations that wait to share a commit ([`WriteOp::waits_to_share`])
/// waits for another operation before it commits alone.
pub const SHARE_WAIT: Duration = Duration::from_millis(20);

/// Operations queued for the writer.
pub type Ops = Vec<Box<dyn WriteOp>>;

/// A batching hook: operations whose [`WriteOp::merge`] returns the same hook (same `name`)
/// are handed to `combine` together when two or more of them are in one group commit. The
/// writer knows nothing of what they are; `combine` downcasts them (each `WriteOp` is
/// `Any`) and returns the operations to run — normally one — handing back any it cannot take.
/// A combined operation that fails as a whole is `split` into its parts, which then run one
/// by one in savepoints.
pub struct Merge {
    /// Identifies the kind of operation (and names it in logs).
    pub name: &'static str,
    /// Combines two or more operations of this kind.
    pub combine: fn(Ops) -> Ops,
}

/// Sends an operation's result once the fate of its transaction is known: its own error,
/// else the commit's error, else its value.
pub(crate) fn answer<R>(
    out: Option<Result<R, StoreError>>,
    commit: &Result<(), StoreError>,
    reply: oneshot::Sender<Result<R, StoreError>>,
) {
    let result = match (out, commit) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(r)), Ok(())) => Ok(r),
        (_, Err(e)) => Err(e.clone()),
        (None, Ok(())) => Err(StoreError::Database("operation was not run".into())),
    };
    let _ = reply.send(result);
}

/// A write operation with a typed result.
pub struct Op<R, F> {
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
    mode: Commit,
}

/// How an operation's transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Durable, at once (the default).
    Durable,
    /// Without waiting for the disk (see [`WriteOp::relaxed`]).
    Relaxed,
    /// Durable, sharing the commit of operations that arrive within [`SHARE_WAIT`] (see
    /// [`WriteOp::waits_to_share`]).
    Shared,
}

impl<R, F> Op<R, F> {
    pub fn new(f: F) -> (Self, oneshot::Receiver<Result<R, StoreError>>) {
        Op::with(f, Commit::Durable)
    }

    /// An operation that commits as `mode` says.
    pub fn with(f: F, mode: Commit) -> (Self, oneshot::Receiver<Result<R, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Op { f: Some(f), out: None, reply, mode }, rx)
    }
}

impl<R, F> WriteOp for Op<R, F>
where
    R: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
{
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(tx);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        answer(self.out, commit, self.reply);
    }

    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
        Err(self)
    }

    fn relaxed(&self) -> bool {
        self.mode == Commit::Relaxed
    }

    fn waits_to_share(&self) -> bool {
        self.mode == Commit::Shared
    }
}

pub(crate) fn spawn(
    backend: Backend,
    url: String,
    conn: Conn,
    rx: crossbeam_channel::Receiver<Box<dyn WriteOp>>,
    latest: watch::Sender<i64>,
    max_batch: usize,
    counters: Arc<WriterCounters>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("kontor-writer".into())
        .spawn(move || writer_loop(backend, url, Some(conn), rx, latest, max_batch.max(1), counters))
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
    counters: Arc<WriterCounters>,
) {
    // Whether the SQLite connection commits without waiting for the disk (see
    // `WriteOp::relaxed`); a new connection starts durable.
    let mut relaxed_now = false;
    // When the writer last took a durable operation that does not wait to share a commit.
    let mut others_at: Option<std::time::Instant> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let sharing = batch.iter().all(|op| op.waits_to_share());
        // Nobody waits for these: while other writes come in, let them share the next one's
        // commit. When all else is quiet they commit at once (a backlog drains at full speed).
        if sharing && batch.len() < max_batch && others_at.is_some_and(|t| t.elapsed() < SHARE_WAIT) {
            if let Ok(op) = rx.recv_timeout(SHARE_WAIT) {
                batch.push(op);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
        }
        // Others: writes with a commit that waits for the disk (relaxed ones, the background's
        // own job claims among them, cost little and do not count).
        if batch.iter().any(|op| !op.waits_to_share() && !op.relaxed()) {
            others_at = Some(std::time::Instant::now());
        }
        counters.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        let batch = merge_batch(batch, &counters);
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            relaxed_now = false;
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
        let relaxed = batch.iter().all(|op| op.relaxed());
        if backend == Backend::Sqlite && relaxed != relaxed_now {
            let pragma = if relaxed { "PRAGMA synchronous=NORMAL" } else { "PRAGMA synchronous=FULL" };
            if let Err(e) = c.batch(pragma) {
                tracing::warn!(error = %e, "Writer cannot set how commits reach the disk.");
                let err = Err(StoreError::Unavailable(e.to_string()));
                batch.into_iter().for_each(|op| op.finish(&err));
                conn = None;
                continue;
            }
            relaxed_now = relaxed;
        }
        let (result, max_event, done) = run_batch(c, batch, &counters, relaxed);
        if let Err(e) = &result {
            tracing::warn!(error = %e, ops = done.len(), "Group commit failed.");
            if e.is_unavailable() || c.is_broken() {
                conn = None;
            }
        }
        // Publish the new event id before answering, so a caller that reads
        // `latest_event_id()` after its write returned sees at least its own event.
        if result.is_ok() && max_event > 0 {
            bump(&latest, max_event);
        }
        done.into_iter().for_each(|op| op.finish(&result));
    }
}

/// Combines the operations of a batch that share a [`Merge`] hook (where there are several):
/// the others keep their order and run first, then each combined group.
fn merge_batch(batch: Vec<Box<dyn WriteOp>>, counters: &WriterCounters) -> Vec<Box<dyn WriteOp>> {
    let mut ops: Vec<Box<dyn WriteOp>> = Vec::with_capacity(batch.len());
    let mut groups: Vec<(&'static Merge, Vec<Box<dyn WriteOp>>)> = Vec::new();
    for op in batch {
        match op.merge() {
            None => ops.push(op),
            Some(m) => match groups.iter_mut().find(|(g, _)| g.name == m.name) {
                Some((_, members)) => members.push(op),
                None => groups.push((m, vec![op])),
            },
        }
    }
    for (m, members) in groups {
        if members.len() < 2 {
            ops.extend(members);
            continue;
        }
        counters.bulk_messages.fetch_add(members.len() as u64, Ordering::Relaxed);
        ops.extend((m.combine)(members));
    }
    ops
}

/// Runs the operations in one transaction; returns the commit result, the newest event id
/// written, and the operations to finish (bulk operations that failed come back split).
fn run_batch(
    c: &mut Conn,
    ops: Vec<Box<dyn WriteOp>>,
    counters: &WriterCounters,
    relaxed: bool,
) -> (Result<(), StoreError>, i64, Vec<Box<dyn WriteOp>>) {
    let begin = match c.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
        Backend::Postgres if relaxed => {
            format!("BEGIN; SET LOCAL synchronous_commit TO OFF; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        }
        Backend::Postgres => format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
    };
    if let Err(e) = c.batch(&begin) {
        let _ = c.batch("ROLLBACK");
        return (Err(e), 0, ops);
    }
    let mut max_event = 0i64;
    // On PostgreSQL the write lock is already held.
    let mut event_lock = c.backend() == Backend::Postgres;
    let now = crate::now_us();
    let mut done: Vec<Box<dyn WriteOp>> = Vec::with_capacity(ops.len());
    let single = ops.len() == 1;
    let mut queue: std::collections::VecDeque<Box<dyn WriteOp>> = ops.into();
    while let Some(mut op) = queue.pop_front() {
        // A failing operation must not take the others down: each runs in a savepoint
        // (skipped when it is alone, where a rollback of the whole transaction does the same).
        if !single {
            if let Err(e) = c.batch("SAVEPOINT op") {
                let _ = c.batch("ROLLBACK");
                done.push(op);
                done.extend(queue);
                return (Err(e), 0, done);
            }
        }
        let before = max_event;
        let ok = op.apply(&mut Tx { conn: c, now, max_event: &mut max_event, event_lock: &mut event_lock });
        if single && !ok {
            let _ = c.batch("ROLLBACK");
            return match op.split() {
                // A bulk operation failed as a whole: run its parts one by one.
                Ok(parts) => {
                    counters.bulk_fallbacks.fetch_add(1, Ordering::Relaxed);
                    run_batch(c, parts, counters, relaxed)
                }
                Err(op) => (Ok(()), 0, vec![op]),
            };
        }
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
            done.push(op);
            done.extend(queue);
            return (Err(e), 0, done);
        }
        if ok {
            done.push(op);
        } else {
            match op.split() {
                Ok(parts) => {
                    counters.bulk_fallbacks.fetch_add(1, Ordering::Relaxed);
                    parts.into_iter().rev().for_each(|p| queue.push_front(p))
                }
                Err(op) => done.push(op),
            }
        }
    }
    if max_event > 0 && c.backend() == Backend::Postgres {
        if let Err(e) = c.query("SELECT pg_notify(?, ?)", &params![EVENTS_CHANNEL, max_event.to_string()]) {
            let _ = c.batch("ROLLBACK");
            return (Err(e), 0, done);
        }
    }
    match c.batch("COMMIT") {
        Ok(()) => (Ok(()), max_event, done),
        Err(e) => {
            let _ = c.batch("ROLLBACK");
            (Err(e), 0, done)
        }
    }
}

/// Listens for other nodes' events (PostgreSQL `LISTEN`), reconnecting as needed.
/// The thread ends once `alive` can no longer be upgraded (the store was dropped).
pub(crate) fn spawn_listener(
    url: String,
    latest: watch::Sender<i64>,
    presence: tokio::sync::broadcast::Sender<String>,
    alive: std::sync::Weak<()>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("kontor-listen".into())
        .spawn(move || loop {
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(e) = listen_once(&url, &latest, &presence, &alive) {
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

fn listen_once(
    url: &str,
    latest: &watch::Sender<i64>,
    presence: &tokio::sync::broadcast::Sender<String>,
    alive: &std::sync::Weak<()>,
) -> Result<(), StoreError> {
    let mut conn = Conn::open(Backend::Postgres, url)?;
    conn.batch(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {PRESENCE_CHANNEL}"))?;
    // Catch up on anything committed while we were not listening.
    bump(latest, crate::events::max_event_id(&mut conn)?);
    let client = conn.pg_client().ok_or_else(|| StoreError::Config("not PostgreSQL".into()))?;
    loop {
        let mut notes = client.notifications();
        let mut it = notes.timeout_iter(Duration::from_secs(5));
        loop {
            match it.next() {
                Ok(Some(n)) if n.channel() == PRESENCE_CHANNEL => {
                    let _ = presence.send(n.payload().to_string());
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation that only says which hook it names, and remembers how many operations it
    /// stands for once combined.
    struct Fake {
        hook: Option<&'static Merge>,
        stands_for: usize,
    }

    impl WriteOp for Fake {
        fn apply(&mut self, _: &mut Tx<'_>) -> bool {
            true
        }
        fn finish(self: Box<Self>, _: &Result<(), StoreError>) {}
        fn merge(&self) -> Option<&'static Merge> {
            self.hook
        }
        fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
            Err(self)
        }
    }

    fn combine_fakes(ops: Ops) -> Ops {
        let mut total = 0;
        for op in ops {
            match (op as Box<dyn std::any::Any>).downcast::<Fake>() {
                Ok(f) => total += f.stands_for,
                Err(_) => unreachable!("only fakes name this hook"),
            }
        }
        vec![Box::new(Fake { hook: None, stands_for: total })]
    }

    static FAKES: Merge = Merge { name: "fakes", combine: combine_fakes };
    static OTHER: Merge = Merge { name: "other", combine: combine_fakes };

    fn sizes(ops: &Ops) -> Vec<usize> {
        ops.iter()
            .map(|op| (op.as_ref() as &dyn std::any::Any).downcast_ref::<Fake>().map_or(0, |f| f.stands_for))
            .collect()
    }

    #[test]
    fn operations_naming_the_same_hook_are_combined_and_the_rest_keep_their_order() {
        let counters = WriterCounters::default();
        let fake = |hook, stands_for| Box::new(Fake { hook, stands_for }) as Box<dyn WriteOp>;
        let batch = vec![
            fake(Some(&FAKES), 1),
            fake(None, 10),
            fake(Some(&FAKES), 1),
            fake(Some(&OTHER), 100),
            fake(None, 20),
            fake(Some(&FAKES), 1),
        ];
        let ops = merge_batch(batch, &counters);
        // The plain ones first, in order; the lone `other` is left as it is; the three fakes
        // became one.
        assert_eq!(sizes(&ops), vec![10, 20, 3, 100]);
        assert_eq!(counters.snapshot().bulk_messages, 3);
    }

    #[test]
    fn a_lone_operation_with_a_hook_is_not_combined() {
        let counters = WriterCounters::default();
        let ops = merge_batch(vec![Box::new(Fake { hook: Some(&FAKES), stands_for: 1 })], &counters);
        assert_eq!(sizes(&ops), vec![1]);
        assert!(ops[0].merge().is_some(), "the operation itself, not a combination");
        assert_eq!(counters.snapshot().bulk_messages, 0);
    }

    /// SQLite's `synchronous` as the writer's connection has it inside a write.
    async fn synchronous(store: &crate::Store, relaxed: bool) -> i64 {
        let read = |tx: &mut super::Tx<'_>| {
            tx.conn
                .query_opt("PRAGMA synchronous", &[])?
                .map(|r| r.i64(0))
                .ok_or_else(|| StoreError::Database("PRAGMA synchronous returned nothing".into()))
        };
        if relaxed {
            store.write_relaxed(read).await.unwrap()
        } else {
            store.write(read).await.unwrap()
        }
    }

    #[tokio::test]
    async fn only_relaxed_writes_commit_without_waiting_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("k.db").display());
        let store = crate::Store::open(&url, crate::StoreSettings::default()).unwrap();
        // 2 is FULL (the commit waits for the disk), 1 is NORMAL.
        assert_eq!(synchronous(&store, false).await, 2);
        assert_eq!(synchronous(&store, true).await, 1);
        assert_eq!(synchronous(&store, false).await, 2, "a durable write after a relaxed one waits again");
    }

    #[tokio::test]
    async fn a_shared_write_alone_commits_durably() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("k.db").display());
        let store = crate::Store::open(&url, crate::StoreSettings::default()).unwrap();
        let before = store.writer_stats().batches;
        let mode = store
            .write_shared(|tx| {
                tx.conn
                    .query_opt("PRAGMA synchronous", &[])?
                    .map(|r| r.i64(0))
                    .ok_or_else(|| StoreError::Database("PRAGMA synchronous returned nothing".into()))
            })
            .await
            .unwrap();
        assert_eq!(mode, 2, "durable");
        assert_eq!(store.writer_stats().batches, before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relaxed_write_in_one_transaction_with_a_durable_one_waits_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("k.db").display());
        let store = crate::Store::open(&url, crate::StoreSettings::default()).unwrap();
        // Hold the writer in a write until both of the next two are queued: it then takes them
        // as one batch.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let holder = store.clone();
        let held = tokio::spawn(async move {
            holder
                .write(move |_| {
                    let _ = started_tx.send(());
                    let _ = go_rx.recv();
                    Ok(())
                })
                .await
        });
        started_rx.await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let relaxed = tokio::spawn(async move { synchronous(&a, true).await });
        let durable = tokio::spawn(async move { synchronous(&b, false).await });
        while store.write_queue_len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        go_tx.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!((relaxed.await.unwrap(), durable.await.unwrap()), (2, 2), "the shared transaction is durable");
        assert_eq!(store.writer_stats().batches, 2, "the held write, then one batch of the two");
    }
}
