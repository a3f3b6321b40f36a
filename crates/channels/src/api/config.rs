//! Configuration of the API channel (section `[api_channel]`).

use serde::{Deserialize, Serialize};

/// Where replies on the API channel are delivered.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiChannelConfig {
    /// URL that receives outbound messages as signed JSON POSTs.
    pub webhook_url: Option<String>,
    /// Shared secret for the `X-Kontor-Signature` HMAC-SHA256 header.
    pub webhook_secret: Option<String>,
    /// Seconds before a webhook request counts as failed.
    pub timeout_secs: u64,
}

impl Default for ApiChannelConfig {
    fn default() -> Self {
        ApiChannelConfig { webhook_url: None, webhook_secret: None, timeout_secs: 10 }
    }
}

impl std::fmt::Debug for ApiChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiChannelConfig")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "<hidden>"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}
