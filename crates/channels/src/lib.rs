//! Kontor's channel adapters, one folder per channel (`<name>/{mod,config,inbound,outbound}.rs`,
//! fixtures in `tests/fixtures/<name>/`). Each adapter implements the channel contract
//! (`kontor-channel`): wire formats and signatures are parsed without I/O, transports send and
//! receive. The core never names a provider; the store is never touched from here (the
//! server commits what adapters hand over).

pub mod api;

use kontor_channel::ChannelRegistry;

/// The configuration of every channel, one field per channel (each a section of Kontor's
/// configuration file).
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    /// `[api_channel]`
    pub api: api::ApiChannelConfig,
}

/// The channels this node runs, built from configuration: one registration line per channel.
pub fn registry(config: &ChannelsConfig) -> Result<ChannelRegistry, String> {
    let mut registry = ChannelRegistry::new();
    api::register(&config.api, &mut registry)?;
    Ok(registry)
}
