//! A made-up SMS provider's webhook, for tests of the channel contract through the real
//! server (a real provider's wire format is tested in its own channel's folder).
//!
//! - `GET verify?challenge=X` answers `X` (a subscription check);
//! - `POST inbound` `{"from", "text", "id"}` is a message from a phone number;
//! - `POST status` `{"id", "status", "error"?, "channel"?}` is a delivery report; the
//!   optional `channel` stands for an adapter that takes the channel from its payload (or a
//!   bug that names the wrong one).
//!
//! Every POST must carry `x-fake-token: <TOKEN>`; anything else is a forged request.

use kontor_channel::{
    DeliveryReport, InboundMessage, WebhookError, WebhookHandler, WebhookOutcome, WebhookReply, WebhookRequest,
};
use kontor_core::{Channel, DeliveryState, IdentityKind};
use serde_json::Value;

/// The shared secret the fake provider signs with (header `x-fake-token`).
pub const TOKEN: &str = "fake-secret";
/// The account the fake provider's messages belong to (their idempotency scope).
pub const ACCOUNT: &str = "fake-account";

/// The fake provider's webhook, registered for [`Channel::Sms`].
pub struct FakeSmsWebhook;

#[async_trait::async_trait]
impl WebhookHandler for FakeSmsWebhook {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn handle(&self, req: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        if req.method == "GET" && req.path == "verify" {
            let challenge = req.query.strip_prefix("challenge=").unwrap_or_default();
            return Ok(WebhookOutcome::reply_only(WebhookReply::text(challenge)));
        }
        if req.header("x-fake-token") != Some(TOKEN) {
            return Err(WebhookError::Signature("wrong token".into()));
        }
        let v: Value = serde_json::from_slice(&req.body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let field =
            |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| WebhookError::Malformed(format!("no {k}")));
        match req.path.as_str() {
            "inbound" => {
                let mut m = InboundMessage::text(Channel::Sms, IdentityKind::Phone, field("from")?, field("text")?);
                m.provider_message_id = Some(field("id")?);
                m.idempotency_scope = ACCOUNT.into();
                Ok(WebhookOutcome { inbound: vec![m], reports: vec![], reply: WebhookReply::ok() })
            }
            "status" => {
                let channel = match v["channel"].as_str() {
                    None => Channel::Sms,
                    Some(c) => {
                        Channel::parse(c).ok_or_else(|| WebhookError::Malformed(format!("unknown channel {c}")))?
                    }
                };
                let state = DeliveryState::parse(&field("status")?).ok_or(WebhookError::Malformed("status".into()))?;
                let report = DeliveryReport {
                    channel,
                    provider_message_id: field("id")?,
                    state,
                    error: v["error"].as_str().map(str::to_string),
                };
                Ok(WebhookOutcome { inbound: vec![], reports: vec![report], reply: WebhookReply::ok() })
            }
            _ => Err(WebhookError::NotFound),
        }
    }
}
