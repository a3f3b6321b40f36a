//! The server's side of the channel contract: channels' webhooks mounted at
//! `/webhooks/<channel>/...` (their messages and reports committed before the provider gets its
//! answer), the inbound sink that listeners hand messages to, and the channels' status for
//! admins (`GET /api/v1/channels`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use kontor_channel::{
    InboundMessage, InboundReceipt, InboundSink, ListenerHealth, RawSource, SinkError, WebhookError, WebhookRequest,
};
use kontor_store::{Store, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::AppError;
use crate::AppState;

/// Hands inbound messages from listeners to the store; answers after the commit.
#[derive(Clone)]
pub struct StoreSink {
    store: Store,
    /// Where the bytes of files received with messages go (`None`: messages with files are
    /// refused as temporarily impossible).
    vault: Option<kontor_vault::Vault>,
}

impl StoreSink {
    /// A sink writing to `store`, and files to `vault`.
    pub fn new(store: Store, vault: Option<kontor_vault::Vault>) -> Self {
        StoreSink { store, vault }
    }
}

fn sink_error(e: StoreError) -> SinkError {
    if e.is_unavailable() {
        SinkError::Temporary(e.to_string())
    } else {
        SinkError::Rejected(e.to_string())
    }
}

/// Normalises the sender's address (a channel may hand it over as the provider wrote it) and
/// stores the message; resolves after the commit.
async fn ingest(store: &Store, mut message: InboundMessage) -> Result<InboundReceipt, SinkError> {
    message.from_address =
        kontor_core::normalise_identity(message.from_kind, &message.from_address, &store.settings().default_region)
            .map_err(|e| SinkError::Rejected(format!("sender {}: {e}", message.from_kind.as_str())))?;
    store.ingest(message).await.map_err(sink_error)
}

/// Raw sources up to this size are kept sealed in the database with their message; larger
/// ones go to the blob store.
const INLINE_SOURCE_BYTES: usize = 256 * 1024;

#[async_trait::async_trait]
impl InboundSink for StoreSink {
    async fn cursor(&self, name: &str) -> Result<Option<String>, SinkError> {
        self.store.channel_cursor(name).await.map_err(sink_error)
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError> {
        self.store.set_channel_cursor(name, value).await.map_err(sink_error)
    }

    async fn report(&self, report: kontor_channel::DeliveryReport) -> Result<bool, SinkError> {
        self.store.apply_delivery_report(report).await.map(|applied| applied.is_some()).map_err(sink_error)
    }

    async fn accept(&self, mut message: InboundMessage) -> Result<InboundReceipt, SinkError> {
        let raw = match message.raw_source.take() {
            Some(RawSource::Bytes(b)) => Some(b),
            Some(RawSource::Stored(_) | RawSource::Sealed { .. }) => {
                return Err(SinkError::Rejected("a channel may not name a stored raw source".into()))
            }
            None => None,
        };
        if message.files.is_empty() && raw.is_none() {
            return ingest(&self.store, message).await;
        }
        let vault = self.vault.as_ref().ok_or_else(|| SinkError::Temporary("the blob store is not open".into()))?;
        // Described first (name, sniffed type, size, SHA-256), so that a repeat is recognised
        // as one — its fingerprint covers them — and stores no second copy of the bytes.
        let mut uploads = Vec::with_capacity(message.files.len());
        for f in std::mem::take(&mut message.files) {
            let u = crate::blobs::Upload::new(f.filename, f.content_type, f.bytes).await;
            uploads.push((u.attachment, u.bytes));
        }
        let links = message.attachments.clone();
        message.attachments.extend(uploads.iter().map(|(a, _)| a.clone()));
        if let Some(first) = self.store.find_repeat(&message).await.map_err(sink_error)? {
            return Ok(first);
        }
        // Durable in the blob store before the message that refers to them is committed.
        let stored = crate::blobs::store_uploads(vault, uploads).await.map_err(SinkError::Temporary)?;
        message.attachments = links;
        message.attachments.extend(stored.iter().cloned());
        let mut blobs: Vec<String> = stored.iter().filter_map(|a| a.blob_id.clone()).collect();
        if let Some(raw) = raw.as_ref().filter(|r| r.len() <= INLINE_SOURCE_BYTES) {
            // Small (most mail): sealed here and kept with the message, in its transaction.
            match vault.seal_small(raw) {
                Ok(s) => message.raw_source = Some(RawSource::Sealed { id: s.id, bytes: s.sealed.into() }),
                Err(e) => {
                    crate::blobs::discard_blobs(vault, &blobs).await;
                    return Err(SinkError::Temporary(format!("the raw source cannot be sealed: {e}")));
                }
            }
        } else if let Some(raw) = raw {
            match vault.put(raw).await {
                Ok(put) => {
                    blobs.push(put.id.clone());
                    message.raw_source = Some(RawSource::Stored(put.id));
                }
                Err(e) => {
                    crate::blobs::discard_blobs(vault, &blobs).await;
                    return Err(SinkError::Temporary(format!("the raw source cannot be stored: {e}")));
                }
            }
        }
        match ingest(&self.store, message).await {
            Ok(r) if r.created => Ok(r),
            // A concurrent copy was stored first, with its own files.
            Ok(r) => {
                crate::blobs::discard_blobs(vault, &blobs).await;
                Ok(r)
            }
            Err(e) => {
                crate::blobs::discard_blobs(vault, &blobs).await;
                Err(e)
            }
        }
    }
}

/// Routes of the channels' webhooks (no API authentication: each channel verifies its
/// provider's signature).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/{channel}/{*path}", any(webhook))
        .route("/webhooks/{channel}", any(webhook_root))
        .route("/api/v1/channels", get(status))
        .route("/api/v1/channels/{channel}/status", get(channel_status))
}

async fn webhook_root(
    state: State<AppState>,
    Path(channel): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, channel, String::new(), method, uri, headers, body).await
}

async fn webhook(
    state: State<AppState>,
    Path((channel, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, channel, path, method, uri, headers, body).await
}

fn refusal(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let code = match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        422 => "invalid",
        500 => "internal",
        503 => "unavailable",
        _ => "bad_request",
    };
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn handle(
    State(state): State<AppState>,
    channel: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(hook) = state.channels.webhook(&channel) else {
        return refusal(404, "no webhook for this channel");
    };
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let Ok(value) = value.to_str() else { continue };
        map.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    let host = map.get("host").cloned().unwrap_or_default();
    let scheme = map.get("x-forwarded-proto").map(String::as_str).unwrap_or("http").to_string();
    let request = WebhookRequest {
        method: method.as_str().to_ascii_uppercase(),
        path,
        query: uri.query().unwrap_or_default().to_string(),
        url: format!("{scheme}://{host}{uri}"),
        headers: map,
        body,
    };
    let outcome = match hook.handle(&request).await {
        Ok(o) => o,
        Err(e @ WebhookError::Signature(_)) => {
            state.metrics.webhooks.with_label_values(&[&channel, "forged"]).inc();
            tracing::warn!(channel = %channel, error = %e, "Webhook refused: signature.");
            return refusal(e.status(), &e.to_string());
        }
        Err(e) => {
            state.metrics.webhooks.with_label_values(&[&channel, "refused"]).inc();
            return refusal(e.status(), &e.to_string());
        }
    };
    // A channel speaks for itself only: its webhook cannot store messages or reports of
    // another channel, nor point at bytes in the blob store (webhooks have no access to it).
    let own = hook.channel();
    if outcome.inbound.iter().any(|m| {
        m.channel != own
            || !m.files.is_empty()
            || m.raw_source.is_some()
            || m.attachments.iter().any(|a| a.blob_id.is_some())
    }) || outcome.reports.iter().any(|r| r.channel != own)
    {
        state.metrics.webhooks.with_label_values(&[&channel, "error"]).inc();
        tracing::error!(channel = %channel, "A webhook handed over messages or reports of another channel; refused.");
        return refusal(500, "the channel's webhook handed over data of another channel");
    }
    // Commit everything before answering: a provider that gets no 2xx sends again, and the
    // provider ids make a repeat a no-op.
    let stored = futures::future::join_all(outcome.inbound.into_iter().map(|m| ingest(&state.store, m))).await;
    for r in stored {
        if let Err(e) = r {
            state.metrics.webhooks.with_label_values(&[&channel, "error"]).inc();
            return match e {
                SinkError::Temporary(m) => refusal(503, &m),
                SinkError::Rejected(m) => refusal(422, &m),
            };
        }
    }
    for report in outcome.reports {
        if let Err(e) = state.store.apply_delivery_report(report).await {
            state.metrics.webhooks.with_label_values(&[&channel, "error"]).inc();
            return refusal(503, &e.to_string());
        }
    }
    state.metrics.webhooks.with_label_values(&[&channel, "ok"]).inc();
    let reply = outcome.reply;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    (status, [(axum::http::header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}

/// The channels this node runs and the health of their listeners.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelsStatus {
    /// Channels replies can be sent on.
    pub outbound: Vec<kontor_core::Channel>,
    /// Channels with a webhook at `/webhooks/<channel>/...`.
    pub webhooks: Vec<kontor_core::Channel>,
    /// Long-running listeners and pollers.
    pub listeners: Vec<ListenerHealth>,
}

/// The channels of this node and their listeners' health (admins).
#[utoipa::path(get, path = "/api/v1/channels", tag = "admin",
    responses((status = 200, body = ChannelsStatus)), security(("bearer" = [])))]
pub async fn status(State(state): State<AppState>, caller: Caller) -> Result<Json<ChannelsStatus>, AppError> {
    caller.require_admin()?;
    Ok(Json(ChannelsStatus {
        outbound: state.channels.deliverable(),
        webhooks: state.channels.webhook_channels(),
        listeners: state.listener_health(),
    }))
}

/// How long a status request waits for a channel's probe (the probe itself ends sooner).
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// One channel's state on this node (admins).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelStatus {
    pub channel: kontor_core::Channel,
    /// Replies can be sent on it (e-mail: a relay is configured).
    pub outbound: bool,
    /// Whether the provider answered when checked just now or in the last seconds (e-mail:
    /// the relay greeted and took `EHLO`, with TLS as configured; nothing is sent); `null`
    /// when this node has no sender for the channel or the sender is not checked.
    pub outbound_reachable: Option<bool>,
    /// Why the provider is not reachable (e-mail: connection refused, no answer in time, TLS,
    /// the relay's refusal), without secrets; `null` when it is.
    pub outbound_error: Option<String>,
    /// It has a webhook.
    pub webhook: bool,
    /// Its listeners and pollers (e-mail: the SMTP listener), with their last error and
    /// last activity.
    pub listeners: Vec<ListenerHealth>,
    /// When the newest message came in on it.
    pub last_inbound_at: Option<kontor_core::Timestamp>,
    /// The newest reply sent on it: when, its delivery state and the provider's reason if it
    /// failed (e-mail: the relay's answer).
    pub last_outbound_at: Option<kontor_core::Timestamp>,
    pub last_outbound_state: Option<kontor_core::DeliveryState>,
    pub last_outbound_error: Option<String>,
}

/// One channel's configuration and health (admins): `GET /api/v1/channels/email/status`.
#[utoipa::path(get, path = "/api/v1/channels/{channel}/status", tag = "admin",
    params(("channel" = String, Path, description = "e.g. `email`")),
    responses((status = 200, body = ChannelStatus), (status = 404, description = "No such channel")),
    security(("bearer" = [])))]
pub async fn channel_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(channel): Path<String>,
) -> Result<Json<ChannelStatus>, AppError> {
    caller.require_admin()?;
    let ch = kontor_core::Channel::parse(&channel).ok_or_else(|| AppError::NotFound(format!("channel {channel}")))?;
    let sender = state.channels.outbound(ch);
    // The probe runs beside the database query; the answer never waits long for it.
    let probe = async {
        let sender = sender.as_ref()?;
        match tokio::time::timeout(PROBE_DEADLINE, sender.probe()).await {
            Ok(result) => result,
            Err(_) => Some(Err(format!("no answer within {} s", PROBE_DEADLINE.as_secs()))),
        }
    };
    let (activity, probe) = tokio::join!(state.store.channel_activity(ch), probe);
    let activity = activity?;
    Ok(Json(ChannelStatus {
        channel: ch,
        outbound: sender.is_some(),
        outbound_reachable: probe.as_ref().map(Result::is_ok),
        outbound_error: probe.and_then(Result::err),
        webhook: state.channels.webhook(ch.as_str()).is_some(),
        listeners: state.listener_health().into_iter().filter(|l| l.channel == ch).collect(),
        last_inbound_at: activity.last_inbound_at,
        last_outbound_at: activity.last_outbound_at,
        last_outbound_state: activity.last_outbound_state,
        last_outbound_error: activity.last_outbound_error,
    }))
}
