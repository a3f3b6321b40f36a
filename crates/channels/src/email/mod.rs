//! The e-mail channel: an SMTP listener for the domains Kontor serves, IMAP mailboxes it
//! reads, and replies sent as threaded mails through a relay.
//!
//! - `config`: `[email]` and `[email.outbound]`;
//! - `smtp`: the listener (smtp-proto), `250` only after the commit;
//! - `parse` / `inbound`: a received mail (mail-parser) → an inbound message;
//! - `outbound`: replies (mail-builder + mail-send), `Message-ID`/`In-Reply-To`/`References`;
//! - `imap`: pollers for `[[email.imap]]` mailboxes (IDLE where offered);
//! - `dkim`: optional DKIM signing of outbound mail;
//! - `tls`: the listener's STARTTLS and the TLS of the connections out (relay, IMAP).

pub mod config;
pub mod dkim;
pub mod imap;
pub mod inbound;
pub mod keys;
pub mod outbound;
pub mod parse;
pub mod smtp;
mod tls;

use std::sync::Arc;

use kontor_channel::ChannelRegistry;

pub use config::{EmailConfig, EmailOutboundConfig};

/// Registers the e-mail channel's listener and sender, as far as they are configured. Without
/// `keys` (no vault open) replies go out without a bounce address or case token.
pub fn register(
    config: &EmailConfig,
    default_region: &str,
    keys: Option<&keys::MailKeys>,
    registry: &mut ChannelRegistry,
) -> Result<(), String> {
    config.validate()?;
    if let Some(listener) = smtp::SmtpListener::from_config(config, default_region, keys.cloned())? {
        registry.add_listener(Arc::new(listener));
    }
    for poller in imap::pollers(config, default_region, keys)? {
        registry.add_listener(Arc::new(poller));
    }
    if let Some(sender) = outbound::EmailOutbound::from_config(config, keys.cloned())? {
        registry.add_outbound(Arc::new(sender));
    }
    Ok(())
}
