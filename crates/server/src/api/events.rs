//! The event log: paging (`GET /api/v1/events`) and the live stream (Server-Sent Events,
//! resumable with `Last-Event-ID`: no gap, no duplicate).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use kontor_core::Event;
use serde::Serialize;
use utoipa::ToSchema;

use super::{int_param, params, Params};
use crate::auth::Caller;
use crate::error::AppError;
use crate::AppState;

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Pass as `after` for the next page.
    pub next_after: i64,
}

/// Events with id greater than `after`, oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("after" = Option<i64>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1..=1000, default 100")),
    responses((status = 200, body = EventPage)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller, q: Params) -> Result<Json<EventPage>, AppError> {
    let p = params(q)?;
    let after = int_param(&p, "after")?.unwrap_or(0);
    let limit = super::int_param_in(&p, "limit", 1..=1000)?.unwrap_or(100);
    let all = state.store.events_after(after, limit).await?;
    let next_after = all.last().map(|e| e.id).unwrap_or(after);
    // Agents do not see events of cases outside their teams (the cursor still moves on).
    let seen = crate::auth::Visibility::for_actor(&caller.actor());
    let mut items = Vec::with_capacity(all.len());
    for e in all {
        if seen.can_see_event(&state.store, e.case_id, e.customer_id).await {
            items.push(e);
        }
    }
    Ok(Json(EventPage { items, next_after }))
}

/// How often a stream opened with a session re-reads it (role, teams, sign-out): what a
/// stream shows follows such changes within 5 s.
const SESSION_RECHECK: Duration = Duration::from_secs(4);

struct ClientGauge(prometheus::IntGauge);
impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Live events as Server-Sent Events. Starts after `Last-Event-ID` (header) or `after`
/// (query); without either, with events from now on.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(("Last-Event-ID" = Option<i64>, Header), ("after" = Option<i64>, Query)),
    responses((status = 200, description = "text/event-stream; each event has `id:` and JSON `data:`; \
        presence signals come as `event: presence` without id")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    q: Params,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let p = params(q)?;
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| AppError::invalid("Last-Event-ID", "must be an event id"))?,
        ),
    };
    let start = match from_header.or(int_param(&p, "after")?) {
        Some(id) => id,
        None => state.store.max_event_id().await?,
    };
    let mut latest = state.store.subscribe();
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    metrics.stream_clients.inc();
    let gauge = ClientGauge(metrics.stream_clients.clone());
    let mut presence = state.store.subscribe_presence();
    let mut seen = crate::auth::Visibility::for_actor(&caller.actor());
    let state2 = state.clone();
    let session = caller.session.clone();
    let token_id = caller.token_id;
    let s = async_stream::stream! {
        let _gauge = gauge;
        let mut cursor = start;
        let mut session_checked = std::time::Instant::now();
        loop {
            // A stream opened with a token ends when the token is revoked.
            if token_id.is_some_and(|id| state2.tokens.is_revoked(id)) {
                break;
            }
            // A stream opened with a session ends when the session does (sign-out, new
            // password, deactivation), and follows the user's role and teams: what it may
            // show is worked out anew from the user as they are now.
            if let Some(token) = &session {
                if session_checked.elapsed() >= SESSION_RECHECK {
                    session_checked = std::time::Instant::now();
                    match state2.store.session(token).await {
                        Ok(None) => break,
                        Ok(Some(s)) => seen = crate::auth::Visibility::for_staff(s.user.id, s.user.role),
                        // Database trouble: keep going; visibility checks hide when in doubt.
                        Err(e) => tracing::debug!(error = %e, "Event stream cannot re-read its session."),
                    }
                }
            }
            // Only go to the database when something newer is known (or now and then,
            // in case a notification was missed). Presence signals pass straight through,
            // as `event: presence` without an id, so they never disturb Last-Event-ID.
            if *latest.borrow_and_update() <= cursor {
                // Wake in time for the next session check.
                let wait = if session.is_some() {
                    SESSION_RECHECK.saturating_sub(session_checked.elapsed()).min(Duration::from_secs(2))
                } else {
                    Duration::from_secs(2)
                };
                tokio::select! {
                    _ = tokio::time::timeout(wait, latest.changed()) => {}
                    p = presence.recv() => {
                        match p {
                            Ok(payload) => {
                                let case = serde_json::from_str::<serde_json::Value>(&payload)
                                    .ok()
                                    .and_then(|v| v.get("case_id").and_then(|c| c.as_i64()));
                                if seen.can_see(&state2.store, case).await {
                                    yield Ok(SseEvent::default().event("presence").data(payload));
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                        continue;
                    }
                }
            }
            let mut revoked = false;
            match store.events_after(cursor, 500).await {
                Ok(events) => {
                    let now = kontor_store::now_us();
                    for e in events {
                        cursor = e.id;
                        if e.kind == "token.revoked"
                            && token_id.is_some()
                            && e.payload.pointer("/token/id").and_then(|v| v.as_i64()) == token_id
                        {
                            revoked = true;
                            break;
                        }
                        // Agents do not see events of cases outside their teams.
                        if !seen.can_see_event(&state2.store, e.case_id, e.customer_id).await {
                            continue;
                        }
                        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&e.created_at) {
                            metrics.stream_lag.observe(((now - t.timestamp_micros()).max(0) as f64) / 1e6);
                        }
                        let data = serde_json::to_string(&e).unwrap_or_default();
                        yield Ok(SseEvent::default().id(e.id.to_string()).data(data));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Event stream cannot read events; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if revoked {
                break;
            }
        }
    };
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What a staff user is doing in a case.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    /// `viewing`, `typing` or `left`.
    pub state: String,
}

/// Tells the other agents that the signed-in user views, types in, or left a case. Sent to
/// every open event stream as `event: presence`; nothing is stored.
#[utoipa::path(post, path = "/api/v1/cases/{id}/presence", tag = "events", params(("id" = i64, Path)),
    request_body = PresenceRequest, responses((status = 204, description = "Announced")), security(("bearer" = [])))]
pub async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::error::ApiJson(req): crate::error::ApiJson<PresenceRequest>,
) -> Result<axum::http::StatusCode, AppError> {
    let id = super::path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    let Some(user_id) = caller.user_id else {
        return Err(AppError::invalid("state", "presence needs a signed-in staff user, not an API token"));
    };
    if !matches!(req.state.as_str(), "viewing" | "typing" | "left") {
        return Err(AppError::invalid("state", "must be viewing, typing or left"));
    }
    let payload = serde_json::json!({
        "case_id": id, "user_id": user_id, "name": caller.user_name, "state": req.state,
        "at": kontor_store::format_ts(kontor_store::now_us()),
    });
    state.store.publish_presence(payload.to_string()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
