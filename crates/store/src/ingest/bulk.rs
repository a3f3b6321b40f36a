//! Many messages at once: the bulk path of the single path's rules (`super::single`) for
//! messages without an explicit case or attachments. Same rules, same events in the same
//! order per message, written by the same row builders (`super::rows`) with a handful of
//! statements per batch instead of per message. If it fails, the writer runs the messages
//! one by one.

use std::collections::HashMap;

use kontor_channel::{InboundMessage as NewInbound, InboundReceipt};
use kontor_core::threading::{choose_case, CaseCandidate, Threading};
use kontor_core::{Channel, IdentityKind, Message};

use super::keys::{fingerprint, key_of, repeat_of};
use super::rows::{self, value_rows, CaseActivity, MessageRow, NewCase, NewCustomer, NewEvent, INBOUND_KEYS};
use super::single::{case_candidates_by_customer, fill_in_name, reopen};
use crate::events::message_ref;
use crate::writer::Tx;
use crate::{params, StoreError, Val};

/// A message's key: (channel, scope, key).
type KeyOf = (&'static str, String, String);

/// The batch and what the steps have learned about each of its messages.
struct Batch<'a> {
    items: &'a [&'a NewInbound],
    keys: Vec<Option<KeyOf>>,
    /// Keys stored before this batch: the first message's receipt and fingerprint.
    known: HashMap<KeyOf, (InboundReceipt, Option<String>)>,
    /// For a message repeating an earlier one of this batch: that one's index.
    dup_of: Vec<Option<usize>>,
    customer_of: Vec<i64>,
    case_of: Vec<i64>,
    /// The messages stored, by index into `items`, with their event ids.
    stored: Vec<(usize, Message, i64)>,
}

/// Stores the messages; a receipt (or a per-message error) for each, in order.
pub(super) fn ingest_many(
    tx: &mut Tx<'_>,
    items: &[&NewInbound],
    window_us: i64,
) -> Result<Vec<Result<InboundReceipt, StoreError>>, StoreError> {
    let n = items.len();
    let mut b = Batch {
        items,
        keys: items.iter().map(|m| key_of(m).map(|k| (m.channel.as_str(), m.idempotency_scope.clone(), k))).collect(),
        known: HashMap::new(),
        dup_of: vec![None; n],
        customer_of: vec![0; n],
        case_of: vec![0; n],
        stored: Vec::new(),
    };
    b.find_repeats(tx)?;
    b.find_customers(tx)?;
    b.choose_cases(tx, window_us)?;
    b.insert_messages(tx)?;
    b.record_keys(tx)?;
    b.receipts()
}

impl Batch<'_> {
    /// Whether item `i` is stored (not a repeat of a stored key or of an earlier item).
    fn is_new(&self, i: usize) -> bool {
        self.dup_of[i].is_none() && self.keys[i].as_ref().is_none_or(|k| !self.known.contains_key(k))
    }

    fn new_items(&self) -> Vec<usize> {
        (0..self.items.len()).filter(|i| self.is_new(*i)).collect()
    }

    /// Step 1: Keys stored before, and repeats inside this batch.
    fn find_repeats(&mut self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let keyed: Vec<&KeyOf> = self.keys.iter().flatten().collect();
        if !keyed.is_empty() {
            let sql = format!(
                "SELECT channel, scope, idem_key, message_id, case_id, customer_id, event_id, fingerprint FROM inbound_keys \
                 WHERE (channel, scope, idem_key) IN (VALUES {})",
                value_rows(keyed.len(), 3)
            );
            let p: Vec<Val> = keyed
                .iter()
                .flat_map(|(c, s, k)| [Val::from(*c), Val::from(s.as_str()), Val::from(k.as_str())])
                .collect();
            for r in tx.conn.query(&sql, &p)? {
                let channel = r.req_enum(0, "inbound_keys.channel", Channel::parse)?;
                let receipt = InboundReceipt {
                    message_id: r.req_i64(3, "inbound_keys.message_id")?,
                    case_id: r.req_i64(4, "inbound_keys.case_id")?,
                    customer_id: r.req_i64(5, "inbound_keys.customer_id")?,
                    event_id: r.req_i64(6, "inbound_keys.event_id")?,
                    created: false,
                };
                let key =
                    (channel.as_str(), r.req_text(1, "inbound_keys.scope")?, r.req_text(2, "inbound_keys.idem_key")?);
                self.known.insert(key, (receipt, r.opt_text(7)));
            }
        }
        let mut first_with_key: HashMap<&KeyOf, usize> = HashMap::new();
        for (i, k) in self.keys.iter().enumerate() {
            let Some(k) = k else { continue };
            if self.known.contains_key(k) {
                continue;
            }
            match first_with_key.get(k) {
                Some(j) => self.dup_of[i] = Some(*j),
                None => {
                    first_with_key.insert(k, i);
                }
            }
        }
        Ok(())
    }

    /// Step 2: Customers by identity, creating the unknown ones (one row each, in order of first
    /// appearance, with the first name given); a name fills in a nameless customer.
    fn find_customers(&mut self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let new = self.new_items();
        let identity = |i: usize| (self.items[i].from_kind, self.items[i].from_address.as_str());
        let mut wanted: Vec<(IdentityKind, &str)> = new.iter().map(|&i| identity(i)).collect();
        wanted.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        wanted.dedup();
        // (kind, address) → (customer, has a name)
        let mut owners: HashMap<(&'static str, String), (i64, bool)> = HashMap::new();
        if !wanted.is_empty() {
            let sql = format!(
                "SELECT i.kind, i.address, i.customer_id, c.name IS NOT NULL FROM identities i \
                 JOIN customers c ON c.id = i.customer_id WHERE (i.kind, i.address) IN (VALUES {})",
                value_rows(wanted.len(), 2)
            );
            let p: Vec<Val> = wanted.iter().flat_map(|(k, a)| [Val::from(k.as_str()), Val::from(*a)]).collect();
            for r in tx.conn.query(&sql, &p)? {
                let kind = r.req_enum(0, "identities.kind", IdentityKind::parse)?;
                let owner = (r.req_i64(2, "identities.customer_id")?, r.req_i64(3, "customers.name IS NOT NULL")? != 0);
                owners.insert((kind.as_str(), r.req_text(1, "identities.address")?), owner);
            }
        }
        let mut creating: Vec<NewCustomer<'_>> = Vec::new();
        let mut creating_index: HashMap<(&'static str, &str), usize> = HashMap::new();
        for &i in &new {
            let m = self.items[i];
            let key = (m.from_kind.as_str(), m.from_address.clone());
            if let Some((cid, has_name)) = owners.get(&key).copied() {
                if let (false, Some(name)) = (has_name, m.name.as_deref()) {
                    fill_in_name(tx, cid, name)?;
                    owners.insert(key, (cid, true));
                }
                continue;
            }
            match creating_index.get(&(m.from_kind.as_str(), m.from_address.as_str())) {
                Some(&k) => {
                    if creating[k].name.is_none() {
                        creating[k].name = m.name.as_deref();
                    }
                }
                None => {
                    creating_index.insert((m.from_kind.as_str(), m.from_address.as_str()), creating.len());
                    creating.push(NewCustomer { kind: m.from_kind, address: &m.from_address, name: m.name.as_deref() });
                }
            }
        }
        if !creating.is_empty() {
            let ids = rows::create_customers(tx, &creating)?;
            for (c, id) in creating.iter().zip(ids) {
                owners.insert((c.kind.as_str(), c.address.to_string()), (id, c.name.is_some()));
            }
        }
        for &i in &new {
            let m = self.items[i];
            self.customer_of[i] = owners
                .get(&(m.from_kind.as_str(), m.from_address.clone()))
                .map(|(cid, _)| *cid)
                .ok_or_else(|| StoreError::Database("bulk ingest lost a customer".into()))?;
        }
        Ok(())
    }

    /// Step 3: Cases: the customers' candidates, then the single path's choice per message in
    /// order (a later message of the batch joins the case an earlier one opened). New cases
    /// get placeholder ids (negative) until they are inserted together.
    fn choose_cases(&mut self, tx: &mut Tx<'_>, window_us: i64) -> Result<(), StoreError> {
        let new = self.new_items();
        let mut customers: Vec<i64> = new.iter().map(|&i| self.customer_of[i]).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut candidates: HashMap<i64, Vec<CaseCandidate>> = HashMap::new();
        for (customer, c, _) in case_candidates_by_customer(tx, &customers)? {
            candidates.entry(customer).or_default().push(c);
        }
        let now = tx.now;
        let mut opening: Vec<usize> = Vec::new(); // the item that opens each new case
        for &i in &new {
            let cid = self.customer_of[i];
            let cands = candidates.entry(cid).or_default();
            let case_id = match choose_case(cands, now, window_us) {
                Threading::Append(id) => id,
                Threading::Reopen(id) => {
                    reopen(tx, id, cid)?;
                    if let Some(c) = cands.iter_mut().find(|c| c.id == id) {
                        c.status = kontor_core::CaseStatus::Open;
                    }
                    id
                }
                Threading::New => {
                    opening.push(i);
                    let placeholder = -(opening.len() as i64);
                    cands.push(CaseCandidate {
                        id: placeholder,
                        status: kontor_core::CaseStatus::Open,
                        updated_at_us: now,
                    });
                    placeholder
                }
            };
            if let Some(c) = cands.iter_mut().find(|c| c.id == case_id) {
                c.updated_at_us = now;
            }
            self.case_of[i] = case_id;
        }
        if !opening.is_empty() {
            let cases: Vec<NewCase<'_>> = opening
                .iter()
                .map(|&i| NewCase {
                    customer_id: self.customer_of[i],
                    subject: self.items[i].subject.as_deref(),
                    channel: self.items[i].channel,
                })
                .collect();
            let ids = rows::create_cases(tx, &cases)?;
            for c in self.case_of.iter_mut().filter(|c| **c < 0) {
                *c = usize::try_from(-*c - 1)
                    .ok()
                    .and_then(|k| ids.get(k).copied())
                    .ok_or_else(|| StoreError::Database("bulk ingest lost a new case".into()))?;
            }
        }
        Ok(())
    }

    /// Step 4: The messages, their `message.received` events, and each case's activity once.
    fn insert_messages(&mut self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let new = self.new_items();
        if new.is_empty() {
            return Ok(());
        }
        let message_rows: Vec<MessageRow<'_>> =
            new.iter().map(|&i| MessageRow::inbound(self.items[i], self.case_of[i], self.customer_of[i])).collect();
        let messages = rows::insert_messages(tx, &message_rows)?;
        let events: Vec<NewEvent> = messages
            .iter()
            .map(|m| NewEvent {
                kind: kontor_core::EventKind::MessageReceived,
                case_id: Some(m.case_id),
                customer_id: m.customer_id,
                payload: message_ref(m),
            })
            .collect();
        let event_ids = rows::insert_events(tx, &events)?;
        let mut activity: Vec<CaseActivity<'_>> = Vec::new();
        for (&i, ev) in new.iter().zip(&event_ids) {
            let subject = self.items[i].subject.as_deref();
            match activity.iter_mut().find(|a| a.case_id == self.case_of[i]) {
                Some(a) => {
                    a.event_id = a.event_id.max(*ev);
                    if a.subject.is_none() {
                        a.subject = subject;
                    }
                }
                None => activity.push(CaseActivity { case_id: self.case_of[i], event_id: *ev, subject }),
            }
        }
        rows::touch_cases(tx, &activity)?;
        self.stored = new.into_iter().zip(messages).zip(event_ids).map(|((i, m), ev)| (i, m, ev)).collect();
        Ok(())
    }

    /// Step 5: The keys of the stored messages, so that the same message again is a repeat.
    fn record_keys(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let mut p: Vec<Val> = Vec::new();
        for (i, m, ev) in &self.stored {
            if let Some((channel, scope, k)) = &self.keys[*i] {
                p.extend(params![
                    *channel,
                    scope.as_str(),
                    k.as_str(),
                    fingerprint(self.items[*i]),
                    m.id,
                    m.case_id,
                    m.customer_id,
                    *ev
                ]);
            }
        }
        INBOUND_KEYS.insert(tx, &p)
    }

    /// Receipts in request order: a stored message's own, a repeat's first message's (or a
    /// conflict if it is not the same message).
    fn receipts(&self) -> Result<Vec<Result<InboundReceipt, StoreError>>, StoreError> {
        let by_item: HashMap<usize, InboundReceipt> = self
            .stored
            .iter()
            .map(|(i, m, ev)| {
                let receipt = InboundReceipt {
                    message_id: m.id,
                    case_id: m.case_id,
                    customer_id: m.customer_id,
                    event_id: *ev,
                    created: true,
                };
                (*i, receipt)
            })
            .collect();
        let lost = || StoreError::Database("bulk ingest lost a message".into());
        (0..self.items.len())
            .map(|i| {
                let key = self.keys[i].as_ref().map(|(_, _, k)| k.as_str()).unwrap_or("");
                Ok(if let Some(j) = self.dup_of[i] {
                    let first = by_item.get(&j).copied().ok_or_else(lost)?;
                    repeat_of(first, Some(&fingerprint(self.items[j])), self.items[i], key)
                } else if let Some(r) = by_item.get(&i) {
                    Ok(*r)
                } else {
                    let (first, stored) = self.keys[i].as_ref().and_then(|k| self.known.get(k)).ok_or_else(lost)?;
                    repeat_of(*first, stored.as_deref(), self.items[i], key)
                })
            })
            .collect()
    }
}
