//! Messages: reading a message, its attachments, and its delivery state (the delivery job's
//! payload and effect, and providers' status reports).

mod attachments;
mod delivery;

pub(crate) use attachments::insert_attachments;
pub use attachments::{BlobRef, StoredAttachment};
pub use delivery::{DeliverMessage, DeliveryUpdate};

use kontor_core::{DeliveryState, Message};

use crate::records::load_message;
use crate::{params, Store, StoreError};

impl Store {
    /// One message.
    pub async fn message(&self, id: i64) -> Result<Message, StoreError> {
        self.read(move |c| load_message(c, id)).await
    }
}

/// The newest traffic on a channel (for its status page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelActivity {
    pub last_inbound_at: Option<kontor_core::Timestamp>,
    pub last_outbound_at: Option<kontor_core::Timestamp>,
    pub last_outbound_state: Option<DeliveryState>,
    pub last_outbound_error: Option<String>,
}

impl Store {
    /// The newest inbound message and the newest reply on `channel`.
    pub async fn channel_activity(&self, channel: kontor_core::Channel) -> Result<ChannelActivity, StoreError> {
        self.read(move |c| {
            let inbound = c.query_opt(
                "SELECT created_at FROM messages WHERE channel = ? AND direction = 'in' ORDER BY id DESC LIMIT 1",
                &params![channel.as_str()],
            )?;
            let outbound = c.query_opt(
                "SELECT created_at, delivery_state, delivery_error FROM messages \
                 WHERE channel = ? AND direction = 'out' AND internal = 0 ORDER BY id DESC LIMIT 1",
                &params![channel.as_str()],
            )?;
            Ok(ChannelActivity {
                last_inbound_at: inbound.map(|r| r.req_ts(0, "messages.created_at")).transpose()?,
                last_outbound_at: outbound.as_ref().map(|r| r.req_ts(0, "messages.created_at")).transpose()?,
                last_outbound_state: match &outbound {
                    Some(r) => r.opt_enum(1, "messages.delivery_state", DeliveryState::parse)?,
                    None => None,
                },
                last_outbound_error: outbound.as_ref().and_then(|r| r.opt_text(2)),
            })
        })
        .await
    }
}
