//! Sending a reply to the customer system's webhook.

use std::time::Duration;

use serde::Serialize;

use super::signature::{sign, SIGNATURE_HEADER};

/// What the webhook receives for one outbound message.
#[derive(Debug, Clone, Serialize)]
pub struct OutboundMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    /// The customer's addresses, so the receiving system can route the message.
    pub to: serde_json::Value,
    pub subject: Option<String>,
    pub text: String,
    pub created_at: String,
}

/// The receiving system's answer to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// The receiver's id for the message, if it answered with JSON `{"id": "..."}`.
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
    pub async fn send(&self, msg: &OutboundMessage, now_secs: i64) -> Result<WebhookReceipt, DeliveryError> {
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
            let provider_message_id =
                resp.json::<serde_json::Value>().await.ok().and_then(|v| {
                    v.get("id").map(|id| id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string()))
                });
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
