//! Providers calling Kontor: inbound messages and status callbacks over HTTP.

use std::collections::BTreeMap;

use crate::{DeliveryReport, InboundMessage};

/// An HTTP request to a channel's webhook, as the server received it.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// `GET` or `POST` (upper case).
    pub method: String,
    /// The part of the path after `/webhooks/<channel>/`, without a leading slash.
    pub path: String,
    /// The raw query string (without `?`), as sent: signature schemes sign it as it came.
    pub query: String,
    /// The full URL the provider called, as far as the server can tell (some providers sign it).
    pub url: String,
    /// Header names in lower case; a repeated header keeps its values joined by `, `.
    pub headers: BTreeMap<String, String>,
    /// The raw body, exactly as received (signatures are over these bytes).
    pub body: bytes::Bytes,
}

impl WebhookRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// The answer a webhook gives the provider once its outcome is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebhookReply {
    /// `200` with an empty JSON object.
    pub fn ok() -> Self {
        WebhookReply { status: 200, content_type: "application/json", body: "{}".into() }
    }

    /// `200` with a plain text body (subscription challenges).
    pub fn text(body: impl Into<String>) -> Self {
        WebhookReply { status: 200, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// What a webhook request carried. The server commits the messages and reports, and sends
/// `reply` only after that commit; if committing fails, the provider gets 503 and retries.
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    pub inbound: Vec<InboundMessage>,
    pub reports: Vec<DeliveryReport>,
    pub reply: WebhookReply,
}

impl WebhookOutcome {
    /// Nothing to store; answer `reply` (a verification challenge, an event Kontor ignores).
    pub fn reply_only(reply: WebhookReply) -> Self {
        WebhookOutcome { inbound: Vec::new(), reports: Vec::new(), reply }
    }
}

/// Why a webhook request was refused; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature: 401.
    #[error("signature: {0}")]
    Signature(String),
    /// The body is not what the provider documents: 400.
    #[error("malformed: {0}")]
    Malformed(String),
    /// No such webhook path or method for this channel: 404.
    #[error("not found")]
    NotFound,
}

impl WebhookError {
    /// The HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::Signature(_) => 401,
            WebhookError::Malformed(_) => 400,
            WebhookError::NotFound => 404,
        }
    }
}

/// A channel's webhook: verifies the provider's signature and parses its payload, with no
/// access to the store (so it can be tested alone against recorded payloads).
#[async_trait::async_trait]
pub trait WebhookHandler: Send + Sync {
    /// The channel this webhook belongs to; it is mounted at `/webhooks/<channel>/...`.
    fn channel(&self) -> kontor_core::Channel;

    /// Verifies and parses one request.
    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError>;
}
