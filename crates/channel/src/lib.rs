//! The channel contract: what the core, the store and every channel adapter agree on.
//!
//! - [`InboundMessage`]: a validated message from any channel, ready to be stored;
//!   [`InboundSink`] is where adapters hand it over (the server implements it over the store
//!   and answers only after the commit).
//! - [`Outbound`]: sends a rendered [`OutboundMessage`] and answers with the provider's id or a
//!   retryable / permanent [`SendError`].
//! - [`DeliveryReport`]: a provider's status callback (sent, delivered, read, failed), matched
//!   by provider message id; [`supersedes`] is the rule that a late `sent` never overwrites `read`.
//! - [`WebhookHandler`]: a channel's HTTP callback, mounted by the server at
//!   `/webhooks/<channel>/<path>`; it verifies and parses, the server commits.
//! - [`Listener`] and [`Supervisor`]: long-running listeners and pollers (SMTP, IMAP) run under
//!   one supervisor with restarts, health and graceful shutdown.
//! - [`ChannelRegistry`]: from which the server mounts webhooks and the worker picks senders.
//!
//! This crate does no I/O of its own and must not depend on the store, the server or any
//! provider's crate: it is the small, stable face between them.

mod delivery;
mod inbound;
mod outbound;
mod registry;
mod runtime;
mod webhook;

pub use delivery::{supersedes, DeliveryReport};
pub use inbound::{InboundFile, InboundMessage, InboundReceipt, InboundSink, RawSource, SinkError};
pub use outbound::{
    Outbound, OutboundAttachment, OutboundMessage, Recipient, RecipientAddress, SendError, SendReceipt,
};
pub use registry::ChannelRegistry;
pub use runtime::{Listener, ListenerContext, ListenerHealth, ListenerState, Supervisor};
pub use webhook::{WebhookError, WebhookHandler, WebhookOutcome, WebhookReply, WebhookRequest};
