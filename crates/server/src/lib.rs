//! Kontor's HTTP face: the REST API (`/api/v1`), the live event stream, operations
//! endpoints, and the background job workers that deliver outbound messages.
//!
//! Handlers only translate between HTTP and the store; rules live in `kontor-core` and
//! `kontor-store`.

pub mod api;
pub mod assist;
pub mod auth;
pub mod blobs;
pub mod channels;
pub mod config;
pub mod error;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod web;
pub mod worker;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use axum::Router;
use kontor_channel::{ChannelRegistry, ListenerHealth, Supervisor};
use kontor_core::Channel;
use kontor_store::Store;
use tokio::sync::Notify;

pub use config::Config;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The use cases with visibility (the application layer).
    pub app: Arc<kontor_app::App>,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    pub tokens: Arc<auth::TokenCache>,
    /// Name of this node in job leases.
    pub node: String,
    /// Wakes the local job worker when a job was queued here.
    pub jobs_ready: Arc<Notify>,
    /// Sign-in attempts per address and per e-mail.
    pub sign_in_limiter: Arc<web::SignInLimiter>,
    /// The channels of this node: senders, webhooks, listeners.
    pub channels: Arc<ChannelRegistry>,
    /// The handlers of the job kinds.
    pub jobs: Arc<jobs::JobRegistry>,
    /// The supervisor of the channels' listeners, once `serve` started it.
    pub runtime: Arc<OnceLock<Supervisor>>,
    /// The encrypted blob store (attachments' bytes); `None` until opened
    /// ([`blobs::open_vault`]): then uploads and downloads answer 503.
    pub vault: Option<kontor_vault::Vault>,
    /// Multipart uploads being received on this node (`max_concurrent_uploads` permits).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// This node's live event hub: new events are read once and fanned out to the streams.
    pub live: Arc<live::Hub>,
    /// The digital assistant: the analyser in use and the style guide.
    pub assist: Arc<assist::Assistant>,
}

impl AppState {
    /// State for a store and configuration, with the channels the configuration names.
    pub fn new(store: Store, config: Config) -> AppState {
        let channels = kontor_channels::registry(&config.channels()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "Cannot set up the channels; none will send.");
            ChannelRegistry::new()
        });
        Self::with_channels(store, config, channels)
    }

    /// State with a given channel registry (tests register fake channels this way).
    pub fn with_channels(store: Store, config: Config, channels: ChannelRegistry) -> AppState {
        let node = config.node_name.clone().unwrap_or_else(default_node_name);
        AppState {
            app: Arc::new(kontor_app::App::new(store.clone(), config.default_region.clone())),
            channels: Arc::new(channels),
            jobs: Arc::new(jobs::JobRegistry::standard()),
            runtime: Arc::default(),
            vault: None,
            uploads: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_uploads.max(1))),
            live: live::Hub::new(store.clone()),
            assist: Arc::new(assist::Assistant::new(&config.assist.patterns)),
            store,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::new()),
            tokens: Arc::new(auth::TokenCache::default()),
            node,
            jobs_ready: Arc::new(Notify::new()),
            sign_in_limiter: Arc::default(),
        }
    }

    /// Channels that have an outbound adapter.
    pub fn deliverable_channels(&self) -> Vec<Channel> {
        self.channels.deliverable()
    }

    /// The health of the channels' listeners (empty before `serve` started them).
    pub fn listener_health(&self) -> Vec<ListenerHealth> {
        self.runtime.get().map(Supervisor::health).unwrap_or_default()
    }
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "node".into());
    format!("{host}-{}", std::process::id())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    api::routes()
        .merge(metrics::routes())
        .merge(openapi::routes())
        .merge(web::routes())
        .merge(channels::routes())
        .fallback(|| async { error::AppError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// How long the channels' listeners get to finish their in-flight work at shutdown.
const LISTENER_GRACE: Duration = Duration::from_secs(10);

/// Serves `router(state)` on `addr` with the job workers and the channels' listeners, until
/// `shutdown` resolves; then stops taking requests and connections, and waits for in-flight
/// work to be committed or refused.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let supervisor = Supervisor::start(
        state.channels.listeners(),
        Arc::new(channels::StoreSink::new(state.store.clone(), state.vault.clone())),
        Duration::from_millis(state.config.jobs.backoff_base_ms.max(100)),
        Duration::from_millis(state.config.jobs.backoff_max_ms.clamp(1000, 300_000)),
    );
    let _ = state.runtime.set(supervisor.clone());
    let listeners_stopped = tokio::spawn({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            if !supervisor.shutdown(LISTENER_GRACE).await {
                tracing::warn!("Some channel listeners did not stop in time and were aborted.");
            }
        }
    });
    if let Some(vault) = &state.vault {
        blobs::spawn_sweeper(vault.clone(), state.store.clone());
    }
    worker::spawn(state.clone());
    assist::spawn_kicker(state.clone());
    auth::spawn_revocation_watch(state.store.clone(), state.tokens.clone());
    metrics::spawn_sampler(state.clone());
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Live events are small writes: without TCP_NODELAY, Nagle's algorithm holds them back
    // until the client's delayed ACK (tens of milliseconds).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY.");
        }
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await;
    stop.cancel();
    let _ = listeners_stopped.await;
    served
}
