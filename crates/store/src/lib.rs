//! Kontor's store: one API over two backends (SQLite, the embedded default, and PostgreSQL
//! for several nodes), with the append-only event log, durable jobs and full-text search.
//!
//! Every mutation runs on a single writer thread per node that commits concurrent requests
//! together (group commit) and answers each one only after the commit. Reads use a
//! connection pool. This crate knows nothing of HTTP.

pub mod approvals;
pub mod assist;
pub mod canned;
pub mod cases;
pub mod contacts;
pub mod customers;
pub mod db;
mod error;
pub mod events;
pub mod ingest;
pub mod jobs;
pub mod messages;
mod records;
pub mod rules;
pub mod schema;
pub mod search;
pub mod settings;
pub mod staff;
pub mod teams;
mod writer;

use std::sync::Arc;
use std::time::Duration;

pub use db::{Backend, Conn, Row, Val};
pub use error::StoreError;
pub use writer::{Tx, WriterStats};

use kontor_core::Timestamp;
use tokio::sync::watch;

/// Microseconds since the Unix epoch (what the store's time columns hold): [`Timestamp::now`].
pub fn now_us() -> i64 {
    Timestamp::now().as_micros()
}

/// Tunables the store needs for its rules.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// A resolved case takes new inbound messages (and re-opens) for this long.
    pub reopen_window: Duration,
    /// Region used to read phone numbers written without a country code.
    pub default_region: String,
    /// Read connections in the pool.
    pub read_pool_size: u32,
    /// Most operations committed together in one transaction.
    pub max_batch: usize,
    /// Attempts a delivery job gets before the dead letter.
    pub job_max_attempts: i64,
    /// Most operations waiting for the writer; a write beyond that fails at once with
    /// [`StoreError::Unavailable`] ([`WRITE_QUEUE_FULL`]) instead of queueing without limit.
    pub write_queue_capacity: usize,
}

/// The reason of the [`StoreError::Unavailable`] a write gets when the writer's queue is full.
pub const WRITE_QUEUE_FULL: &str = "write queue full";

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            reopen_window: Duration::from_secs(7 * 24 * 3600),
            default_region: "DE".into(),
            read_pool_size: 8,
            max_batch: 512,
            job_max_attempts: 8,
            write_queue_capacity: 10_000,
        }
    }
}

/// Which backend a database URL names.
pub fn backend_for(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Config(format!("unsupported database URL {url:?}: use sqlite:PATH or postgres://...")))
    }
}

struct ConnManager {
    backend: Backend,
    url: String,
}

impl r2d2::ManageConnection for ConnManager {
    type Connection = Conn;
    type Error = StoreError;
    fn connect(&self) -> Result<Conn, StoreError> {
        Conn::open(self.backend, &self.url)
    }
    fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        if conn.is_broken() {
            return Err(StoreError::Unavailable("connection closed".into()));
        }
        Ok(())
    }
    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

struct Inner {
    backend: Backend,
    readers: r2d2::Pool<ConnManager>,
    writer: crossbeam_channel::Sender<Box<dyn writer::WriteOp>>,
    latest_event: watch::Sender<i64>,
    presence: tokio::sync::broadcast::Sender<String>,
    settings: StoreSettings,
    alive: Arc<()>,
    counters: Arc<writer::WriterCounters>,
    /// The answer of a write probe that ran out of time, awaited by the next probe instead of
    /// queueing another one (see [`Store::probe_write`]).
    probe: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Result<(), StoreError>>>>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the database at `url`, applies migrations, and starts the writer thread (and,
    /// on PostgreSQL, the LISTEN thread that learns of other nodes' events).
    /// Safe to call from inside an async runtime: the blocking set-up runs on its own thread.
    pub fn open(url: &str, settings: StoreSettings) -> Result<Store, StoreError> {
        let url = url.to_string();
        std::thread::scope(|s| {
            s.spawn(move || Self::open_blocking(&url, settings))
                .join()
                .unwrap_or_else(|_| Err(StoreError::Database("store set-up panicked".into())))
        })
    }

    fn open_blocking(url: &str, settings: StoreSettings) -> Result<Store, StoreError> {
        let backend = backend_for(url)?;
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", parent.display())))?;
                }
            }
        }
        let mut conn = Conn::open(backend, url)?;
        schema::migrate(&mut conn)?;
        let latest = events::max_event_id(&mut conn)?;
        let readers = r2d2::Pool::builder()
            .max_size(settings.read_pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(3))
            .build_unchecked(ConnManager { backend, url: url.to_string() });
        let (latest_event, _) = watch::channel(latest);
        let (tx, rx) = crossbeam_channel::bounded(settings.write_queue_capacity.max(1));
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                readers,
                writer: tx,
                latest_event,
                presence: tokio::sync::broadcast::channel(1024).0,
                settings,
                alive: Arc::new(()),
                counters: Arc::default(),
                probe: tokio::sync::Mutex::new(None),
            }),
        };
        writer::spawn(
            backend,
            url.to_string(),
            conn,
            rx,
            store.inner.latest_event.clone(),
            store.inner.settings.max_batch,
            store.inner.counters.clone(),
        )?;
        if backend == Backend::Postgres {
            writer::spawn_listener(
                url.to_string(),
                store.inner.latest_event.clone(),
                store.inner.presence.clone(),
                Arc::downgrade(&store.inner.alive),
            )?;
        }
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The store's settings.
    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    /// Runs `f` inside the next group-commit transaction; resolves after the commit.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_op(f, writer::Commit::Durable).await
    }

    /// Like [`Store::write`], for changes that are redone when lost and append no events (a job
    /// claim, a lease): they may commit without waiting for the disk (see
    /// [`writer::WriteOp::relaxed`]), so they hold the writer — which every request shares —
    /// for less time.
    pub async fn write_relaxed<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_op(f, writer::Commit::Relaxed).await
    }

    /// Like [`Store::write`], for a background write nobody waits for: it may wait up to
    /// [`writer::SHARE_WAIT`] to share the commit of other writes (see
    /// [`writer::WriteOp::waits_to_share`]), so it costs the writer — which every request
    /// shares — no commit of its own while others write. Durable all the same.
    pub async fn write_shared<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_op(f, writer::Commit::Shared).await
    }

    async fn write_op<R, F>(&self, f: F, mode: writer::Commit) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let (op, rx) = writer::Op::with(f, mode);
        self.submit(Box::new(op))?;
        rx.await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Queues a prepared write operation; fails at once if the queue is full.
    pub(crate) fn submit(&self, op: Box<dyn writer::WriteOp>) -> Result<(), StoreError> {
        self.inner.writer.try_send(op).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => StoreError::Unavailable(WRITE_QUEUE_FULL.into()),
            crossbeam_channel::TrySendError::Disconnected(_) => StoreError::Unavailable("writer stopped".into()),
        })
    }

    /// Operations waiting for the writer (not counting the batch it is committing).
    pub fn write_queue_len(&self) -> usize {
        self.inner.writer.len()
    }

    /// Checks that a write can commit now: an empty transaction through the writer (on
    /// SQLite `BEGIN IMMEDIATE` takes the write lock, on PostgreSQL the write lock is taken
    /// too), which must commit within `deadline`. A probe that ran out of time stays queued
    /// and the next call waits for its answer, so probing never piles up operations.
    pub async fn probe_write(&self, deadline: Duration) -> Result<(), StoreError> {
        let late = || StoreError::Unavailable(format!("no write committed within {} ms", deadline.as_millis()));
        let until = tokio::time::Instant::now() + deadline;
        let mut slot = tokio::time::timeout_at(until, self.inner.probe.lock()).await.map_err(|_| late())?;
        let mut rx = match slot.take() {
            Some(rx) => rx,
            None => {
                let (op, rx) = writer::Op::new(|_: &mut Tx<'_>| Ok(()));
                self.submit(Box::new(op))?;
                rx
            }
        };
        match tokio::time::timeout_at(until, &mut rx).await {
            Ok(answer) => answer.map_err(|_| StoreError::Unavailable("writer stopped".into()))?,
            Err(_) => {
                *slot = Some(rx);
                Err(late())
            }
        }
    }

    /// Runs `f` with a pooled read connection on a blocking thread.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.readers.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }

    /// Succeeds if the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query("SELECT 1", &[]).map(|_| ())).await
    }

    /// Watches the newest committed event id this node knows of.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.latest_event.subscribe()
    }

    /// Announces an ephemeral presence signal (a JSON text) to every node's subscribers:
    /// through `NOTIFY` on PostgreSQL, directly on SQLite. Nothing is stored.
    pub async fn publish_presence(&self, payload: String) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Sqlite => {
                let _ = self.inner.presence.send(payload);
                Ok(())
            }
            Backend::Postgres => {
                self.read(move |c| {
                    c.query("SELECT pg_notify(?, ?)", &params![writer::PRESENCE_CHANNEL, payload]).map(|_| ())
                })
                .await
            }
        }
    }

    /// Receives the presence signals of all nodes.
    pub fn subscribe_presence(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.inner.presence.subscribe()
    }

    /// What this node's writer has done so far.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.counters.snapshot()
    }

    /// The newest committed event id this node knows of.
    pub fn latest_event_id(&self) -> i64 {
        *self.inner.latest_event.borrow()
    }
}

/// A page of results with an opaque cursor for the next one.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
