//! Inbound messages: identify the customer, thread into a case, append events.

use kontor_core::threading::{choose_case, CaseCandidate, Threading};
use kontor_core::{Attachment, CaseStatus, Channel, DeliveryState, Direction, IdentityKind, Message};
use serde_json::json;

use super::customers::find_or_create_customer;
use super::load_case;
use crate::writer::Tx;
use crate::{params, Store, StoreError};

/// A validated inbound message from any channel.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub channel: Channel,
    pub from_kind: IdentityKind,
    /// Already normalised (see `kontor_core::normalise_identity`).
    pub from_address: String,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The sending system's id for the message; the same id again is a duplicate.
    pub provider_message_id: Option<String>,
    /// Client-chosen key that makes a retry a no-op when there is no provider id.
    pub idempotency_key: Option<String>,
    /// Thread into this case instead of choosing one.
    pub case_id: Option<i64>,
}

/// Ids of what an inbound message became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct InboundReceipt {
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    /// The `message.received` event.
    pub event_id: i64,
    /// False when this was a duplicate of an earlier message.
    pub created: bool,
}

impl Store {
    /// Stores an inbound message; answers after commit. A duplicate (same provider id or
    /// idempotency key on the same channel) returns the first message's ids with
    /// `created: false` and changes nothing.
    pub async fn ingest(&self, msg: NewInbound) -> Result<InboundReceipt, StoreError> {
        let window = self.settings().reopen_window.as_micros() as i64;
        self.write(move |tx| ingest_in(tx, &msg, window)).await
    }
}

fn ingest_in(tx: &mut Tx<'_>, m: &NewInbound, reopen_window_us: i64) -> Result<InboundReceipt, StoreError> {
    let key = m
        .provider_message_id
        .as_deref()
        .map(|p| format!("p:{p}"))
        .or_else(|| m.idempotency_key.as_deref().map(|k| format!("k:{k}")));
    let channel = m.channel.as_str();
    if let Some(key) = &key {
        let claimed = tx.conn.execute(
            "INSERT INTO inbound_keys (channel, idem_key, message_id, case_id, customer_id, event_id) \
             VALUES (?, ?, 0, 0, 0, 0) ON CONFLICT DO NOTHING",
            &params![channel, key.as_str()],
        )?;
        if claimed == 0 {
            let r = tx
                .conn
                .query_opt(
                    "SELECT message_id, case_id, customer_id, event_id FROM inbound_keys WHERE channel = ? AND idem_key = ?",
                    &params![channel, key.as_str()],
                )?
                .ok_or_else(|| StoreError::Conflict("duplicate is still being stored".into()))?;
            return Ok(InboundReceipt {
                message_id: r.i64(0),
                case_id: r.i64(1),
                customer_id: r.i64(2),
                event_id: r.i64(3),
                created: false,
            });
        }
    }

    let (customer_id, _) = find_or_create_customer(tx, m.from_kind, &m.from_address, m.name.as_deref())?;
    let now = tx.now;

    // Choose the case.
    let case_id = match m.case_id {
        Some(id) => {
            let case = load_case(tx.conn, id)?;
            if case.customer_id != customer_id {
                return Err(StoreError::invalid("case_id", format!("case {id} belongs to another customer")));
            }
            if !case.status.is_active() {
                reopen(tx, id, case.customer_id)?;
            }
            id
        }
        None => {
            let rows = tx.conn.query(
                "SELECT id, status, updated_at FROM cases WHERE customer_id = ? AND status IN ('open', 'pending', 'resolved') \
                 ORDER BY updated_at DESC LIMIT 20",
                &params![customer_id],
            )?;
            let candidates: Vec<CaseCandidate> = rows
                .iter()
                .map(|r| CaseCandidate {
                    id: r.i64(0),
                    status: CaseStatus::parse(&r.text(1)).unwrap_or(CaseStatus::Open),
                    updated_at_us: r.i64(2),
                })
                .collect();
            match choose_case(&candidates, now, reopen_window_us) {
                Threading::Append(id) => id,
                Threading::Reopen(id) => {
                    reopen(tx, id, customer_id)?;
                    id
                }
                Threading::New => {
                    let id = tx
                        .conn
                        .query_opt(
                            "INSERT INTO cases (customer_id, subject, status, priority, channel, created_at, updated_at) \
                             VALUES (?, ?, 'open', 'normal', ?, ?, ?) RETURNING id",
                            &params![customer_id, m.subject.as_deref(), channel, now, now],
                        )?
                        .map(|r| r.i64(0))
                        .ok_or_else(|| StoreError::Database("case insert returned no id".into()))?;
                    let case = load_case(tx.conn, id)?;
                    tx.event("case.created", Some(id), Some(customer_id), &json!({ "case": case }))?;
                    id
                }
            }
        }
    };

    let message = insert_message(
        tx,
        &MessageRow {
            case_id,
            customer_id,
            direction: Direction::In,
            internal: false,
            channel: m.channel,
            subject: m.subject.as_deref(),
            text: &m.text,
            html: m.html.as_deref(),
            attachments: &m.attachments,
            provider_message_id: m.provider_message_id.as_deref(),
            author_id: None,
            delivery_state: None,
        },
    )?;
    let message_id = message.id;
    let event_id = tx.event("message.received", Some(case_id), Some(customer_id), &json!({ "message": message }))?;
    tx.conn.execute(
        "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = ?, subject = COALESCE(subject, ?) WHERE id = ?",
        &params![now, now, event_id, m.subject.as_deref(), case_id],
    )?;
    if let Some(key) = &key {
        tx.conn.execute(
            "UPDATE inbound_keys SET message_id = ?, case_id = ?, customer_id = ?, event_id = ? WHERE channel = ? AND idem_key = ?",
            &params![message_id, case_id, customer_id, event_id, channel, key.as_str()],
        )?;
    }
    Ok(InboundReceipt { message_id, case_id, customer_id, event_id, created: true })
}

fn reopen(tx: &mut Tx<'_>, case_id: i64, customer_id: i64) -> Result<(), StoreError> {
    let now = tx.now;
    tx.conn.execute(
        "UPDATE cases SET status = 'open', resolved_at = NULL, updated_at = ? WHERE id = ?",
        &params![now, case_id],
    )?;
    let ev = tx.event(
        "case.updated",
        Some(case_id),
        Some(customer_id),
        &json!({ "case_id": case_id, "changes": { "status": "open" }, "reason": "reopened by inbound message" }),
    )?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
    Ok(())
}

/// The columns of a new message row.
pub(crate) struct MessageRow<'a> {
    pub case_id: i64,
    pub customer_id: i64,
    pub direction: Direction,
    pub internal: bool,
    pub channel: Channel,
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub html: Option<&'a str>,
    pub attachments: &'a [Attachment],
    pub provider_message_id: Option<&'a str>,
    pub author_id: Option<i64>,
    pub delivery_state: Option<&'a str>,
}

/// Inserts a message and indexes it for search; returns it as stored.
pub(crate) fn insert_message(tx: &mut Tx<'_>, m: &MessageRow<'_>) -> Result<Message, StoreError> {
    let attachments = serde_json::to_string(m.attachments).unwrap_or_else(|_| "[]".into());
    let id = tx
        .conn
        .query_opt(
            "INSERT INTO messages (case_id, customer_id, direction, internal, channel, subject, text, html, attachments, \
             provider_message_id, author_id, delivery_state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            &params![
                m.case_id,
                m.customer_id,
                m.direction.as_str(),
                m.internal,
                m.channel.as_str(),
                m.subject,
                m.text,
                m.html,
                attachments,
                m.provider_message_id,
                m.author_id,
                m.delivery_state,
                tx.now
            ],
        )?
        .map(|r| r.i64(0))
        .ok_or_else(|| StoreError::Database("message insert returned no id".into()))?;
    if tx.backend() == crate::Backend::Sqlite {
        tx.conn.execute(
            "INSERT INTO messages_fts (rowid, subject, text) VALUES (?, ?, ?)",
            &params![id, m.subject.unwrap_or(""), m.text],
        )?;
    }
    Ok(Message {
        id,
        case_id: m.case_id,
        customer_id: m.customer_id,
        direction: m.direction,
        internal: m.internal,
        channel: m.channel,
        subject: m.subject.map(str::to_string),
        text: m.text.to_string(),
        html: m.html.map(str::to_string),
        attachments: m.attachments.to_vec(),
        provider_message_id: m.provider_message_id.map(str::to_string),
        author_id: m.author_id,
        delivery_state: m.delivery_state.and_then(DeliveryState::parse),
        delivery_error: None,
        created_at: crate::format_ts(tx.now),
    })
}
