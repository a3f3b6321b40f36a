//! Messages: reading a message, its attachments, and its delivery state (the delivery job's
//! payload and effect, and providers' status reports).

mod attachments;
mod delivery;

pub(crate) use attachments::insert_attachments;
pub use attachments::{BlobRef, StoredAttachment};
pub use delivery::{DeliverMessage, DeliveryUpdate};

use kontor_core::Message;

use crate::records::load_message;
use crate::{Store, StoreError};

impl Store {
    /// One message.
    pub async fn message(&self, id: i64) -> Result<Message, StoreError> {
        self.read(move |c| load_message(c, id)).await
    }
}
