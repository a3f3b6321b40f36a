//! Kontor's channel adapters, one folder per channel (`<name>/{mod,config,inbound,outbound}.rs`,
//! fixtures in `tests/fixtures/<name>/`). Each adapter implements the channel contract
//! (`kontor-channel`): wire formats and signatures are parsed without I/O, transports send and
//! receive. The core never names a provider; the store is never touched from here (the
//! server commits what adapters hand over).

pub mod api;
pub mod email;

use kontor_channel::ChannelRegistry;

/// The configuration of every channel, one field per channel (each a section of Kontor's
/// configuration file).
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    /// `[api_channel]`
    pub api: api::ApiChannelConfig,
    /// `[email]`
    pub email: email::EmailConfig,
    /// Region for phone numbers and addresses written without a country code.
    pub default_region: String,
    /// The e-mail channel's address key (derived from the vault's master key; `None` before
    /// the vault is open).
    pub mail_keys: Option<email::keys::MailKeys>,
}

/// The channels this node runs, built from configuration: one registration line per channel.
pub fn registry(config: &ChannelsConfig) -> Result<ChannelRegistry, String> {
    let mut registry = ChannelRegistry::new();
    api::register(&config.api, &mut registry)?;
    email::register(&config.email, &config.default_region, config.mail_keys.as_ref(), &mut registry)?;
    Ok(registry)
}
