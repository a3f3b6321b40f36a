//! The event log: paging (`GET /api/v1/events`) and the live stream (Server-Sent Events,
//! resumable with `Last-Event-ID`: no gap, no duplicate). Streams are fed by the node's
//! [`crate::live::Hub`]: new events are read once per node, not once per stream.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use kontor_core::{CaseId, Event, UserId};
use serde::Serialize;
use utoipa::ToSchema;

use super::{int_param, params, Params};
use crate::auth::Caller;
use crate::error::AppError;
use crate::live::{read_page, LiveEvent, Viewer};
use crate::AppState;
use tokio::sync::broadcast::error::RecvError;

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Pass as `after` for the next page.
    pub next_after: i64,
}

/// Events with id greater than `after`, oldest first, rendered for clients (a message
/// event carries the message as it is now under `payload.message`, `null` once erased).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("after" = Option<i64>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1..=1000, default 100")),
    responses((status = 200, body = EventPage)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller, q: Params) -> Result<Json<EventPage>, AppError> {
    let p = params(q)?;
    let after = int_param(&p, "after")?.unwrap_or(0);
    let limit = super::int_param_in(&p, "limit", 1..=1000)?.unwrap_or(100);
    let all = state.store.client_events_after(after, limit).await?;
    let next_after = all.last().map(|e| e.event.id).unwrap_or(after);
    // Agents do not see events of cases outside their teams (the cursor still moves on).
    let teams: Option<HashSet<i64>> = match caller.restricted_user() {
        Some(user) => Some(state.store.user_team_ids(user).await?.into_iter().collect()),
        None => None,
    };
    let items =
        all.into_iter().filter(|e| teams.as_ref().is_none_or(|t| e.audience.admits(t))).map(|e| e.event).collect();
    Ok(Json(EventPage { items, next_after }))
}

/// How often a stream opened with a session re-reads it (role, teams, sign-out): what a
/// stream shows follows such changes within 5 s (membership changes at once, as their
/// events pass).
const SESSION_RECHECK: Duration = Duration::from_secs(4);

struct ClientGauge(prometheus::IntGauge);
impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One stream's position and filter.
struct StreamState {
    /// The newest event id handled (sent or filtered out).
    cursor: i64,
    viewer: Viewer,
    token_id: Option<i64>,
    /// Set by an event that changed this user: re-read the session now.
    recheck: bool,
    metrics: Arc<crate::metrics::Metrics>,
}

impl StreamState {
    /// Sends what the hub picked for this stream (already filtered), skipping what the
    /// stream sent while catching up; ends on the revocation of its token.
    fn send_live(&mut self, events: &[Arc<LiveEvent>]) -> (Vec<SseEvent>, bool) {
        let mut out = Vec::new();
        let now = kontor_store::now_us();
        for e in events {
            if e.id <= self.cursor {
                continue;
            }
            self.cursor = e.id;
            if e.revoked_token.is_some() && e.revoked_token == self.token_id {
                return (out, true);
            }
            self.metrics.stream_lag.observe(((now - e.created_at.as_micros()).max(0) as f64) / 1e6);
            out.push(SseEvent::default().id(e.id.to_string()).data(&e.data));
        }
        (out, false)
    }

    /// Handles the events newer than the cursor, in order: what to send, and whether the
    /// stream ends (its token was revoked).
    fn take(&mut self, events: &[LiveEvent]) -> (Vec<SseEvent>, bool) {
        let mut out = Vec::new();
        let now = kontor_store::now_us();
        for e in events {
            if e.id <= self.cursor {
                continue;
            }
            self.cursor = e.id;
            if e.revoked_token.is_some() && e.revoked_token == self.token_id {
                return (out, true);
            }
            if crate::live::follow(&mut self.viewer, e) {
                self.recheck = true;
            }
            if !self.viewer.sees(&e.audience) {
                continue;
            }
            self.metrics.stream_lag.observe(((now - e.created_at.as_micros()).max(0) as f64) / 1e6);
            out.push(SseEvent::default().id(e.id.to_string()).data(&e.data));
        }
        (out, false)
    }
}

/// Live events as Server-Sent Events. Starts after `Last-Event-ID` (header) or `after`
/// (query); without either, with events from now on. The data of each event is what
/// `GET /api/v1/events` shows for it.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(("Last-Event-ID" = Option<i64>, Header), ("after" = Option<i64>, Query)),
    responses((status = 200, description = "text/event-stream; each event has `id:` and JSON `data:`; \
        presence signals come as `event: presence` without id"),
        (status = 429, description = "The caller has `max_streams_per_caller` streams open on this node")),
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
    let newest = state.store.max_event_id().await?;
    // An id beyond the newest (another server's, or from before a restore) would hide every
    // event until the log caught up with it: start from the newest instead.
    let start = from_header.or(int_param(&p, "after")?).unwrap_or(newest).min(newest);
    let session = caller.session.clone();
    let viewer = match &session {
        Some(token) => match state.store.session_viewer(token).await? {
            Some(v) => Viewer::staff(&v),
            None => return Err(AppError::Unauthorized),
        },
        // Only sessions are restricted today; anything else sees nothing it should not.
        None => Viewer::for_actor(&caller.actor()),
    };
    let caller_key = match (caller.user_id, caller.token_id) {
        (Some(user), _) => format!("user:{user}"),
        (None, Some(token)) => format!("token:{token}"),
        (None, None) => "anonymous".to_string(),
    };
    let permit = state.live.limits.admit(caller_key, state.config.max_streams_per_caller).ok_or_else(|| {
        AppError::TooMany(format!(
            "too many open event streams for this caller (at most {} per node); close one first",
            state.config.max_streams_per_caller
        ))
    })?;
    // Subscribe before catching up, so that nothing committed from here on is missed.
    let mut sub = state.live.subscribe(viewer.clone());
    let metrics = state.metrics.clone();
    metrics.stream_clients.inc();
    let gauge = ClientGauge(metrics.stream_clients.clone());
    let mut presence = state.store.subscribe_presence();
    let mut seen = crate::auth::Visibility::for_actor(&caller.actor());
    let state2 = state.clone();
    let token_id = caller.token_id;
    let mut st = StreamState { cursor: start, viewer, token_id, recheck: false, metrics };
    let s = async_stream::stream! {
        let _gauge = gauge;
        let _permit = permit;
        let store = &state2.store;
        // Catch up from the database first, and again whenever deliveries were dropped.
        let mut behind = true;
        let mut next_check = tokio::time::Instant::now() + SESSION_RECHECK;
        'stream: loop {
            // A stream opened with a token ends when the token is revoked.
            if token_id.is_some_and(|id| state2.tokens.is_revoked(id)) {
                break;
            }
            // A stream opened with a session ends when the session does (sign-out, new
            // password, deactivation), and follows the user's role and teams.
            if let Some(token) = &session {
                if st.recheck || tokio::time::Instant::now() >= next_check {
                    st.recheck = false;
                    next_check = tokio::time::Instant::now() + SESSION_RECHECK;
                    match store.session_viewer(token).await {
                        Ok(None) => break,
                        Ok(Some(v)) => {
                            st.viewer = Viewer::staff(&v);
                            sub.set_viewer(st.viewer.clone());
                            seen = crate::auth::Visibility::for_staff(UserId(v.user_id), v.role);
                        }
                        // Database trouble: keep going with what the stream knows.
                        Err(e) => tracing::debug!(error = %e, "Event stream cannot re-read its session."),
                    }
                }
            }
            if behind {
                st.metrics.stream_catchups.inc();
                // What the hub applies now (it follows membership events as it publishes).
                st.viewer = sub.viewer();
            }
            while behind {
                // A long catch-up still ends with the token, and still follows the session.
                if token_id.is_some_and(|id| state2.tokens.is_revoked(id)) {
                    break 'stream;
                }
                if session.is_some() && (st.recheck || tokio::time::Instant::now() >= next_check) {
                    continue 'stream;
                }
                match read_page(store, st.cursor).await {
                    Ok(events) => {
                        let full = events.len() as i64 >= crate::live::PAGE;
                        let (out, end) = st.take(&events);
                        for ev in out {
                            yield Ok(ev);
                        }
                        if end {
                            break 'stream;
                        }
                        behind = full;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Event stream cannot read events; retrying.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue 'stream;
                    }
                }
            }
            // Wait for what the hub hands this stream, a presence signal, or the next session
            // check. Presence signals pass straight through, as `event: presence` without an
            // id, so they never disturb Last-Event-ID.
            tokio::select! {
                delivery = sub.recv() => match delivery {
                    Some(d) => {
                        let (out, end) = st.send_live(&d.events);
                        for ev in out {
                            yield Ok(ev);
                        }
                        if end {
                            break 'stream;
                        }
                        st.recheck |= d.recheck;
                        // Deliveries were dropped while this stream was behind: read the
                        // database (the flag is cleared first, so nothing falls between).
                        behind = sub.take_lagged();
                    }
                    None => break 'stream,
                },
                p = presence.recv() => match p {
                    Ok(payload) => {
                        let case = serde_json::from_str::<serde_json::Value>(&payload)
                            .ok()
                            .and_then(|v| v.get("case_id").and_then(|c| c.as_i64()))
                            .map(CaseId);
                        if seen.can_see(&state2.store, case).await {
                            yield Ok(SseEvent::default().event("presence").data(payload));
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => tokio::time::sleep(Duration::from_millis(500)).await,
                },
                _ = tokio::time::sleep_until(next_check), if session.is_some() => {}
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
        "at": kontor_core::Timestamp::now(),
    });
    state.store.publish_presence(payload.to_string()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
