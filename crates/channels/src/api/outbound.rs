//! Sending a reply to the customer system's webhook.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use kontor_channel::{Outbound, OutboundMessage, SendError, SendReceipt};
use kontor_core::Channel;
use serde::Serialize;

use super::config::ApiChannelConfig;
use super::signature::{sign, SIGNATURE_HEADER};

/// What the webhook receives for one outbound message (the API channel's wire format).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookPayload {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    /// The customer's addresses, so the receiving system can route the message.
    pub to: serde_json::Value,
    pub subject: Option<String>,
    pub text: String,
    /// RFC 3339 in UTC with milliseconds.
    pub created_at: kontor_core::Timestamp,
    /// The files sent with the message (absent when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<WebhookAttachment>,
}

/// A file of an outbound message, its bytes inline.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookAttachment {
    pub filename: String,
    pub content_type: String,
    pub size: usize,
    /// The bytes, base64 (standard alphabet).
    pub content_base64: String,
}

/// Most bytes read from a webhook's answer; the rest is not read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest provider message id kept (in characters).
pub const MAX_PROVIDER_ID_CHARS: usize = 256;

/// The receiving system's answer to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// The receiver's id for the message, if it answered with JSON `{"id": "..."}`.
    ///
    /// A 2xx answer means the message was delivered, whatever its body: the id is kept only
    /// if the body is at most [`MAX_ANSWER_BYTES`] of JSON and the id is 1 to
    /// [`MAX_PROVIDER_ID_CHARS`] characters without control characters; otherwise the
    /// delivery counts as sent without a provider id (and a warning is logged), since
    /// failing it would send the customer the same message again.
    pub provider_message_id: Option<String>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: network trouble, timeouts, 408, 429, 5xx.
    #[error("{0}")]
    Temporary(String),
    /// Retrying will not help: other 4xx answers, no webhook configured.
    #[error("{0}")]
    Permanent(String),
}

/// A webhook endpoint with its signing secret.
#[derive(Clone)]
pub struct ApiWebhook {
    url: String,
    secret: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for ApiWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiWebhook").field("url", &self.url).field("secret", &"<hidden>").finish()
    }
}

impl ApiWebhook {
    /// A webhook for `url`, signed with `secret`, with a per-request `timeout`.
    pub fn new(url: String, secret: String, timeout: Duration) -> Result<Self, DeliveryError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("Kontor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeliveryError::Permanent(format!("HTTP client: {e}")))?;
        Ok(ApiWebhook { url, secret, client })
    }

    /// POSTs the message; `Idempotency-Key` lets the receiver drop a repeated delivery.
    pub async fn send(&self, msg: &WebhookPayload, now_secs: i64) -> Result<WebhookReceipt, DeliveryError> {
        let body = serde_json::to_vec(msg).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, sign(self.secret.as_bytes(), now_secs, &body))
            .header("Idempotency-Key", format!("kontor-message-{}", msg.message_id))
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Temporary(format!("webhook unreachable: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            let provider_message_id = match read_capped(resp, MAX_ANSWER_BYTES).await {
                Some(body) => provider_id(&body),
                None => {
                    tracing::warn!(
                        max_bytes = MAX_ANSWER_BYTES,
                        "Webhook answer too large or unreadable; no provider id kept."
                    );
                    None
                }
            };
            return Ok(WebhookReceipt { provider_message_id });
        }
        let text = format!("webhook answered {status}");
        if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
            Err(DeliveryError::Temporary(text))
        } else {
            Err(DeliveryError::Permanent(text))
        }
    }
}

/// The API channel's sender: posts each outbound message to the configured webhook.
#[derive(Debug, Clone)]
pub struct ApiOutbound {
    hook: Option<ApiWebhook>,
}

impl ApiOutbound {
    /// The sender for `config`; without a `webhook_url` every send fails for good (the reply
    /// is marked failed with that reason).
    pub fn new(config: &ApiChannelConfig) -> Result<Self, DeliveryError> {
        let hook = match &config.webhook_url {
            Some(url) => Some(ApiWebhook::new(
                url.clone(),
                config.webhook_secret.clone().unwrap_or_default(),
                Duration::from_secs(config.timeout_secs.max(1)),
            )?),
            None => None,
        };
        Ok(ApiOutbound { hook })
    }
}

#[async_trait::async_trait]
impl Outbound for ApiOutbound {
    fn channel(&self) -> Channel {
        Channel::Api
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let Some(hook) = &self.hook else {
            return Err(SendError::Permanent("the API channel has no webhook_url configured".into()));
        };
        let payload = WebhookPayload {
            kind: "message.outbound",
            message_id: message.message_id,
            case_id: message.case_id,
            customer_id: message.customer_id,
            to: serde_json::to_value(&message.to).unwrap_or(serde_json::Value::Null),
            subject: message.subject.clone(),
            text: message.text.clone(),
            created_at: message.created_at,
            attachments: message
                .attachments
                .iter()
                .map(|a| WebhookAttachment {
                    filename: a.filename.clone(),
                    content_type: a.content_type.clone(),
                    size: a.bytes.len(),
                    content_base64: base64::engine::general_purpose::STANDARD.encode(&a.bytes),
                })
                .collect(),
        };
        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        match hook.send(&payload, now_secs).await {
            Ok(receipt) => Ok(SendReceipt { provider_message_id: receipt.provider_message_id }),
            Err(DeliveryError::Temporary(e)) => Err(SendError::Retryable(e)),
            Err(DeliveryError::Permanent(e)) => Err(SendError::Permanent(e)),
        }
    }
}

/// Reads at most `max` bytes of a body, chunk by chunk; `None` if it is longer (the rest is
/// never read) or cannot be read.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Option<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if body.len() + chunk.len() > max {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// The `id` of a JSON answer (a string, or a number as its text), if it is a usable id (see
/// [`WebhookReceipt::provider_message_id`]).
fn provider_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = match v.get("id")? {
        serde_json::Value::String(s) => s.clone(),
        n @ serde_json::Value::Number(_) => n.to_string(),
        _ => return None,
    };
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_PROVIDER_ID_CHARS || id.chars().any(char::is_control) {
        tracing::warn!(chars, "Webhook answered with an unusable message id; none kept.");
        return None;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        let long = format!("{{\"id\": \"{}\"}}", "x".repeat(MAX_PROVIDER_ID_CHARS + 1));
        let longest = format!("{{\"id\": \"{}\"}}", "ü".repeat(MAX_PROVIDER_ID_CHARS));
        for (body, id) in [
            (r#"{"id": "ext-1"}"#, Some("ext-1")),
            (r#"{"id": 4711}"#, Some("4711")),
            (r#"{"id": ""}"#, None),
            (r#"{"id": "a\nb"}"#, None),
            (r#"{"id": "a\u0007"}"#, None),
            (r#"{"id": {"x": 1}}"#, None),
            (r#"{"id": null}"#, None),
            (r#"{"other": 1}"#, None),
            ("not json", None),
            (long.as_str(), None),
        ] {
            assert_eq!(provider_id(body.as_bytes()).as_deref(), id, "{body}");
        }
        assert_eq!(provider_id(longest.as_bytes()).map(|s| s.chars().count()), Some(MAX_PROVIDER_ID_CHARS));
    }
}
