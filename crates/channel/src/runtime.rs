//! Long-running listeners and pollers (an SMTP listener, IMAP pollers) under one supervisor:
//! started from configuration, restarted with backoff when they fail, their health visible to
//! admins and in metrics, and shut down gracefully.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kontor_core::Channel;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::InboundSink;

/// A long-running part of a channel: a listener (SMTP) or a poller (IMAP).
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    /// A unique, stable name such as `email.smtp` or `email.imap.support` (used in metrics).
    fn name(&self) -> String;

    /// The channel it feeds.
    fn channel(&self) -> Channel;

    /// Runs until `ctx.shutdown` is cancelled (then returns `Ok` once in-flight work is
    /// committed or refused, never half-done) or until it fails (`Err`: the supervisor
    /// restarts it after a backoff).
    async fn run(&self, ctx: ListenerContext) -> Result<(), String>;
}

/// Where a listener stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListenerState {
    /// Started, not yet ready.
    Starting,
    /// Ready and working.
    Running,
    /// Failed; waiting before the next start.
    Backoff,
    /// Ended by shutdown.
    Stopped,
}

/// What admins see of one listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ListenerHealth {
    pub name: String,
    pub channel: Channel,
    pub state: ListenerState,
    /// Restarts after a failure since the node started.
    pub restarts: u64,
    pub last_error: Option<String>,
    /// Unix seconds of `last_error`.
    pub last_error_at: Option<i64>,
    /// Unix seconds of the last message or poll that succeeded.
    pub last_activity_at: Option<i64>,
}

type HealthMap = Arc<Mutex<BTreeMap<String, ListenerHealth>>>;

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// What a running listener gets from the supervisor.
#[derive(Clone)]
pub struct ListenerContext {
    /// Where to hand inbound messages; answers after the commit.
    pub sink: Arc<dyn InboundSink>,
    /// Cancelled when the node shuts down: stop taking new work, finish what is in flight.
    pub shutdown: CancellationToken,
    name: String,
    health: HealthMap,
}

impl ListenerContext {
    /// A context no supervisor tracks (for tests and one-off tools): health updates go
    /// nowhere.
    pub fn detached(sink: Arc<dyn InboundSink>, shutdown: CancellationToken) -> Self {
        ListenerContext { sink, shutdown, name: "detached".into(), health: HealthMap::default() }
    }

    fn update(&self, f: impl FnOnce(&mut ListenerHealth)) {
        if let Ok(mut map) = self.health.lock() {
            if let Some(h) = map.get_mut(&self.name) {
                f(h);
            }
        }
    }

    /// Reports that the listener is ready (bound its port, logged in).
    pub fn mark_running(&self) {
        self.update(|h| h.state = ListenerState::Running);
    }

    /// Records a message taken or a poll that succeeded.
    pub fn record_activity(&self) {
        self.update(|h| h.last_activity_at = Some(unix_now()));
    }

    /// Records a problem that did not stop the listener (one bad session, one failed poll).
    pub fn record_error(&self, error: impl Into<String>) {
        let error = error.into();
        self.update(|h| {
            h.last_error = Some(error);
            h.last_error_at = Some(unix_now());
        });
    }
}

/// A listener's sink: it speaks for its own channel only.
struct ChannelBound {
    channel: Channel,
    inner: Arc<dyn InboundSink>,
}

#[async_trait::async_trait]
impl InboundSink for ChannelBound {
    async fn accept(&self, message: crate::InboundMessage) -> Result<crate::InboundReceipt, crate::SinkError> {
        if message.channel != self.channel {
            return Err(crate::SinkError::Rejected(format!(
                "a {} listener handed over a {} message",
                self.channel, message.channel
            )));
        }
        self.inner.accept(message).await
    }

    async fn report(&self, report: crate::DeliveryReport) -> Result<bool, crate::SinkError> {
        if report.channel != self.channel {
            return Err(crate::SinkError::Rejected(format!(
                "a {} listener handed over a {} report",
                self.channel, report.channel
            )));
        }
        self.inner.report(report).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<String>, crate::SinkError> {
        self.inner.cursor(name).await
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), crate::SinkError> {
        self.inner.save_cursor(name, value).await
    }
}

/// Runs the listeners of a node; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    health: HealthMap,
    shutdown: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Supervisor {
    /// A run lasting this long counts as healthy: the next failure starts the backoff anew.
    const HEALTHY_RUN: Duration = Duration::from_secs(60);

    /// Starts every listener; a failed one is restarted after an exponential backoff from
    /// `backoff_base` up to `backoff_max`.
    pub fn start(
        listeners: &[Arc<dyn Listener>],
        sink: Arc<dyn InboundSink>,
        backoff_base: Duration,
        backoff_max: Duration,
    ) -> Supervisor {
        let sup =
            Supervisor { health: HealthMap::default(), shutdown: CancellationToken::new(), tasks: Arc::default() };
        for listener in listeners {
            let name = listener.name();
            if let Ok(mut map) = sup.health.lock() {
                map.insert(
                    name.clone(),
                    ListenerHealth {
                        name: name.clone(),
                        channel: listener.channel(),
                        state: ListenerState::Starting,
                        restarts: 0,
                        last_error: None,
                        last_error_at: None,
                        last_activity_at: None,
                    },
                );
            }
            let ctx = ListenerContext {
                sink: Arc::new(ChannelBound { channel: listener.channel(), inner: sink.clone() }),
                shutdown: sup.shutdown.child_token(),
                name,
                health: sup.health.clone(),
            };
            let task = tokio::spawn(supervise(listener.clone(), ctx, backoff_base, backoff_max));
            if let Ok(mut tasks) = sup.tasks.lock() {
                tasks.push(task);
            }
        }
        sup
    }

    /// The health of every listener, by name.
    pub fn health(&self) -> Vec<ListenerHealth> {
        self.health.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Asks every listener to stop and waits up to `grace` for them to finish their in-flight
    /// work; those still running then are aborted. True if all stopped in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + grace;
        let mut all = true;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                all = false;
            }
        }
        all
    }
}

/// Aborts the listener's task when the supervising task is dropped or aborted.
struct AbortOnDrop<T>(JoinHandle<T>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn supervise(listener: Arc<dyn Listener>, ctx: ListenerContext, base: Duration, max: Duration) {
    let name = ctx.name.clone();
    let mut failures: u32 = 0;
    loop {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        ctx.update(|h| h.state = ListenerState::Starting);
        let started = Instant::now();
        // Its own task, so that a panic is a failure like any other.
        let mut run = AbortOnDrop(tokio::spawn({
            let listener = listener.clone();
            let ctx = ctx.clone();
            async move { listener.run(ctx).await }
        }));
        let error = match (&mut run.0).await {
            Ok(Ok(())) if ctx.shutdown.is_cancelled() => break,
            Ok(Ok(())) => "stopped by itself".to_string(),
            Ok(Err(e)) => e,
            Err(e) if e.is_panic() => "panicked".to_string(),
            Err(_) => break,
        };
        if started.elapsed() >= Supervisor::HEALTHY_RUN {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(kontor_core::retry::backoff_ms(
            failures,
            base.as_millis().max(1) as u64,
            max.as_millis().max(1) as u64,
        ));
        tracing::warn!(listener = %name, %error, retry_in_ms = delay.as_millis() as u64, "Listener failed; restarting after a pause.");
        ctx.update(|h| {
            h.state = ListenerState::Backoff;
            h.restarts += 1;
            h.last_error = Some(error);
            h.last_error_at = Some(unix_now());
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.shutdown.cancelled() => break,
        }
    }
    ctx.update(|h| h.state = ListenerState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InboundMessage, InboundReceipt, SinkError};
    use std::sync::atomic::{AtomicU32, Ordering};

    struct NoSink;
    #[async_trait::async_trait]
    impl InboundSink for NoSink {
        async fn accept(&self, _: InboundMessage) -> Result<InboundReceipt, SinkError> {
            Err(SinkError::Temporary("test".into()))
        }
        async fn report(&self, _: crate::DeliveryReport) -> Result<bool, SinkError> {
            Err(SinkError::Temporary("test".into()))
        }
        async fn cursor(&self, _: &str) -> Result<Option<String>, SinkError> {
            Err(SinkError::Temporary("test".into()))
        }
        async fn save_cursor(&self, _: &str, _: &str) -> Result<(), SinkError> {
            Err(SinkError::Temporary("test".into()))
        }
    }

    /// Fails its first `fail` runs, then runs until shutdown, finishing "in-flight work"
    /// (a counter) before it returns.
    struct Flaky {
        fail: u32,
        runs: AtomicU32,
        finished: Arc<AtomicU32>,
        running: Arc<tokio::sync::Notify>,
    }

    #[async_trait::async_trait]
    impl Listener for Flaky {
        fn name(&self) -> String {
            "test.flaky".into()
        }
        fn channel(&self) -> Channel {
            Channel::Email
        }
        async fn run(&self, ctx: ListenerContext) -> Result<(), String> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.fail {
                if n == 1 {
                    panic!("first run panics");
                }
                return Err(format!("run {n} failed"));
            }
            ctx.mark_running();
            ctx.record_activity();
            self.running.notify_one();
            ctx.shutdown.cancelled().await;
            tokio::task::yield_now().await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_listener_is_restarted_and_stops_gracefully() {
        let finished = Arc::new(AtomicU32::new(0));
        let running = Arc::new(tokio::sync::Notify::new());
        let flaky =
            Arc::new(Flaky { fail: 2, runs: AtomicU32::new(0), finished: finished.clone(), running: running.clone() });
        let sup = Supervisor::start(
            &[flaky.clone() as Arc<dyn Listener>],
            Arc::new(NoSink),
            Duration::from_millis(1),
            Duration::from_millis(5),
        );
        tokio::time::timeout(Duration::from_secs(10), running.notified()).await.expect("listener never ran");
        let h = sup.health().into_iter().next().expect("health");
        assert_eq!(h.state, ListenerState::Running);
        assert_eq!(h.restarts, 2);
        assert_eq!(h.last_error.as_deref(), Some("run 2 failed"));
        assert!(h.last_activity_at.is_some());
        assert!(sup.shutdown(Duration::from_secs(10)).await, "did not stop in time");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "in-flight work was not finished");
        assert_eq!(sup.health()[0].state, ListenerState::Stopped);
    }

    struct Stubborn(Arc<tokio::sync::Notify>);
    #[async_trait::async_trait]
    impl Listener for Stubborn {
        fn name(&self) -> String {
            "test.stubborn".into()
        }
        fn channel(&self) -> Channel {
            Channel::Email
        }
        async fn run(&self, ctx: ListenerContext) -> Result<(), String> {
            ctx.mark_running();
            let _alive = self.0.clone();
            self.0.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        }
    }

    struct Impostor(Arc<tokio::sync::Mutex<Option<Result<InboundReceipt, SinkError>>>>);
    #[async_trait::async_trait]
    impl Listener for Impostor {
        fn name(&self) -> String {
            "test.impostor".into()
        }
        fn channel(&self) -> Channel {
            Channel::Email
        }
        async fn run(&self, ctx: ListenerContext) -> Result<(), String> {
            let m = InboundMessage::text(Channel::Sms, kontor_core::IdentityKind::Phone, "+491701234567", "x");
            *self.0.lock().await = Some(ctx.sink.accept(m).await);
            ctx.shutdown.cancelled().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_listener_cannot_hand_over_messages_of_another_channel() {
        let seen = Arc::new(tokio::sync::Mutex::new(None));
        let sup = Supervisor::start(
            &[Arc::new(Impostor(seen.clone())) as Arc<dyn Listener>],
            Arc::new(NoSink),
            Duration::from_millis(1),
            Duration::from_millis(5),
        );
        let answer = async {
            loop {
                if let Some(a) = seen.lock().await.clone() {
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("no answer");
        assert!(
            matches!(answer, Err(SinkError::Rejected(m)) if m.contains("email listener handed over a sms message"))
        );
        sup.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_listener_that_ignores_shutdown_is_aborted_after_the_grace_period() {
        let running = Arc::new(tokio::sync::Notify::new());
        let sup = Supervisor::start(
            &[Arc::new(Stubborn(running.clone())) as Arc<dyn Listener>],
            Arc::new(NoSink),
            Duration::from_millis(1),
            Duration::from_millis(5),
        );
        tokio::time::timeout(Duration::from_secs(10), running.notified()).await.expect("listener never ran");
        assert!(!sup.shutdown(Duration::from_millis(50)).await);
        // Aborting is asynchronous: wait until the listener's future is gone.
        let gone = async {
            while Arc::strong_count(&running) > 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the aborted listener still runs");
    }
}
