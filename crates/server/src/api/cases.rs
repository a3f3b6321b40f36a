//! Cases: list, detail, change, internal notes, replies with collision control.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kontor_core::{Case, CaseId, CaseStatus, Channel, Priority};
use kontor_store::{
    cases::{CaseDetail, CaseFilter, CasePatch, NewReply, ReplyOutcome},
    Page,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::attachments::{self, AttachmentIn};
use super::{check_len, int_param, params, path_id, required_text, Params};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

fn parse_enum<T>(
    field: &str,
    raw: Option<&String>,
    parse: fn(&str) -> Option<T>,
    allowed: String,
) -> Result<Option<T>, AppError> {
    match raw.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse(s)
            .map(Some)
            .ok_or_else(|| AppError::invalid(field, format!("unknown value {s:?}; allowed: {allowed}"))),
    }
}

/// Lists cases, most recently changed first.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases",
    params(("status" = Option<CaseStatus>, Query),
           ("assignee" = Option<i64>, Query), ("team" = Option<i64>, Query),
           ("channel" = Option<Channel>, Query, description = "cases with a message on this channel"),
           ("customer" = Option<i64>, Query), ("tag" = Option<String>, Query), ("unassigned" = Option<bool>, Query),
           ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,18}_-?[0-9]{1,18}$", description = "next_cursor of the previous page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1..=200, default 50")),
    responses((status = 200, body = Page<Case>), (status = 422, description = "Invalid filter")),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller, q: Params) -> Result<Json<Page<Case>>, AppError> {
    let p = params(q)?;
    let filter = CaseFilter {
        status: parse_enum("status", p.get("status"), CaseStatus::parse, CaseStatus::allowed())?,
        assignee_id: int_param(&p, "assignee")?,
        team_id: int_param(&p, "team")?,
        channel: parse_enum("channel", p.get("channel"), Channel::parse, Channel::allowed())?,
        customer_id: int_param(&p, "customer")?,
        cursor: p.get("cursor").cloned(),
        limit: super::int_param_in(&p, "limit", 1..=200)?.unwrap_or(50),
        tag: p.get("tag").map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        unassigned: match p.get("unassigned").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(AppError::invalid("unassigned", "must be true or false")),
        },
        // Staff who are not admins see unteamed cases and their teams' cases; API tokens see all.
        visible_to: caller.restricted_user(),
    };
    Ok(Json(state.store.list_cases(filter).await?))
}

/// One case with its customer and all messages in order.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = i64, Path)),
    responses((status = 200, body = CaseDetail), (status = 404, description = "No such case")),
    security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, AppError> {
    let id = path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    Ok(Json(state.store.case_detail(id).await?))
}

/// Distinguishes an absent field (None) from an explicit null (Some(None)).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a case; absent fields stay as they are, `null` clears assignee or team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CasePatchRequest {
    #[schema(value_type = Option<CaseStatus>)]
    pub status: Option<String>,
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub assignee_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub team_id: Option<Option<i64>>,
    pub tags: Option<Vec<String>>,
    pub subject: Option<String>,
}

/// Changes status, priority, assignee, team, tags or subject.
#[utoipa::path(patch, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = i64, Path)),
    request_body = CasePatchRequest,
    responses((status = 200, body = Case), (status = 404, description = "No such case"), (status = 422, description = "Invalid field")),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CasePatchRequest>,
) -> Result<Json<Case>, AppError> {
    let id = path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    let status = parse_enum("status", req.status.as_ref(), CaseStatus::parse, CaseStatus::allowed())?;
    let priority = parse_enum("priority", req.priority.as_ref(), Priority::parse, Priority::allowed())?;
    if let Some(tags) = &req.tags {
        if tags.len() > 50 || tags.iter().any(|t| t.chars().count() > 64) {
            return Err(AppError::invalid("tags", "at most 50 tags of at most 64 characters"));
        }
    }
    if let Some(s) = &req.subject {
        check_len("subject", s, 998)?;
    }
    let patch = CasePatch {
        status,
        priority,
        assignee_id: req.assignee_id,
        team_id: req.team_id,
        tags: req.tags,
        subject: req.subject,
    };
    Ok(Json(state.store.patch_case(id, patch).await?))
}

/// An internal note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[schema(min_length = 1, max_length = 100000, pattern = r"\S")]
    pub text: String,
    /// Files kept with the note.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub attachments: Vec<AttachmentIn>,
}

/// Adds an internal note (never sent to the customer).
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", params(("id" = i64, Path)),
    request_body = NoteRequest, responses((status = 201, description = "Note stored")), security(("bearer" = [])))]
pub async fn note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NoteRequest>,
) -> Result<Response, AppError> {
    let id = path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    required_text("text", &req.text, 100_000)?;
    let incoming = attachments::validate(req.attachments, state.config.max_attachment_bytes)?;
    let stored = attachments::store(&state, incoming).await?;
    let added = state.store.add_note_with(CaseId(id), req.text, caller.user_id, stored.clone()).await;
    let (message, event_id) = attachments::discard_on_error(&state, &stored, added).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message_id": message.id, "event_id": event_id, "message": message })))
        .into_response())
}

/// A reply to the customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    #[schema(min_length = 1, max_length = 100000, pattern = r"\S")]
    pub text: String,
    /// The newest event id the writer had seen in this case.
    #[schema(minimum = 0)]
    pub based_on_event_id: i64,
    /// Send even if the case changed since `based_on_event_id`.
    #[serde(default)]
    pub force: bool,
    /// Channel to answer on; default: that of the customer's latest message.
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// Files sent with the reply.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub attachments: Vec<AttachmentIn>,
    /// The subject (e-mail); default: the case's (an e-mail answer gets `Re: `).
    #[schema(max_length = 998)]
    pub subject: Option<String>,
    /// Further recipients (e-mail `Cc`): e-mail addresses.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub cc: Vec<String>,
}

/// The answer to an accepted reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyAccepted {
    pub message_id: i64,
    pub case_id: i64,
    pub event_id: i64,
    pub channel: Channel,
    pub delivery_state: &'static str,
}

/// Stores a reply and queues its delivery; 409 `stale` with the newer items if the case
/// changed since the writer's view.
#[utoipa::path(post, path = "/api/v1/cases/{id}/replies", tag = "cases", params(("id" = i64, Path)),
    request_body = ReplyRequest,
    responses((status = 202, body = ReplyAccepted),
              (status = 409, description = "error.code = stale; error.details holds newer messages and events"),
              (status = 404, description = "No such case"), (status = 422, description = "Invalid field")),
    security(("bearer" = [])))]
pub async fn reply(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReplyRequest>,
) -> Result<Response, AppError> {
    let id = path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    required_text("text", &req.text, 100_000)?;
    if req.based_on_event_id < 0 {
        return Err(AppError::invalid("based_on_event_id", "must be ≥ 0"));
    }
    let channel = parse_enum("channel", req.channel.as_ref(), Channel::parse, Channel::allowed())?;
    if let Some(s) = &req.subject {
        if s.chars().count() > 998 || s.chars().any(char::is_control) {
            return Err(AppError::invalid("subject", "at most 998 characters, no line breaks or control characters"));
        }
    }
    if req.cc.len() > 20 {
        return Err(AppError::invalid("cc", "at most 20 addresses"));
    }
    let cc = req
        .cc
        .iter()
        .map(|a| {
            kontor_core::normalise_identity(kontor_core::IdentityKind::Email, a, &state.config.default_region)
                .map_err(|e| AppError::invalid("cc", format!("{a:?} is not an e-mail address: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let incoming = attachments::validate(req.attachments, state.config.max_attachment_bytes)?;
    let only_assignee = caller.user_id.is_some() && state.store.reply_only_assignee().await?;
    let stored = attachments::store(&state, incoming).await?;
    let r = NewReply {
        text: req.text,
        based_on_event_id: req.based_on_event_id,
        force: req.force,
        channel,
        author_id: caller.user_id,
        // Staff sessions follow the setting; API integrations are not staff.
        only_assignee,
        attachments: stored.clone(),
        subject: req.subject.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        cc,
        public_channels: state.config.assist.public_channels.clone(),
    };
    let outcome = state.store.reply(id, r, state.deliverable_channels()).await;
    let outcome = attachments::discard_on_error(&state, &stored, outcome).await?;
    if let (ReplyOutcome::Stale { .. }, Some(vault)) = (&outcome, &state.vault) {
        crate::blobs::discard(vault, &stored).await;
    }
    match outcome {
        ReplyOutcome::Queued { message_id, event_id, channel, .. } => {
            state.jobs_ready.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(ReplyAccepted { message_id, case_id: id, event_id, channel, delivery_state: "queued" }),
            )
                .into_response())
        }
        ReplyOutcome::Held { message_id, event_id, channel, .. } => Ok((
            StatusCode::ACCEPTED,
            Json(ReplyAccepted { message_id, case_id: id, event_id, channel, delivery_state: "pending_approval" }),
        )
            .into_response()),
        ReplyOutcome::Stale { events, messages } => {
            let latest = events.last().map(|e| e.id).unwrap_or(req.based_on_event_id);
            Err(AppError::Stale(
                json!({ "latest_event_id": latest, "newer_messages": messages, "newer_events": events }),
            ))
        }
    }
}
