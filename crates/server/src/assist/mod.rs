//! The digital assistant on a node: the analyser in use (the default model trained from the
//! built-in seed set, or the newest model trained from agents' corrections), the style guide,
//! and the task that queues the analysis job when messages arrive.

pub mod llm;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kontor_assist::analysis::{default_model, Analyser};
use kontor_assist::classifier::Model;
use kontor_assist::rules::BusinessHours;
use kontor_assist::style::StyleGuide;
use kontor_store::Store;

use crate::AppState;

/// How often a node looks for a newer model while it analyses.
const MODEL_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Checks the configured extraction patterns (names and regular expressions).
pub fn check_patterns(patterns: &BTreeMap<String, String>) -> Result<(), String> {
    for name in patterns.keys() {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(format!("{name:?} is not a name of 1 to 40 of a-z, 0-9 and '_'"));
        }
    }
    kontor_assist::extract::Extractor::new(&pairs(patterns)).map(drop)
}

fn pairs(patterns: &BTreeMap<String, String>) -> Vec<(String, String)> {
    patterns.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The default model, trained once per process from the seed set (deterministic, so every
/// node has the same one).
fn shared_default_model() -> Result<Arc<Model>, String> {
    static DEFAULT: OnceLock<Result<Arc<Model>, String>> = OnceLock::new();
    DEFAULT.get_or_init(|| default_model().map(Arc::new)).clone()
}

/// The analyser in use and the stored model it was built from (0: the default model).
#[derive(Clone)]
struct Loaded {
    model_id: i64,
    analyser: Arc<Analyser>,
    checked: Instant,
}

/// The assistant of this node.
pub struct Assistant {
    patterns: Vec<(String, String)>,
    loaded: Mutex<Option<Loaded>>,
    /// One loader at a time.
    loading: tokio::sync::Mutex<()>,
    style: StyleGuide,
    /// Requests that analyse or check text at the same time on this node (each takes a core).
    requests: tokio::sync::Semaphore,
    /// The analysis job's thread, started on first use.
    background: OnceLock<std::sync::mpsc::Sender<Task>>,
}

type Task = Box<dyn FnOnce() + Send>;

/// How much lower than the rest of Kontor the analysis thread runs (Linux `nice` steps) where
/// the idle scheduling class is not available.
const BACKGROUND_NICENESS: i32 = 10;

/// Starts the analysis thread: it runs the tasks it is handed one after another, at the lowest
/// priority.
fn start_background() -> std::sync::mpsc::Sender<Task> {
    let (tx, rx) = std::sync::mpsc::channel::<Task>();
    let spawned = std::thread::Builder::new().name("kontor-assist".into()).spawn(move || {
        lower_priority();
        while let Ok(task) = rx.recv() {
            task();
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot start the analysis thread.");
    }
    tx
}

/// Puts the calling thread in Linux's idle scheduling class (`SCHED_IDLE`): it gets only the
/// CPU no other thread of the machine wants, and any other thread that wakes up takes the CPU
/// from it at once — so ingest and the HTTP threads keep their latency, and the analysis
/// catches up when they are quiet. (A high `nice` value alone lowers its share, but a
/// waking thread may still wait for it.) Falls back to `nice` where the class is refused.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler with pid 0 changes the calling thread's policy on Linux; it
    // only reads `param`, which lives until the call returns.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes the calling thread's nice
    // value on Linux (threads are scheduled separately); it reads and writes no memory of ours.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICENESS) };
    if done != 0 {
        tracing::debug!("Cannot lower the analysis thread's priority; it runs at the normal one.");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Text requests (`analyze`, `style`, a dry run) at the same time on one node.
const CONCURRENT_REQUESTS: usize = 4;
/// How long such a request waits for its turn before it is told to come back.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

impl Assistant {
    /// An assistant with the configured extraction patterns (checked by the configuration).
    pub fn new(patterns: &BTreeMap<String, String>) -> Assistant {
        Assistant {
            patterns: pairs(patterns),
            loaded: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            style: StyleGuide::builtin(),
            requests: tokio::sync::Semaphore::new(CONCURRENT_REQUESTS),
            background: OnceLock::new(),
        }
    }

    /// Runs `work` on the analysis thread (at a lower priority than the rest of Kontor) and
    /// waits for its result. A panic in `work` is an error, not a lost thread.
    pub async fn in_background<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = tx.send(out.map_err(|_| "the analysis panicked".to_string()));
        });
        let sender = self.background.get_or_init(start_background);
        if sender.send(task).is_err() {
            return Err("the analysis thread is gone".into());
        }
        rx.await.map_err(|_| "the analysis thread is gone".to_string())?
    }

    /// A turn for a request that analyses text; `None` if none came free in time (the caller
    /// answers 503 with `Retry-After`).
    pub async fn turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::time::timeout(REQUEST_WAIT, self.requests.acquire()).await.ok()?.ok()
    }

    /// The style guide.
    pub fn style(&self) -> &StyleGuide {
        &self.style
    }

    fn current(&self) -> Option<Loaded> {
        self.loaded.lock().ok().and_then(|l| l.clone())
    }

    /// The analyser to use now: the newest stored model's (looked for every few seconds),
    /// else the default model's. The first call trains or loads it off the async threads.
    pub async fn analyser(&self, store: &Store) -> Result<Arc<Analyser>, String> {
        if let Some(l) = self.current().filter(|l| l.checked.elapsed() < MODEL_CHECK_EVERY) {
            return Ok(l.analyser);
        }
        let _one = self.loading.lock().await;
        let current = self.current();
        if let Some(l) = current.as_ref().filter(|l| l.checked.elapsed() < MODEL_CHECK_EVERY) {
            return Ok(l.analyser.clone());
        }
        let newest = match store.latest_model_id().await {
            Ok(id) => id,
            // The store is away: keep what we have.
            Err(e) => match &current {
                Some(l) => {
                    tracing::debug!(error = %e, "Cannot look for a newer intent model.");
                    return Ok(l.analyser.clone());
                }
                None => 0,
            },
        };
        let loaded = match current {
            Some(l) if l.model_id == newest => Loaded { checked: Instant::now(), ..l },
            _ => {
                let patterns = self.patterns.clone();
                let bytes = if newest > 0 { store.model_bytes(newest).await.ok() } else { None };
                let (model_id, analyser) = tokio::task::spawn_blocking(move || {
                    let stored = bytes.and_then(|b| match Model::load(&mut b.as_slice()) {
                        Ok(m) => Some(Arc::new(m)),
                        Err(e) => {
                            tracing::error!(model_id = newest, error = %e, "A stored intent model cannot be read; using the default model.");
                            None
                        }
                    });
                    let (id, model) = match stored {
                        Some(m) => (newest, m),
                        None => (0, shared_default_model()?),
                    };
                    Ok::<_, String>((id, Arc::new(Analyser::new(model, &patterns)?)))
                })
                .await
                .map_err(|e| format!("the model loader stopped: {e}"))??;
                if model_id > 0 {
                    tracing::info!(model_id, "Using a newly trained intent model.");
                }
                Loaded { model_id, analyser, checked: Instant::now() }
            }
        };
        let analyser = loaded.analyser.clone();
        if let Ok(mut slot) = self.loaded.lock() {
            *slot = Some(loaded);
        }
        Ok(analyser)
    }
}

/// How long the kicker waits between looks at a busy event log (it coalesces commits).
const KICK_COALESCE: Duration = Duration::from_millis(20);
/// How often it looks anyway (a message committed by another node, a job that failed).
const KICK_EVERY: Duration = Duration::from_secs(5);

/// Queues the analysis job whenever new events were committed and messages wait for it,
/// and wakes this node's worker (also when the job is already queued: the next batch, queued
/// by the one before, must not wait for the worker's idle poll).
pub fn spawn_kicker(state: AppState) {
    if !state.config.assist.analyse {
        return;
    }
    tokio::spawn(async move {
        let mut events = state.store.subscribe();
        loop {
            match state.store.kick_analysis().await {
                Ok(true) => state.jobs_ready.notify_one(),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "Cannot queue the analysis job; trying again."),
            }
            if tokio::time::timeout(KICK_EVERY, events.changed()).await.is_ok_and(|r| r.is_err()) {
                return; // the store is gone
            }
            tokio::time::sleep(KICK_COALESCE).await;
        }
    });
}

/// The setting that holds the business hours (JSON, [`BusinessHours`]).
pub const BUSINESS_HOURS: &str = "business_hours";

/// The stored business hours, if set and readable.
pub async fn business_hours(state: &AppState) -> Result<Option<BusinessHours>, kontor_store::StoreError> {
    Ok(state.store.setting(BUSINESS_HOURS).await?.and_then(|v| match serde_json::from_str::<Option<BusinessHours>>(&v) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "The business hours setting cannot be read; business-hours conditions fail.");
            None
        }
    }))
}
