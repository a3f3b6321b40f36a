//! Which channels this node runs: their senders, webhooks and listeners.

use std::collections::BTreeMap;
use std::sync::Arc;

use kontor_core::Channel;

use crate::{Listener, Outbound, WebhookHandler};

/// The channels of one node, built once at start from configuration.
#[derive(Clone, Default)]
pub struct ChannelRegistry {
    outbound: BTreeMap<&'static str, Arc<dyn Outbound>>,
    webhooks: BTreeMap<&'static str, Arc<dyn WebhookHandler>>,
    listeners: Vec<Arc<dyn Listener>>,
}

impl std::fmt::Debug for ChannelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRegistry")
            .field("outbound", &self.outbound.keys().collect::<Vec<_>>())
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("listeners", &self.listeners.iter().map(|l| l.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl ChannelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the sender of a channel (a second one for the same channel replaces the first).
    pub fn add_outbound(&mut self, sender: Arc<dyn Outbound>) -> &mut Self {
        self.outbound.insert(sender.channel().as_str(), sender);
        self
    }

    /// Registers the webhook of a channel, mounted at `/webhooks/<channel>/...`.
    pub fn add_webhook(&mut self, hook: Arc<dyn WebhookHandler>) -> &mut Self {
        self.webhooks.insert(hook.channel().as_str(), hook);
        self
    }

    /// Registers a long-running listener or poller, started by the supervisor.
    pub fn add_listener(&mut self, listener: Arc<dyn Listener>) -> &mut Self {
        self.listeners.push(listener);
        self
    }

    /// The sender for `channel`, if this node has one.
    pub fn outbound(&self, channel: Channel) -> Option<Arc<dyn Outbound>> {
        self.outbound.get(channel.as_str()).cloned()
    }

    /// The webhook for the channel spelled `channel` (as in the URL), if any.
    pub fn webhook(&self, channel: &str) -> Option<Arc<dyn WebhookHandler>> {
        self.webhooks.get(channel).cloned()
    }

    /// Channels replies can be sent on, in a stable order.
    pub fn deliverable(&self) -> Vec<Channel> {
        self.outbound.values().map(|o| o.channel()).collect()
    }

    /// Channels with a webhook.
    pub fn webhook_channels(&self) -> Vec<Channel> {
        self.webhooks.values().map(|w| w.channel()).collect()
    }

    /// The registered listeners.
    pub fn listeners(&self) -> &[Arc<dyn Listener>] {
        &self.listeners
    }
}
