//! Messages coming in from any channel.

use kontor_core::{Attachment, Channel, IdentityKind};

/// A validated inbound message from any channel, ready for the store.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub channel: Channel,
    pub from_kind: IdentityKind,
    /// Already normalised (see `kontor_core::normalise_identity`).
    pub from_address: String,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The sending system's id for the message; the same id again is a duplicate.
    pub provider_message_id: Option<String>,
    /// Client-chosen key that makes a retry a no-op when there is no provider id.
    pub idempotency_key: Option<String>,
    /// Whose keys these are: provider ids and idempotency keys are unique per sending client
    /// (`token:<id>` for the API channel, the channel account for provider channels), so one
    /// client's key never swallows another client's message. Empty: one key space for the
    /// whole channel (e-mail: one message per Message-ID across all mailboxes).
    pub idempotency_scope: String,
    /// Thread into this case instead of choosing one.
    pub case_id: Option<i64>,
    /// Provider ids of earlier messages this one answers, the most direct first (e-mail:
    /// `In-Reply-To`, then `References` newest first). The message joins the case of the first
    /// one Kontor knows — sent or received on the same channel, of the same customer — and
    /// re-opens it if it was resolved.
    pub refers_to: Vec<String>,
    /// The case the channel believes the message belongs to (an e-mail case token in the
    /// recipient address): taken after `refers_to`, and only if it is the same customer's.
    pub case_hint: Option<i64>,
    /// Files whose bytes a listener received with the message. The sink stores them in the
    /// blob store (durably, before the message) and turns them into `attachments`.
    pub files: Vec<InboundFile>,
    /// Sent by a machine (auto-reply, out-of-office, list mail): marked, never answered
    /// automatically.
    pub auto_submitted: bool,
    /// The message as it came over the wire (a received mail's source), kept encrypted.
    pub raw_source: Option<RawSource>,
    /// The recipients the message named (e-mail `To`), shown to agents.
    pub to: Vec<String>,
    /// Further recipients it named (e-mail `Cc`), shown to agents.
    pub cc: Vec<String>,
}

/// The raw source of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSource {
    /// As a listener received it; the sink stores it in the blob store.
    Bytes(bytes::Bytes),
    /// Stored: the blob store's id (set by the sink, never by an adapter).
    Stored(String),
    /// Sealed by the sink with the blob store's key, kept in the database with the message
    /// (in its transaction) under the blob id `id`: small sources (set by the sink, never by an
    /// adapter).
    Sealed { id: String, bytes: bytes::Bytes },
}

/// A file received with an inbound message, its bytes not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundFile {
    pub filename: String,
    /// The type the sender declared (the sink sniffs the bytes as well).
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

impl InboundMessage {
    /// A plain text message from `from_address` (already normalised) with no options set.
    pub fn text(
        channel: Channel,
        from_kind: IdentityKind,
        from_address: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        InboundMessage {
            channel,
            from_kind,
            from_address: from_address.into(),
            name: None,
            subject: None,
            text: text.into(),
            html: None,
            attachments: Vec::new(),
            provider_message_id: None,
            idempotency_key: None,
            idempotency_scope: String::new(),
            case_id: None,
            refers_to: Vec::new(),
            case_hint: None,
            files: Vec::new(),
            auto_submitted: false,
            raw_source: None,
            to: Vec::new(),
            cc: Vec::new(),
        }
    }
}

/// Ids of what an inbound message became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct InboundReceipt {
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    /// The `message.received` event.
    pub event_id: i64,
    /// False when this was a duplicate of an earlier message.
    pub created: bool,
}

/// Why an inbound message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Nothing was stored, and the sender should try again later (database away, write queue
    /// full): an SMTP listener answers 451, a webhook 503.
    #[error("temporarily unavailable: {0}")]
    Temporary(String),
    /// Nothing was stored, and the same message will never be taken (an idempotency key
    /// reused for other content, an unknown case): an SMTP listener answers 550, a webhook 4xx.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Where channel adapters hand over inbound messages. `accept` resolves only once the message
/// is committed (or was a duplicate of a committed one): only then may an adapter acknowledge
/// it to the provider.
#[async_trait::async_trait]
pub trait InboundSink: Send + Sync {
    /// Stores one message durably; resolves after the commit.
    async fn accept(&self, message: InboundMessage) -> Result<InboundReceipt, SinkError>;

    /// Applies a delivery report that came in over a listener (an e-mail bounce); resolves
    /// after the commit. `Ok(false)`: it matched no message or was older news.
    async fn report(&self, report: crate::DeliveryReport) -> Result<bool, SinkError>;

    /// How far a poller has read its source (an IMAP folder's UIDVALIDITY and last UID),
    /// as it saved it with [`InboundSink::save_cursor`]; `None` before the first save.
    async fn cursor(&self, name: &str) -> Result<Option<String>, SinkError>;

    /// Saves how far a poller has read its source, once everything up to there is committed:
    /// after a restart it goes on from there.
    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError>;
}
