//! One message at a time: the path for messages the bulk path does not take (an explicit
//! case, attachments), for a bulk batch that failed, and for replies, notes and recorded
//! contacts (which share [`thread_case`] and [`insert_message`]). It writes through the same
//! row builders as the bulk path (`super::rows`), one row each.

use kontor_channel::{InboundMessage as NewInbound, InboundReceipt};
use kontor_core::threading::{choose_case, choose_case_for_answer, CaseCandidate, Threading};
use kontor_core::{CaseStatus, Channel, IdentityKind, Message};
use serde_json::json;

use super::keys::{fingerprint, key_of, repeat_of_row, KEY_ROW_SQL};
use super::rows::{self, CaseActivity, MessageRow, NewCase, NewCustomer, NewEvent, INBOUND_KEYS};
use crate::customers::refresh_customer_search;
use crate::events::message_ref;
use crate::records::{follow_merges, load_case};
use crate::writer::Tx;
use crate::{params, StoreError};

/// Stores one inbound message: claims its key, finds or creates the customer, threads it
/// into a case, inserts it and appends `message.received`.
pub(super) fn ingest_in(tx: &mut Tx<'_>, m: &NewInbound, reopen_window_us: i64) -> Result<InboundReceipt, StoreError> {
    let key = key_of(m);
    let channel = m.channel.as_str();
    let scope = m.idempotency_scope.as_str();
    if let Some(key) = &key {
        // Claimed first (ids filled in below), so a concurrent duplicate on another node
        // waits for this one and then finds its ids.
        let claimed =
            INBOUND_KEYS.insert_new(tx, &params![channel, scope, key.as_str(), fingerprint(m), 0, 0, 0, 0])?;
        if claimed == 0 {
            let r = tx
                .conn
                .query_opt(KEY_ROW_SQL, &params![channel, scope, key.as_str()])?
                .ok_or_else(|| StoreError::Conflict("duplicate is still being stored".into()))?;
            return repeat_of_row(&r, m, key);
        }
    }

    let customer_id = customer_for(tx, m.from_kind, &m.from_address, m.name.as_deref())?;
    let referenced = match m.case_id {
        None => match referenced_case(tx, customer_id, m.channel, &m.refers_to)? {
            Some(case) => Some(case),
            None => hinted_case(tx, customer_id, m.case_hint)?,
        },
        Some(_) => None,
    };
    let case_id = match referenced {
        // An answer to a message of an open or resolved case belongs there, however long ago
        // the case was resolved (the reopen window is for messages that answer nothing).
        Some(case) if case.status != CaseStatus::Closed => {
            if !case.status.is_active() {
                reopen(tx, case.id, customer_id)?;
            }
            case.id
        }
        // An answer to a message Kontor does not know (a newsletter, another system's mail)
        // joins only a case of this customer with its subject, else starts one.
        _ if m.case_id.is_none() && !m.refers_to.is_empty() => {
            let candidates = candidates_with_subjects(tx, customer_id)?;
            match choose_case_for_answer(&candidates, m.subject.as_deref(), tx.now, reopen_window_us) {
                Threading::Append(id) => id,
                Threading::Reopen(id) => {
                    reopen(tx, id, customer_id)?;
                    id
                }
                Threading::New => rows::create_cases(
                    tx,
                    &[NewCase { customer_id, subject: m.subject.as_deref(), channel: m.channel }],
                )?
                .first()
                .copied()
                .ok_or_else(|| StoreError::Database("case insert returned no id".into()))?,
            }
        }
        _ => thread_case(tx, customer_id, m.case_id, true, m.subject.as_deref(), m.channel, reopen_window_us)?,
    };
    let message = insert_message(tx, &MessageRow::inbound(m, case_id, customer_id))?;

    let event = NewEvent {
        kind: kontor_core::EventKind::MessageReceived,
        case_id: Some(case_id),
        customer_id,
        payload: message_ref(&message),
    };
    let event_id = rows::insert_events(tx, &[event])?
        .first()
        .copied()
        .ok_or_else(|| StoreError::Database("event insert returned no id".into()))?;
    rows::touch_cases(tx, &[CaseActivity { case_id, event_id, subject: m.subject.as_deref() }])?;
    if let Some(key) = &key {
        tx.conn.execute(
            "UPDATE inbound_keys SET message_id = ?, case_id = ?, customer_id = ?, event_id = ? \
             WHERE channel = ? AND scope = ? AND idem_key = ?",
            &params![message.id, case_id, customer_id, event_id, channel, scope, key.as_str()],
        )?;
    }
    Ok(InboundReceipt { message_id: message.id, case_id, customer_id, event_id, created: true })
}

/// The customer owning an identity, created (with the identity) if there is none. A name
/// given fills in a customer that has none.
fn customer_for(tx: &mut Tx<'_>, kind: IdentityKind, address: &str, name: Option<&str>) -> Result<i64, StoreError> {
    let found = tx.conn.query_opt(
        "SELECT i.customer_id, c.name IS NOT NULL FROM identities i JOIN customers c ON c.id = i.customer_id \
         WHERE i.kind = ? AND i.address = ?",
        &params![kind.as_str(), address],
    )?;
    if let Some(r) = found {
        let id = r.req_i64(0, "identities.customer_id")?;
        if r.req_i64(1, "customers.name IS NOT NULL")? == 0 {
            if let Some(name) = name {
                fill_in_name(tx, id, name)?;
            }
        }
        return Ok(id);
    }
    rows::create_customers(tx, &[NewCustomer { kind, address, name }])?
        .first()
        .copied()
        .ok_or_else(|| StoreError::Database("customer insert returned no id".into()))
}

/// Gives a nameless customer the name a message came with.
pub(super) fn fill_in_name(tx: &mut Tx<'_>, customer_id: i64, name: &str) -> Result<(), StoreError> {
    tx.conn
        .execute("UPDATE customers SET name = ?, updated_at = ? WHERE id = ?", &params![name, tx.now, customer_id])?;
    refresh_customer_search(tx, customer_id)
}

/// The case a message of `customer_id` belongs in: the requested case (following merges; an
/// unknown case and another customer's case answer alike), else the customer's open case, or
/// their resolved case within the reopen window, else a new case. `reopen_case`: a resolved
/// case taken this way is re-opened (an inbound message), or just appended to (a contact an
/// agent records after the fact).
pub(crate) fn thread_case(
    tx: &mut Tx<'_>,
    customer_id: i64,
    requested_case: Option<i64>,
    reopen_case: bool,
    subject: Option<&str>,
    channel: Channel,
    reopen_window_us: i64,
) -> Result<i64, StoreError> {
    match requested_case {
        Some(requested) => {
            // A case that was merged lives on in the case it was merged into.
            let id = follow_merges(tx.conn, requested)?;
            // An unknown case and another customer's case get the same answer: the sender
            // learns nothing about cases that are not theirs.
            let not_theirs = || StoreError::NotFound(format!("case {requested} of this sender"));
            let case = match load_case(tx.conn, id) {
                Ok(c) => c,
                Err(StoreError::NotFound(_)) => return Err(not_theirs()),
                Err(e) => return Err(e),
            };
            if case.customer_id != customer_id {
                return Err(not_theirs());
            }
            if reopen_case && !case.status.is_active() {
                reopen(tx, id, case.customer_id)?;
            }
            Ok(id)
        }
        None => {
            let candidates = case_candidates(tx, &[customer_id])?;
            match choose_case(&candidates, tx.now, reopen_window_us) {
                Threading::Append(id) => Ok(id),
                Threading::Reopen(id) => {
                    if reopen_case {
                        reopen(tx, id, customer_id)?;
                    }
                    Ok(id)
                }
                Threading::New => rows::create_cases(tx, &[NewCase { customer_id, subject, channel }])?
                    .first()
                    .copied()
                    .ok_or_else(|| StoreError::Database("case insert returned no id".into())),
            }
        }
    }
}

/// A customer's candidate cases with their subjects.
fn candidates_with_subjects(
    tx: &mut Tx<'_>,
    customer_id: i64,
) -> Result<Vec<(CaseCandidate, Option<String>)>, StoreError> {
    Ok(case_candidates_by_customer(tx, &[customer_id])?.into_iter().map(|(_, c, subject)| (c, subject)).collect())
}

/// Candidate cases read per customer when threading.
const CANDIDATES_PER_CUSTOMER: usize = 20;

/// Most ids of earlier messages looked up for one inbound message.
const MAX_REFERENCES: usize = 20;

/// The case of the first of `refs` (provider ids of earlier messages, the most direct first)
/// that Kontor sent or received on `channel` and that belongs to `customer_id` (following
/// merges). Another customer's case is never joined this way: knowing a message id must not
/// let a stranger write into someone's case.
pub(super) fn referenced_case(
    tx: &mut Tx<'_>,
    customer_id: i64,
    channel: Channel,
    refs: &[String],
) -> Result<Option<kontor_core::Case>, StoreError> {
    for r in refs.iter().take(MAX_REFERENCES) {
        let sent = tx.conn.query_opt(
            "SELECT case_id FROM messages WHERE channel = ? AND provider_message_id = ? AND direction = 'out' \
             AND provider_message_id IS NOT NULL LIMIT 1",
            &params![channel.as_str(), r.as_str()],
        )?;
        let found = match sent {
            Some(row) => Some(row),
            None => tx.conn.query_opt(
                "SELECT case_id FROM inbound_keys WHERE channel = ? AND idem_key = ? AND message_id > 0 \
                 AND customer_id = ? LIMIT 1",
                &params![channel.as_str(), format!("p:{r}"), customer_id],
            )?,
        };
        let Some(row) = found else { continue };
        let id = follow_merges(tx.conn, row.req_i64(0, "case_id")?)?;
        let case = load_case(tx.conn, id)?;
        if case.customer_id == customer_id {
            return Ok(Some(case));
        }
    }
    Ok(None)
}

/// The case a channel named (an e-mail case token), following merges, if it is this
/// customer's.
fn hinted_case(tx: &mut Tx<'_>, customer_id: i64, hint: Option<i64>) -> Result<Option<kontor_core::Case>, StoreError> {
    let Some(hint) = hint else { return Ok(None) };
    let id = follow_merges(tx.conn, hint)?;
    match load_case(tx.conn, id) {
        Ok(case) if case.customer_id == customer_id => Ok(Some(case)),
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The cases of these customers a new message may join (open, pending or resolved), with
/// the customer each belongs to and its subject.
pub(super) fn case_candidates_by_customer(
    tx: &mut Tx<'_>,
    customers: &[i64],
) -> Result<Vec<(i64, CaseCandidate, Option<String>)>, StoreError> {
    if customers.is_empty() {
        return Ok(vec![]);
    }
    // Per customer the best few: active cases first, then the most recently changed (the
    // order `choose_case` decides by), so the choice is the same as over all of them, and a
    // customer with years of resolved cases costs no more than one with a few.
    let sql = format!(
        "SELECT id, customer_id, status, updated_at, subject FROM (\
           SELECT id, customer_id, status, updated_at, subject, ROW_NUMBER() OVER (PARTITION BY customer_id \
             ORDER BY CASE WHEN status IN ('open', 'pending') THEN 0 ELSE 1 END, updated_at DESC, id DESC) AS rn \
           FROM cases WHERE customer_id IN ({}) AND status IN ('open', 'pending', 'resolved')) AS c \
         WHERE rn <= {CANDIDATES_PER_CUSTOMER}",
        vec!["?"; customers.len()].join(", ")
    );
    let p: Vec<crate::Val> = customers.iter().map(|c| crate::Val::from(*c)).collect();
    tx.conn
        .query(&sql, &p)?
        .iter()
        .map(|r| {
            Ok((
                r.req_i64(1, "cases.customer_id")?,
                CaseCandidate {
                    id: r.req_i64(0, "cases.id")?,
                    status: r.req_enum(2, "cases.status", CaseStatus::parse)?,
                    updated_at_us: r.req_i64(3, "cases.updated_at")?,
                },
                r.opt_text(4),
            ))
        })
        .collect()
}

fn case_candidates(tx: &mut Tx<'_>, customers: &[i64]) -> Result<Vec<CaseCandidate>, StoreError> {
    Ok(case_candidates_by_customer(tx, customers)?.into_iter().map(|(_, c, _)| c).collect())
}

/// Re-opens a resolved case for a new inbound message and appends `case.updated`.
pub(super) fn reopen(tx: &mut Tx<'_>, case_id: i64, customer_id: i64) -> Result<(), StoreError> {
    let now = tx.now;
    tx.conn.execute(
        "UPDATE cases SET status = 'open', resolved_at = NULL, updated_at = ? WHERE id = ?",
        &params![now, case_id],
    )?;
    let ev = tx.event(
        kontor_core::EventKind::CaseUpdated,
        Some(case_id),
        Some(customer_id),
        &json!({ "case_id": case_id, "changes": { "status": "open" }, "reason": "reopened by inbound message" }),
    )?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
    Ok(())
}

/// Inserts one message with its attachment rows and search entry; returns it as stored.
pub(crate) fn insert_message(tx: &mut Tx<'_>, m: &MessageRow<'_>) -> Result<Message, StoreError> {
    let mut message = rows::insert_messages(tx, std::slice::from_ref(m))?
        .pop()
        .ok_or_else(|| StoreError::Database("message insert returned no id".into()))?;
    if !m.attachments.is_empty() {
        message.attachments = crate::messages::insert_attachments(tx, message.id, m.attachments)?;
    }
    Ok(message)
}
