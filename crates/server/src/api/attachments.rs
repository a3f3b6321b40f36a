//! Attachments as API requests carry them — a link (`url`), the bytes inline
//! (`content_base64`), or a `file` part of a multipart upload — validated the same way for
//! inbound messages, replies, notes and recorded contacts; and their download
//! (`GET /api/v1/attachments/{id}`) under the visibility rules of their case.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use kontor_core::Attachment;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{check_len, path_id};
use crate::auth::Caller;
use crate::blobs::Upload;
use crate::error::AppError;
use crate::AppState;

/// Most attachments one API message may carry.
pub const MAX_ATTACHMENTS: usize = 100;

/// A file attached to the message: its bytes inline (`content_base64`, stored encrypted by
/// Kontor), or a link to where the sending system keeps it (`url`, never fetched).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    /// The file's name (with a visible character).
    #[schema(min_length = 1, max_length = 255, pattern = r"\S")]
    pub filename: String,
    /// Its media type as the sender gave it (Kontor sniffs the type of inline bytes itself).
    #[schema(max_length = 255)]
    pub content_type: String,
    /// Bytes: required for a link; for inline content the decoded length is used.
    #[schema(minimum = 0)]
    pub size: Option<i64>,
    /// Where the sending system keeps it (a link; Kontor never fetches it).
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// The file's bytes, base64 (standard alphabet), at most `max_attachment_bytes` decoded.
    pub content_base64: Option<String>,
}

/// An attachment of a request, checked; uploads still need their bytes stored.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A link, stored as given.
    Link(Attachment),
    /// Bytes to store in the blob store.
    Upload(Upload),
}

impl Incoming {
    /// The attachment as it will be recorded (uploads: sniffed type, size and SHA-256).
    pub fn describe(&self) -> Attachment {
        match self {
            Incoming::Link(a) => a.clone(),
            Incoming::Upload(u) => u.attachment.clone(),
        }
    }
}

/// Checks a request's attachments (errors name `attachments[i].field`).
pub fn validate(list: Vec<AttachmentIn>, max_bytes: usize) -> Result<Vec<Incoming>, AppError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(AppError::invalid("attachments", format!("at most {MAX_ATTACHMENTS} attachments per message")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.into_iter().enumerate() {
        let field = |name: &str| format!("attachments[{i}].{name}");
        if a.filename.trim().is_empty() {
            return Err(AppError::invalid(&field("filename"), "must not be empty"));
        }
        check_len(&field("filename"), &a.filename, 255)?;
        check_len(&field("content_type"), &a.content_type, 255)?;
        if a.size.is_some_and(|s| s < 0) {
            return Err(AppError::invalid(&field("size"), "must be ≥ 0"));
        }
        match (a.content_base64, a.url) {
            (Some(_), Some(_)) => {
                return Err(AppError::invalid(&field("content_base64"), "give either content_base64 or url, not both"))
            }
            (Some(b64), None) => {
                // Decoded base64 is 3/4 of its length: refuse what cannot fit before decoding.
                if b64.len() / 4 * 3 > max_bytes.saturating_add(3) {
                    return Err(AppError::invalid(&field("content_base64"), format!("at most {max_bytes} bytes")));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| AppError::invalid(&field("content_base64"), format!("not valid base64: {e}")))?;
                if bytes.len() > max_bytes {
                    return Err(AppError::invalid(&field("content_base64"), format!("at most {max_bytes} bytes")));
                }
                if a.size.is_some_and(|s| s != bytes.len() as i64) {
                    return Err(AppError::invalid(&field("size"), "does not match the decoded content"));
                }
                out.push(Incoming::Upload(Upload::describe(a.filename, a.content_type, Bytes::from(bytes))));
            }
            (None, url) => {
                if let Some(url) = &url {
                    check_len(&field("url"), url, 2048)?;
                }
                let size = a.size.ok_or_else(|| AppError::invalid(&field("size"), "required for a link"))?;
                out.push(Incoming::Link(Attachment::link(a.filename, a.content_type, size, url)));
            }
        }
    }
    Ok(out)
}

/// Stores the bytes of the uploads among `list` (durably, before the message is committed);
/// returns the attachments to record.
pub async fn store(state: &AppState, list: Vec<Incoming>) -> Result<Vec<Attachment>, AppError> {
    if !list.iter().any(|i| matches!(i, Incoming::Upload(_))) {
        return Ok(list.iter().map(Incoming::describe).collect());
    }
    let vault = state.vault.as_ref().ok_or(AppError::Unavailable)?;
    let mut out = vec![None; list.len()];
    let mut uploads = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        match item {
            Incoming::Link(a) => out[i] = Some(a),
            Incoming::Upload(u) => {
                slots.push(i);
                uploads.push((u.attachment, u.bytes));
            }
        }
    }
    let stored = crate::blobs::store_uploads(vault, uploads).await.map_err(|e| {
        tracing::error!(error = %e, "Cannot store an attachment in the blob store.");
        AppError::Unavailable
    })?;
    for (i, a) in slots.into_iter().zip(stored) {
        out[i] = Some(a);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Passes `result` through; if it is an error, first deletes the bytes of `stored` (their
/// message was not stored: refused, stale, or the database failed), best effort.
pub async fn discard_on_error<T, E>(state: &AppState, stored: &[Attachment], result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        if let Some(vault) = &state.vault {
            crate::blobs::discard(vault, stored).await;
        }
    }
    result
}

/// A file name safe for `Content-Disposition`: no path, no control or quote characters.
fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() || matches!(c, '"' | ';' | '\\') { '_' } else { c })
        .collect::<String>()
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if cleaned.is_empty() {
        "attachment".into()
    } else {
        cleaned
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`.
fn content_disposition(name: &str) -> String {
    let safe = safe_filename(name);
    let ascii: String = safe.chars().map(|c| if c.is_ascii() && c != '%' { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(&safe, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The bytes of an attachment, as a download. Answers 404 for an attachment of a case the
/// caller may not see, exactly as for one that does not exist, and for a link (Kontor holds no
/// bytes of it; its `url` is in the message).
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "cases", params(("id" = i64, Path)),
    responses((status = 200, description = "The file, with `Content-Disposition: attachment`", content_type = "application/octet-stream"),
        (status = 404, description = "No such attachment, not visible, or a link")),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = path_id(&id, "attachment")?;
    let not_found = || AppError::NotFound(format!("attachment {id} not found"));
    let a = state.app.attachment(&caller.actor(), id).await?;
    let Some(blob) = a.blob_id.as_deref() else { return Err(not_found()) };
    let vault = state.vault.as_ref().ok_or(AppError::Unavailable)?;
    let bytes = vault.get(blob).await.map_err(|e| {
        tracing::error!(attachment_id = id, error = %e, "Cannot read an attachment from the blob store.");
        match e {
            kontor_vault::VaultError::NotFound(_) => AppError::Internal(format!("attachment {id}: blob missing")),
            kontor_vault::VaultError::Damaged { .. } => AppError::Internal(format!("attachment {id}: blob damaged")),
            _ => AppError::Unavailable,
        }
    })?;
    Ok(download_response(a.content_type.clone(), &a.filename, bytes))
}

/// A file as a download: never shown inline, never sniffed, never cached.
fn download_response(content_type: String, filename: &str, bytes: bytes::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, content_disposition(filename)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// The raw source of a received mail, as it came (decrypted from the blob store).
#[utoipa::path(get, path = "/api/v1/messages/{id}/raw", tag = "cases", params(("id" = i64, Path)),
    responses((status = 200, description = "The mail's source (`message/rfc822`), with `Content-Disposition: attachment`", content_type = "message/rfc822"),
        (status = 404, description = "No such message, not visible, or no raw source kept")),
    security(("bearer" = [])))]
pub async fn raw_source(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = path_id(&id, "message")?;
    let m = state.app.message(&caller.actor(), id).await?;
    let Some(blob) = m.raw_blob_id.as_deref() else {
        return Err(AppError::NotFound(format!("message {id} has no raw source")));
    };
    let vault = state.vault.as_ref().ok_or(AppError::Unavailable)?;
    // Small sources are kept sealed in the database with their message.
    let read = match state.store.inline_source(m.id).await? {
        Some(sealed) => vault.open_sealed(blob, &sealed),
        None => vault.get(blob).await,
    };
    let bytes = read.map_err(|e| {
        tracing::error!(message_id = id, error = %e, "Cannot read a raw source from the blob store.");
        match e {
            kontor_vault::VaultError::NotFound(_) | kontor_vault::VaultError::Damaged { .. } => {
                AppError::Internal(format!("message {id}: raw source unreadable"))
            }
            _ => AppError::Unavailable,
        }
    })?;
    Ok(download_response("message/rfc822".into(), &format!("message-{id}.eml"), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_safe() {
        for (name, want) in [
            ("Vertrag.pdf", "attachment; filename=\"Vertrag.pdf\"; filename*=UTF-8''Vertrag%2Epdf"),
            ("../../etc/passwd", "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"),
            ("a\"b;c\r\n.txt", "attachment; filename=\"a_b_c__.txt\"; filename*=UTF-8''a%5Fb%5Fc%5F%5F%2Etxt"),
            (
                "Übersicht März.pdf",
                "attachment; filename=\"_bersicht M_rz.pdf\"; filename*=UTF-8''%C3%9Cbersicht%20M%C3%A4rz%2Epdf",
            ),
            ("...", "attachment; filename=\"attachment\"; filename*=UTF-8''attachment"),
        ] {
            assert_eq!(content_disposition(name), want, "{name}");
        }
    }
}
