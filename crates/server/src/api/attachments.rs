//! Attachments as API requests carry them: validated the same way for inbound messages,
//! replies, notes and recorded contacts.

use kontor_core::Attachment;
use serde::Deserialize;
use utoipa::ToSchema;

use super::check_len;
use crate::error::AppError;

/// Most attachments one API message may carry.
pub const MAX_ATTACHMENTS: usize = 100;

/// A file attached to the message (stored by reference).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    /// The file's name (with a visible character).
    #[schema(min_length = 1, max_length = 255, pattern = r"\S")]
    pub filename: String,
    /// Its media type as the sender gave it.
    #[schema(max_length = 255)]
    pub content_type: String,
    /// Bytes.
    #[schema(minimum = 0)]
    pub size: i64,
    /// Where the sending system keeps it.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
}

/// Checks a request's attachments (the field names in errors are `attachments[i].name`).
pub fn validate(list: Vec<AttachmentIn>) -> Result<Vec<Attachment>, AppError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(AppError::invalid("attachments", format!("at most {MAX_ATTACHMENTS} attachments per message")));
    }
    let mut attachments = Vec::with_capacity(list.len());
    for (i, a) in list.into_iter().enumerate() {
        let field = |name: &str| format!("attachments[{i}].{name}");
        if a.filename.trim().is_empty() {
            return Err(AppError::invalid(&field("filename"), "must not be empty"));
        }
        if a.size < 0 {
            return Err(AppError::invalid(&field("size"), "must be ≥ 0"));
        }
        check_len(&field("filename"), &a.filename, 255)?;
        check_len(&field("content_type"), &a.content_type, 255)?;
        if let Some(url) = &a.url {
            check_len(&field("url"), url, 2048)?;
        }
        attachments.push(Attachment { filename: a.filename, content_type: a.content_type, size: a.size, url: a.url });
    }
    Ok(attachments)
}
