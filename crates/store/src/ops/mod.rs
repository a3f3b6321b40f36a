//! The store's operations, grouped by domain object.

mod attachments;
mod auth;
mod canned;
mod cases;
mod contacts;
mod customers;
mod delivery;
mod events;
mod inbox;
mod ingest;
mod jobs;
mod merge;
mod search;
mod sessions;
mod settings;
mod teams;

pub use attachments::{BlobRef, StoredAttachment};
pub use auth::*;
pub use cases::*;
pub use contacts::*;
pub use customers::*;
pub use events::{event_message_id, Audience, ClientEvent, SessionViewer, MESSAGE_EVENT_KINDS};
pub use inbox::*;
pub use ingest::*;
pub use jobs::*;
pub use merge::*;
pub use search::*;
pub use sessions::*;
pub use settings::*;

use kontor_core::{Attachment, Case, CaseStatus, Channel, DeliveryState, Direction, Message, Priority};

use crate::db::{Conn, Row};
use crate::{format_ts, params, StoreError};

pub(crate) const CASE_COLS: &str = "id, customer_id, subject, status, priority, assignee_id, team_id, tags, channel, \
     created_at, updated_at, first_response_at, resolved_at, last_message_at, last_event_id";

pub(crate) fn case_from_row(r: &Row) -> Result<Case, StoreError> {
    Ok(Case {
        id: r.req_i64(0, "cases.id")?,
        customer_id: r.req_i64(1, "cases.customer_id")?,
        subject: r.opt_text(2),
        status: r.req_enum(3, "cases.status", CaseStatus::parse)?,
        priority: r.req_enum(4, "cases.priority", Priority::parse)?,
        assignee_id: r.opt_i64(5),
        team_id: r.opt_i64(6),
        tags: serde_json::from_str(&r.req_text(7, "cases.tags")?)
            .map_err(|e| StoreError::Corrupt(format!("cases.tags is not a JSON list: {e}")))?,
        channel: r.req_enum(8, "cases.channel", Channel::parse)?,
        created_at: format_ts(r.req_i64(9, "cases.created_at")?),
        updated_at: format_ts(r.req_i64(10, "cases.updated_at")?),
        first_response_at: r.opt_i64(11).map(format_ts),
        resolved_at: r.opt_i64(12).map(format_ts),
        last_message_at: r.opt_i64(13).map(format_ts),
        last_event_id: r.req_i64(14, "cases.last_event_id")?,
    })
}

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
        created_at: format_ts(r.req_i64(14, "messages.created_at")?),
        duration_seconds: r.opt_i64(15),
    })
}

pub(crate) fn load_case(c: &mut Conn, id: i64) -> Result<Case, StoreError> {
    c.query_opt(&format!("SELECT {CASE_COLS} FROM cases WHERE id = ?"), &params![id])?
        .map(|r| case_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?
}

pub(crate) fn load_message(c: &mut Conn, id: i64) -> Result<Message, StoreError> {
    c.query_opt(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = ?"), &params![id])?
        .map(|r| message_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?
}

/// A page of results with an opaque cursor for the next one.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
