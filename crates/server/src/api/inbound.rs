//! `POST /api/v1/inbound`: a message from any system.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kontor_core::{normalise_identity, Channel, IdentityKind};
use kontor_store::ingest::{InboundReceipt, NewInbound};
use serde::Deserialize;
use utoipa::ToSchema;

use super::check_len;
use crate::auth::Caller;
use crate::blobs::Upload;
use crate::error::{parse_json, AppError};
use crate::AppState;

/// Who sent the message: exactly one of the three.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct From {
    /// E-mail address (matched case-insensitively).
    pub email: Option<String>,
    /// Phone number; without country code it is read in the configured default region.
    pub phone: Option<String>,
    /// The customer's id in the sending system.
    pub external_id: Option<String>,
}

pub use super::attachments::{AttachmentIn, Incoming, MAX_ATTACHMENTS};

/// A pattern (ECMA-262 and Python `re` alike) for text with at least one visible character and
/// no control or invisible ones (`kontor_core::is_invisible`, within the Basic Multilingual
/// Plane).
const VISIBLE_TEXT: &str = concat!(
    r"^[^\u0000-\u001f\u007f-\u009f\u00a0\u00ad\u034f\u1680\u2000-\u200a\u202f\u205f\u3000\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]*",
    r"[^\s\u0000-\u001f\u007f-\u009f\u00a0\u00ad\u034f\u1680\u2000-\u200a\u202f\u205f\u3000\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]",
    r"[^\u0000-\u001f\u007f-\u009f\u00a0\u00ad\u034f\u1680\u2000-\u200a\u202f\u205f\u3000\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]*$"
);

/// The document's shape of `from`: an object with exactly one of `email`, `phone`,
/// `external_id` (serde reads it into [`From`], whose three optional fields cannot say that).
fn from_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let one = |name: &str, value: ObjectBuilder, description: &str| {
        ObjectBuilder::new()
            .property(name, value)
            .required(name)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(description))
    };
    let text = || ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(256));
    OneOfBuilder::new()
        .item(one(
            "email",
            text().format(Some(SchemaFormat::Custom("email".into()))),
            "E-mail address (Unicode NFC, case-folded; no control or invisible characters)",
        ))
        .item(one(
            "phone",
            text().pattern(Some(r"^\+?[0-9][0-9 ()/.-]{2,38}[0-9]$")),
            "Phone number, E.164 or national (read in the configured default region); must be a valid number",
        ))
        .item(one("external_id", text().pattern(Some(VISIBLE_TEXT)), "The customer's id in the sending system"))
        .description(Some("Who sent the message: exactly one of email, phone or external_id."))
        .build()
        .into()
}

/// An inbound message. Unknown fields are refused (422 naming the field), so a misspelt
/// `provider_message_id` cannot silently lose idempotency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRequest {
    #[schema(required = true, schema_with = from_schema)]
    pub from: Option<From>,
    /// The sender's name, kept on a new customer.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Kept as given (an empty subject stays an empty subject, a missing one stays missing).
    #[schema(max_length = 998)]
    pub subject: Option<String>,
    /// Required (with a visible character) unless there are attachments.
    #[schema(max_length = 200000)]
    pub text: Option<String>,
    /// The HTML form of the message (shown sanitised).
    #[schema(max_length = 1000000)]
    pub html: Option<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub attachments: Vec<AttachmentIn>,
    /// The sending system's id for this message: the same id again (from the same API
    /// token) is a duplicate; with another sender or text it is refused (409
    /// `idempotency_conflict`).
    #[schema(max_length = 256)]
    pub provider_message_id: Option<String>,
    /// Thread into this case instead of letting Kontor choose.
    #[schema(minimum = 1)]
    pub case_id: Option<i64>,
    /// Sent by a machine (an auto-reply, a notification): never answered automatically.
    #[serde(default)]
    pub auto_submitted: bool,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// What the derived schema of [`InboundRequest`] cannot say: a message has visible text or at
/// least one attachment. Applied to the OpenAPI document by `openapi::ApiDoc`.
pub fn text_or_attachments() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Type};
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("text", ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"\S")))
                .required("text"),
        )
        .item(
            ObjectBuilder::new()
                .property("attachments", ArrayBuilder::new().min_items(Some(1)))
                .required("attachments"),
        )
        .build()
        .into()
}

/// Validates the request into a store input; `scope` names the sending client, whose keys
/// these are (see `NewInbound::idempotency_scope`).
pub fn validate(
    req: InboundRequest,
    idempotency_key: Option<String>,
    scope: String,
    region: &str,
    max_attachment_bytes: usize,
) -> Result<(NewInbound, Vec<Incoming>), AppError> {
    let from = req
        .from
        .ok_or_else(|| AppError::invalid("from", "is required: {\"email\"}, {\"phone\"} or {\"external_id\"}"))?;
    let given: Vec<(IdentityKind, String, &str)> = [
        (IdentityKind::Email, from.email, "from.email"),
        (IdentityKind::Phone, from.phone, "from.phone"),
        (IdentityKind::ExternalId, from.external_id, "from.external_id"),
    ]
    .into_iter()
    .filter_map(|(k, v, f)| v.map(|v| (k, v, f)))
    .collect();
    let (kind, raw, field) = match given.len() {
        1 => given.into_iter().next().ok_or_else(|| AppError::invalid("from", "is required"))?,
        0 => return Err(AppError::invalid("from", "needs one of email, phone or external_id")),
        _ => return Err(AppError::invalid("from", "give only one of email, phone or external_id")),
    };
    let address = normalise_identity(kind, &raw, region).map_err(|e| AppError::invalid(field, e.to_string()))?;
    let text = req.text.unwrap_or_default();
    check_len("text", &text, 200_000)?;
    if let Some(h) = &req.html {
        check_len("html", h, 1_000_000)?;
    }
    let name = non_empty(req.name);
    if let Some(n) = &name {
        check_len("name", n, 200)?;
    }
    let subject = req.subject.map(|s| s.trim().to_string());
    if let Some(s) = &subject {
        check_len("subject", s, 998)?;
    }
    let provider_message_id = non_empty(req.provider_message_id);
    if let Some(p) = &provider_message_id {
        check_len("provider_message_id", p, 256)?;
    }
    if req.case_id.is_some_and(|c| c <= 0) {
        return Err(AppError::invalid("case_id", "must be a positive id"));
    }
    let incoming = super::attachments::validate(req.attachments, max_attachment_bytes)?;
    let attachments = incoming.iter().map(Incoming::describe).collect();
    let msg = NewInbound {
        channel: Channel::Api,
        from_kind: kind,
        from_address: address,
        name,
        subject,
        text,
        html: req.html,
        attachments,
        provider_message_id,
        idempotency_key,
        idempotency_scope: scope,
        case_id: req.case_id,
        refers_to: Vec::new(),
        case_hint: None,
        files: Vec::new(),
        auto_submitted: req.auto_submitted,
        raw_source: None,
        to: Vec::new(),
        cc: Vec::new(),
    };
    Ok((msg, incoming))
}

/// Takes a message from any system, threads it into a case, answers after commit.
#[utoipa::path(post, path = "/api/v1/inbound", tag = "inbound",
    request_body = InboundRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes a retry without provider_message_id a no-op (per API token); visible ASCII",
        min_length = 1, max_length = 256, pattern = r"^[!-~]([ -~]*[!-~])?$")),
    responses(
        (status = 201, description = "Stored", body = InboundReceipt),
        (status = 200, description = "Duplicate: the first message's ids", body = InboundReceipt),
        (status = 400, description = "Malformed JSON"), (status = 401, description = "No valid token"),
        (status = 403, description = "Not an API token (staff sessions may not post customer messages)"),
        (status = 409, description = "idempotency_conflict: the key was used for another message"),
        (status = 413, description = "Body too large"), (status = 422, description = "Invalid field"),
        (status = 503, description = "Database unavailable")),
    security(("bearer" = [])))]
pub async fn inbound(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    // Inbound is what customers said, posted by systems: a signed-in agent must not be able
    // to put words into a customer's mouth (or probe hidden cases through receipts).
    let Some(token_id) = caller.token_id.filter(|_| caller.session.is_none()) else {
        return Err(AppError::Refused(
            "inbound messages are posted by systems with an API token (role ingest, agent or admin), not by a staff session"
                .into(),
        ));
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| AppError::invalid("Idempotency-Key", "must be visible ASCII"))?
                .trim()
                .to_string();
            if k.is_empty() || k.len() > 256 {
                return Err(AppError::invalid("Idempotency-Key", "must have 1 to 256 characters"));
            }
            Some(k)
        }
    };
    let max_file = state.config.max_attachment_bytes;
    // The upload slot is held until the files are stored.
    let (req, files, _upload_slot) = read_request(&state, &headers, body).await?;
    let (mut msg, mut incoming) =
        validate(req, key, format!("token:{token_id}"), &state.config.default_region, max_file)?;
    if incoming.len() + files.len() > MAX_ATTACHMENTS {
        return Err(AppError::invalid("attachments", format!("at most {MAX_ATTACHMENTS} attachments per message")));
    }
    for f in files {
        msg.attachments.push(f.attachment.clone());
        incoming.push(Incoming::Upload(f));
    }
    if msg.text.trim().is_empty() && msg.attachments.is_empty() {
        return Err(AppError::invalid("text", "is required (or at least one attachment)"));
    }
    // A retry of a message with files stores no second copy of them.
    let has_uploads = incoming.iter().any(|i| matches!(i, Incoming::Upload(_)));
    let receipt = match if has_uploads { state.store.find_repeat(&msg).await? } else { None } {
        Some(first) => first,
        None => {
            msg.attachments = super::attachments::store(&state, incoming).await?;
            let stored = msg.attachments.clone();
            let ingested = state.store.ingest(msg).await;
            let receipt = super::attachments::discard_on_error(&state, &stored, ingested).await?;
            if !receipt.created {
                // A concurrent retry stored the message first, with its own copy of the files.
                if let Some(vault) = &state.vault {
                    crate::blobs::discard(vault, &stored).await;
                }
            }
            receipt
        }
    };
    let result = if receipt.created { "created" } else { "duplicate" };
    state.metrics.ingested.with_label_values(&["api", result]).inc();
    let status = if receipt.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(receipt)).into_response())
}

/// Reads the request: JSON (at most `max_body_bytes`), or `multipart/form-data` with a
/// `message` part holding the JSON and one `file` part per attachment (each at most
/// `max_attachment_bytes`).
async fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(InboundRequest, Vec<Upload>, Option<tokio::sync::OwnedSemaphorePermit>), AppError> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        let bytes = axum::body::to_bytes(body, state.config.max_body_bytes).await.map_err(|_| AppError::TooLarge)?;
        return Ok((parse_json(&bytes)?, Vec::new(), None));
    }
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| AppError::BadRequest(format!("multipart body: {e}")))?;
    let max_file = state.config.max_attachment_bytes as u64;
    let constraints = multer::Constraints::new().allowed_fields(vec!["message", "file"]).size_limit(
        multer::SizeLimit::new()
            .for_field("message", state.config.max_body_bytes as u64)
            .for_field("file", max_file)
            .whole_stream(state.config.max_body_bytes as u64 + max_file.saturating_mul(MAX_ATTACHMENTS as u64)),
    );
    // Uploads are held in memory until stored: bound how many arrive at once.
    let slot = state
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Busy("too many uploads at once on this node; retry shortly".into()))?;
    let mut parts = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut message = None;
    let mut files = Vec::new();
    loop {
        let field = match parts.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        match field.name() {
            Some("message") => {
                if message.is_some() {
                    return Err(AppError::invalid("message", "only one message part"));
                }
                let bytes = field.bytes().await.map_err(multipart_error)?;
                message = Some(parse_json::<InboundRequest>(&bytes)?);
            }
            _ => {
                if files.len() >= MAX_ATTACHMENTS {
                    return Err(AppError::invalid(
                        "file",
                        format!("at most {MAX_ATTACHMENTS} attachments per message"),
                    ));
                }
                let filename = field.file_name().map(str::to_string).unwrap_or_default();
                let declared = field.content_type().map(|m| m.to_string()).unwrap_or_default();
                let i = files.len();
                if filename.trim().is_empty() {
                    return Err(AppError::invalid(&format!("file[{i}]"), "needs a file name"));
                }
                check_len(&format!("file[{i}].filename"), &filename, 255)?;
                let bytes = field.bytes().await.map_err(multipart_error)?;
                files.push(Upload::new(filename, declared, bytes).await);
            }
        }
    }
    let message =
        message.ok_or_else(|| AppError::invalid("message", "the multipart body needs a message part (JSON)"))?;
    Ok((message, files, Some(slot)))
}

fn multipart_error(e: multer::Error) -> AppError {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => AppError::invalid(
            field_name.as_deref().unwrap_or("file"),
            "larger than allowed (max_attachment_bytes for a file, max_body_bytes for the message)",
        ),
        multer::Error::StreamSizeExceeded { .. } => AppError::TooLarge,
        multer::Error::UnknownField { field_name } => {
            AppError::invalid(field_name.as_deref().unwrap_or("part"), "unknown part: use message and file")
        }
        other => AppError::BadRequest(format!("multipart body: {other}")),
    }
}
