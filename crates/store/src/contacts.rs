//! Contacts that happened outside Kontor: a phone call or a letter that came by post,
//! recorded by an agent and threaded like any other message.

use kontor_core::{Attachment, CaseId, Channel, CustomerId, Direction, UserId};

use crate::ingest::{insert_message, thread_case, MessageRow};
use crate::records::{case_visible, VISIBLE_TO_SQL};
use crate::{params, Store, StoreError};

/// A phone call or letter to record.
#[derive(Debug, Clone)]
pub struct NewContact {
    pub customer_id: CustomerId,
    /// [`Channel::Phone`] or [`Channel::Letter`].
    pub channel: Channel,
    pub direction: Direction,
    /// What was said or written (a summary).
    pub text: String,
    /// Length of a phone call.
    pub duration_seconds: Option<i64>,
    /// The scan of a letter, a recording's transcript, ...
    pub attachments: Vec<Attachment>,
    /// Thread into this case (it must be the customer's) instead of choosing one.
    pub case_id: Option<CaseId>,
    /// The staff user who records it (shown as its author).
    pub author_id: Option<UserId>,
    /// A staff user whose visibility rules apply (agents): a customer or case they cannot
    /// see answers as if it did not exist. `None` for admins and API tokens.
    pub restricted_to: Option<UserId>,
}

/// What a recorded contact became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ContactReceipt {
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    /// The `message.recorded` event.
    pub event_id: i64,
}

/// The event kind of a recorded contact.
pub const CONTACT_RECORDED: kontor_core::EventKind = kontor_core::EventKind::MessageRecorded;

impl Store {
    /// Records a phone call or letter as a message of the customer: in the requested case, or
    /// threaded like an inbound message (an incoming call re-opens a recently resolved case; an
    /// outgoing one is appended without re-opening). Announced as `message.recorded`.
    pub async fn record_contact(&self, c: NewContact) -> Result<ContactReceipt, StoreError> {
        if !matches!(c.channel, Channel::Phone | Channel::Letter) {
            return Err(StoreError::invalid("channel", "must be phone or letter"));
        }
        let window_us = self.settings().reopen_window.as_micros() as i64;
        self.write(move |tx| {
            let not_found = || StoreError::NotFound(format!("customer {}", c.customer_id));
            let row = tx
                .conn
                .query_opt("SELECT merged_into FROM customers WHERE id = ?", &params![c.customer_id])?
                .ok_or_else(not_found)?;
            if let Some(into) = row.opt_i64(0) {
                return Err(StoreError::Conflict(format!(
                    "customer {} was merged into customer {into}; record the contact there",
                    c.customer_id
                )));
            }
            if let Some(user) = c.restricted_to {
                let visible = tx
                    .conn
                    .query_opt(
                        &format!(
                            "SELECT 1 FROM cases WHERE customer_id = ? AND merged_into IS NULL AND {VISIBLE_TO_SQL} LIMIT 1"
                        ),
                        &params![c.customer_id, user, user],
                    )?
                    .is_some();
                if !visible {
                    return Err(not_found());
                }
                if let Some(case) = c.case_id {
                    if !case_visible(tx.conn, case, user)? {
                        return Err(StoreError::NotFound(format!("case {case} of this customer")));
                    }
                }
            }
            let reopen = c.direction == Direction::In;
            let case_id =
                thread_case(tx, c.customer_id.get(), c.case_id.map(CaseId::get), reopen, None, c.channel, window_us)?;
            if let Some(user) = c.restricted_to {
                // Threading chose a case the agent may not see (another team's open case, or the
                // case a visible one was merged into): answer as for a case that does not exist,
                // so nothing is learnt about it; an admin, or naming a visible case, records it.
                if !case_visible(tx.conn, CaseId(case_id), user)? {
                    return Err(StoreError::NotFound(format!("a case of customer {} you may see", c.customer_id)));
                }
            }
            let message = insert_message(
                tx,
                &MessageRow {
                    case_id,
                    customer_id: c.customer_id.get(),
                    direction: c.direction,
                    internal: false,
                    channel: c.channel,
                    subject: None,
                    text: &c.text,
                    html: None,
                    attachments: &c.attachments,
                    provider_message_id: None,
                    author_id: c.author_id.map(UserId::get),
                    delivery_state: None,
                    duration_seconds: c.duration_seconds,
                    auto_submitted: false,
                    raw_blob_id: None,
                    raw_sealed: None,
                    cc: &[],
                    to: &[],
                },
            )?;
            let event_id = tx.event(
                CONTACT_RECORDED,
                Some(case_id),
                Some(c.customer_id.get()),
                &serde_json::json!({
                    "message_id": message.id, "case_id": case_id, "customer_id": c.customer_id,
                    "channel": c.channel, "direction": c.direction, "author_id": c.author_id,
                }),
            )?;
            let now = tx.now;
            let first_response = (c.direction == Direction::Out).then_some(now);
            tx.conn.execute(
                "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = ?, \
                 first_response_at = COALESCE(first_response_at, ?) WHERE id = ?",
                &params![now, now, event_id, first_response, case_id],
            )?;
            Ok(ContactReceipt { message_id: message.id, case_id, customer_id: c.customer_id.get(), event_id })
        })
        .await
    }
}
