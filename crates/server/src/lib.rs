//! Kontor's HTTP face: the REST API (`/api/v1`), the live event stream, operations
//! endpoints, and the background job workers that deliver outbound messages.
//!
//! Handlers only translate between HTTP and the store; rules live in `kontor-core` and
//! `kontor-store`.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod web;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use axum::Router;
use kontor_core::Channel;
use kontor_store::Store;
use tokio::sync::Notify;

pub use config::Config;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    pub tokens: Arc<auth::TokenCache>,
    /// Name of this node in job leases.
    pub node: String,
    /// Wakes the local job worker when a job was queued here.
    pub jobs_ready: Arc<Notify>,
    /// Sign-in attempts per address and per e-mail.
    pub sign_in_limiter: Arc<web::SignInLimiter>,
    /// This node's live event hub: new events are read once and fanned out to the streams.
    pub live: Arc<live::Hub>,
}

impl AppState {
    /// State for a store and configuration.
    pub fn new(store: Store, config: Config) -> AppState {
        let node = config.node_name.clone().unwrap_or_else(default_node_name);
        AppState {
            live: live::Hub::new(store.clone()),
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
        vec![Channel::Api]
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
        .fallback(|| async { error::AppError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router(state)` on `addr` with the job workers, until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    worker::spawn(state.clone());
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
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
