//! Messages: how a stored message is read, its attachments, its delivery state, and the
//! contacts staff record by hand (phone calls, letters).

mod attachments;
mod contacts;
mod delivery;

pub(crate) use attachments::insert_attachments;
pub use attachments::{BlobRef, StoredAttachment};
pub use contacts::{ContactReceipt, NewContact, CONTACT_RECORDED};
pub(crate) use delivery::apply_pending_reports;

use kontor_core::{Attachment, Channel, DeliveryState, Direction, Message};

use crate::db::{Conn, Row};
use crate::{params, Store, StoreError};

pub(crate) const MESSAGE_COLS: &str = "id, case_id, customer_id, direction, internal, channel, subject, text, html, \
     attachments, provider_message_id, author_id, delivery_state, delivery_error, created_at, duration_seconds";

pub(crate) fn message_from_row(r: &Row) -> Result<Message, StoreError> {
    Ok(Message {
        id: r.req_i64(0, "messages.id")?,
        case_id: r.req_i64(1, "messages.case_id")?,
        customer_id: r.req_i64(2, "messages.customer_id")?,
        direction: r.req_enum(3, "messages.direction", Direction::parse)?,
        internal: r.req_i64(4, "messages.internal")? != 0,
        channel: r.req_enum(5, "messages.channel", Channel::parse)?,
        subject: r.opt_text(6),
        text: r.req_text(7, "messages.text")?,
        html: r.opt_text(8),
        attachments: serde_json::from_str::<Vec<Attachment>>(&r.req_text(9, "messages.attachments")?)
            .map_err(|e| StoreError::Corrupt(format!("messages.attachments is not a JSON list: {e}")))?,
        provider_message_id: r.opt_text(10),
        author_id: r.opt_i64(11),
        delivery_state: r.opt_enum(12, "messages.delivery_state", DeliveryState::parse)?,
        delivery_error: r.opt_text(13),
        created_at: r.req_ts(14, "messages.created_at")?,
        duration_seconds: r.opt_i64(15),
    })
}

pub(crate) fn load_message(c: &mut Conn, id: i64) -> Result<Message, StoreError> {
    c.query_opt(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = ?"), &params![id])?
        .map(|r| message_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?
}

impl Store {
    /// One message.
    pub async fn message(&self, id: i64) -> Result<Message, StoreError> {
        self.read(move |c| load_message(c, id)).await
    }
}
