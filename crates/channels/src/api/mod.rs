//! The generic API channel: messages come in over Kontor's REST API (`POST /api/v1/inbound`,
//! handled by the server), replies go out as a signed HTTP POST to a webhook the customer's
//! system runs.

mod config;
mod outbound;
mod signature;

use std::sync::Arc;

use kontor_channel::ChannelRegistry;

pub use config::ApiChannelConfig;
pub use outbound::{ApiOutbound, ApiWebhook, DeliveryError, WebhookAttachment, WebhookPayload, WebhookReceipt};
pub use signature::{sign, verify, SignatureError, SIGNATURE_HEADER};

/// Registers the API channel's sender.
pub fn register(config: &ApiChannelConfig, registry: &mut ChannelRegistry) -> Result<(), String> {
    let sender = ApiOutbound::new(config).map_err(|e| format!("api_channel: {e}"))?;
    registry.add_outbound(Arc::new(sender));
    Ok(())
}
