//! Contacts that happened outside Kontor (`POST /api/v1/customers/{id}/contacts`): a phone
//! call or a letter that came by post, recorded by an agent so that colleagues see it in the
//! customer's one view.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kontor_core::{CaseId, Channel, CustomerId, Direction};
use kontor_store::contacts::{ContactReceipt, NewContact};
use serde::Deserialize;
use utoipa::ToSchema;

use super::attachments::{self, AttachmentIn};
use super::{check_len, path_id};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Longest phone call that can be recorded: a day.
const MAX_DURATION_SECONDS: i64 = 86_400;

/// A phone call or a letter to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// `phone` or `letter`.
    #[schema(pattern = "^(phone|letter)$")]
    pub channel: String,
    /// `in` (the customer called or wrote) or `out` (we did).
    #[schema(pattern = "^(in|out)$")]
    pub direction: String,
    /// What was said or written: a summary. Required unless there are attachments.
    #[schema(max_length = 100000)]
    #[serde(default)]
    pub text: String,
    /// Length of a phone call (phone only).
    #[schema(minimum = 0, maximum = 86400)]
    pub duration_seconds: Option<i64>,
    /// The scan of a letter, and the like.
    #[serde(default)]
    pub attachments: Vec<AttachmentIn>,
    /// Thread into this case of the customer; default: the customer's open case, or a new one.
    #[schema(minimum = 1)]
    pub case_id: Option<i64>,
}

/// Records a phone call or letter as a message of the customer (channel `phone` or `letter`),
/// threaded like any other message, with the recording staff user as its author; colleagues
/// see it live (`message.recorded`). Agents may record contacts of customers and cases they see.
#[utoipa::path(post, path = "/api/v1/customers/{id}/contacts", tag = "customers", params(("id" = i64, Path)),
    request_body = ContactRequest,
    responses((status = 201, body = ContactReceipt), (status = 404, description = "No such customer or case"),
        (status = 422, description = "Invalid contact")),
    security(("bearer" = [])))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> Result<(StatusCode, Json<ContactReceipt>), AppError> {
    let customer_id = path_id(&id, "customer")?;
    let channel = match req.channel.as_str() {
        "phone" => Channel::Phone,
        "letter" => Channel::Letter,
        _ => return Err(AppError::invalid("channel", "must be phone or letter")),
    };
    let direction =
        Direction::parse(&req.direction).ok_or_else(|| AppError::invalid("direction", "must be in or out"))?;
    if req.text.trim().is_empty() && req.attachments.is_empty() {
        return Err(AppError::invalid("text", "a summary (or an attachment) is required"));
    }
    check_len("text", &req.text, 100_000)?;
    if req.text.contains('\0') {
        return Err(AppError::invalid("text", "must not contain NUL characters"));
    }
    match (channel, req.duration_seconds) {
        (Channel::Letter, Some(_)) => {
            return Err(AppError::invalid("duration_seconds", "only a phone call has a duration"))
        }
        (_, Some(d)) if !(0..=MAX_DURATION_SECONDS).contains(&d) => {
            return Err(AppError::invalid("duration_seconds", format!("must be 0..={MAX_DURATION_SECONDS}")))
        }
        _ => {}
    }
    if req.case_id.is_some_and(|c| c <= 0) {
        return Err(AppError::invalid("case_id", "must be a positive id"));
    }
    let incoming = attachments::validate(req.attachments, state.config.max_attachment_bytes)?;
    caller.ensure_customer_visible(&state, customer_id).await?;
    let attachments = attachments::store(&state, incoming).await?;
    let stored = attachments.clone();
    let recorded = state
        .store
        .record_contact(NewContact {
            customer_id: CustomerId(customer_id),
            channel,
            direction,
            text: req.text,
            duration_seconds: req.duration_seconds,
            attachments,
            case_id: req.case_id.map(CaseId),
            author_id: caller.user_id,
            restricted_to: caller.restricted_user(),
        })
        .await;
    let receipt = attachments::discard_on_error(&state, &stored, recorded).await?;
    Ok((StatusCode::CREATED, Json(receipt)))
}
