//! The generic API channel: messages come in over Kontor's REST API, replies go out as a
//! signed HTTP POST to a webhook the customer's system runs.

mod outbound;
mod signature;

pub use outbound::{ApiWebhook, DeliveryError, OutboundMessage, WebhookReceipt};
pub use signature::{sign, verify, SignatureError, SIGNATURE_HEADER};
