//! Prometheus metrics, health and readiness.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde_json::json;

use crate::AppState;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub ingested: IntCounterVec,
    pub jobs: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub latest_event_id: IntGauge,
    pub stream_clients: IntGauge,
    /// Seconds from an event's commit to its delivery on a live stream.
    pub stream_lag: Histogram,
    /// Channel webhook requests by channel and outcome (`ok`, `forged`, `refused`, `error`).
    pub webhooks: IntCounterVec,
    /// 1 while a channel listener runs, 0 while it waits to restart or has stopped.
    pub listener_up: IntGaugeVec,
    /// Restarts of a channel listener after failures.
    pub listener_restarts: IntGaugeVec,
    /// Times a live stream read the event log itself (on opening, or after falling behind
    /// the node's hub).
    pub stream_catchups: prometheus::IntCounter,
    /// Received messages waiting for the assistant's analysis.
    pub assist_backlog: IntGauge,
    /// Messages the assistant analysed on this node.
    pub assist_analysed: prometheus::IntCounter,
    /// Seconds one analysis batch took (the analysis only, not its commit).
    pub assist_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("kontor".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .unwrap_or_else(|_| unreachable!());
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["method", "route"],
        )
        .unwrap_or_else(|_| unreachable!());
        let ingested = IntCounterVec::new(
            Opts::new("ingest_messages_total", "Inbound messages by channel and result"),
            &["channel", "result"],
        )
        .unwrap_or_else(|_| unreachable!());
        let jobs = IntCounterVec::new(Opts::new("jobs_total", "Job runs by kind and outcome"), &["kind", "outcome"])
            .unwrap_or_else(|_| unreachable!());
        let queue_depth = IntGaugeVec::new(Opts::new("job_queue_depth", "Jobs by status"), &["status"])
            .unwrap_or_else(|_| unreachable!());
        let latest_event_id =
            IntGauge::new("events_latest_id", "Newest event id this node knows of").unwrap_or_else(|_| unreachable!());
        let stream_clients =
            IntGauge::new("event_stream_clients", "Open event streams").unwrap_or_else(|_| unreachable!());
        let stream_lag = Histogram::with_opts(
            HistogramOpts::new("event_stream_lag_seconds", "Time from event commit to delivery on a live stream")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
        )
        .unwrap_or_else(|_| unreachable!());
        let webhooks = IntCounterVec::new(
            Opts::new("webhook_requests_total", "Channel webhook requests by channel and outcome"),
            &["channel", "outcome"],
        )
        .unwrap_or_else(|_| unreachable!());
        let listener_up =
            IntGaugeVec::new(Opts::new("listener_up", "Channel listener running (1) or not (0)"), &["name"])
                .unwrap_or_else(|_| unreachable!());
        let listener_restarts =
            IntGaugeVec::new(Opts::new("listener_restarts", "Channel listener restarts after failures"), &["name"])
                .unwrap_or_else(|_| unreachable!());
        let stream_catchups = prometheus::IntCounter::new(
            "event_stream_catchups_total",
            "Times a live stream read the event log itself instead of the node's hub",
        )
        .unwrap_or_else(|_| unreachable!());
        let assist_backlog = IntGauge::new("assist_backlog", "Received messages waiting for their analysis")
            .unwrap_or_else(|_| unreachable!());
        let assist_analysed = prometheus::IntCounter::new("assist_analysed_total", "Messages analysed on this node")
            .unwrap_or_else(|_| unreachable!());
        let assist_seconds = Histogram::with_opts(
            HistogramOpts::new("assist_batch_seconds", "Time to analyse one batch of messages")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
        )
        .unwrap_or_else(|_| unreachable!());
        for c in [
            Box::new(webhooks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(assist_backlog.clone()),
            Box::new(assist_analysed.clone()),
            Box::new(assist_seconds.clone()),
            Box::new(listener_up.clone()),
            Box::new(listener_restarts.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_seconds.clone()),
            Box::new(ingested.clone()),
            Box::new(jobs.clone()),
            Box::new(queue_depth.clone()),
            Box::new(latest_event_id.clone()),
            Box::new(stream_clients.clone()),
            Box::new(stream_lag.clone()),
            Box::new(stream_catchups.clone()),
        ] {
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            http_requests,
            http_seconds,
            ingested,
            jobs,
            queue_depth,
            latest_event_id,
            stream_clients,
            stream_lag,
            webhooks,
            listener_up,
            listener_restarts,
            stream_catchups,
            assist_backlog,
            assist_analysed,
            assist_seconds,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Middleware counting requests by matched route.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.http_requests.with_label_values(&[&method, &route, resp.status().as_str()]).inc();
    if route != "/api/v1/events/stream" {
        m.http_seconds.with_label_values(&[&method, &route]).observe(start.elapsed().as_secs_f64());
    }
    resp
}

/// Samples the job queue every few seconds for the depth gauge.
pub fn spawn_sampler(state: AppState) {
    tokio::spawn(async move {
        loop {
            if let Ok(s) = state.store.queue_stats().await {
                let g = &state.metrics.queue_depth;
                g.with_label_values(&["queued"]).set(s.queued);
                g.with_label_values(&["running"]).set(s.running);
                g.with_label_values(&["dead"]).set(s.dead);
            }
            state.metrics.latest_event_id.set(state.store.latest_event_id());
            if let Ok(n) = state.store.analysis_backlog().await {
                state.metrics.assist_backlog.set(n);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// How long a readiness probe waits for a write to commit.
const WRITE_PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// Ready when reads are answered and a write commits through this node's writer within
/// [`WRITE_PROBE_DEADLINE`]: a held write lock (SQLite) or a stuck writer makes the node
/// unready even though reads still work.
async fn readyz(State(state): State<AppState>) -> Response {
    let checked = match state.store.ping().await {
        Ok(()) => state.store.probe_write(WRITE_PROBE_DEADLINE).await,
        Err(e) => Err(e),
    };
    let queued = state.store.write_queue_len();
    match checked {
        Ok(()) => Json(json!({ "status": "ready", "write_queue": queued })).into_response(),
        Err(e) => {
            let body = json!({ "status": "unavailable", "reason": e.to_string(), "write_queue": queued });
            (StatusCode::SERVICE_UNAVAILABLE, [("Retry-After", "1")], Json(body)).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.latest_event_id.set(state.store.latest_event_id());
    if let Ok(n) = state.store.analysis_backlog().await {
        state.metrics.assist_backlog.set(n);
    }
    for h in state.listener_health() {
        let up = i64::from(h.state == kontor_channel::ListenerState::Running);
        state.metrics.listener_up.with_label_values(&[&h.name]).set(up);
        state.metrics.listener_restarts.with_label_values(&[&h.name]).set(h.restarts as i64);
    }
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}
