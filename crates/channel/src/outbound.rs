//! Sending messages to customers.

use kontor_core::{Channel, IdentityKind};

/// One address of the recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecipientAddress {
    pub kind: IdentityKind,
    pub address: String,
}

/// Who an outbound message goes to: the case's customer with every address Kontor knows.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Recipient {
    pub name: Option<String>,
    pub identities: Vec<RecipientAddress>,
}

impl Recipient {
    /// The first address of `kind`, if the customer has one.
    pub fn address(&self, kind: IdentityKind) -> Option<&str> {
        self.identities.iter().find(|i| i.kind == kind).map(|i| i.address.as_str())
    }
}

/// A file sent with an outbound message, its bytes already read (and decrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAttachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

/// A message ready to be sent on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    pub channel: Channel,
    pub to: Recipient,
    /// Further recipients (e-mail `Cc`).
    pub cc: Vec<String>,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<OutboundAttachment>,
    /// Provider ids of earlier messages of the case, oldest first (e-mail `References`); the
    /// last one is the message this one answers (`In-Reply-To`).
    pub thread: Vec<String>,
    /// Sent by Kontor itself (an automatic answer), not written by a person.
    pub automatic: bool,
    /// When the message was written.
    pub created_at: kontor_core::Timestamp,
}

/// The provider's answer to a successful send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// The provider's id for the message, used to match later delivery reports.
    pub provider_message_id: Option<String>,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (network trouble, timeouts, 4xx SMTP replies, 429, 5xx HTTP).
    #[error("{0}")]
    Retryable(String),
    /// Retrying will not help; the text is the provider's reason.
    #[error("{0}")]
    Permanent(String),
}

/// A channel's sender.
#[async_trait::async_trait]
pub trait Outbound: Send + Sync {
    /// The channel this sender serves.
    fn channel(&self) -> Channel;

    /// Sends one message. Must be safe to call again for the same message after a crash
    /// (pass `message_id` on as the provider's idempotency key where the provider has one).
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError>;

    /// Whether the provider can be reached now, checked without sending anything (e-mail:
    /// the relay greets and answers `EHLO`): `Some(Ok(()))`, `Some(Err(why))` with a reason
    /// fit for admins (no secrets), or `None` when this sender is not checked. It should end
    /// within a few seconds and may answer from a recent check; callers bound it all the same.
    async fn probe(&self) -> Option<Result<(), String>> {
        None
    }
}
