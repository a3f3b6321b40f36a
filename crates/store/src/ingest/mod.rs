//! Inbound messages: identify the customer, thread into a case, append events.

use kontor_core::threading::{choose_case, CaseCandidate, Threading};
use kontor_core::{Attachment, Case, CaseStatus, Channel, DeliveryState, Direction, IdentityKind, Message, Priority};
use serde_json::json;

use crate::cases::load_case;
use crate::customers::find_or_create_customer;
use crate::events::{case_ref, message_ref};
use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::writer::{Merge, Tx, WriteOp};
use crate::{params, Store, StoreError, Val};

/// A validated inbound message from any channel (the channel contract's type).
pub use kontor_channel::{InboundMessage, InboundReceipt};

/// The former name of [`InboundMessage`], kept while callers move over.
pub type NewInbound = InboundMessage;

impl Store {
    /// Stores an inbound message; answers after commit. A duplicate (same provider id or
    /// idempotency key from the same client on the same channel, same sender and text)
    /// returns the first message's ids with `created: false` and changes nothing; the same
    /// key with another sender or text is refused with `IdempotencyConflict`.
    pub async fn ingest(&self, msg: NewInbound) -> Result<InboundReceipt, StoreError> {
        let window_us = self.settings().reopen_window.as_micros() as i64;
        let (reply, rx) = oneshot::channel();
        self.submit(Box::new(IngestOp { msg, window_us, out: None, reply }))?;
        rx.await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

impl Store {
    /// Whether `msg` repeats a message already stored under its key (provider id or
    /// idempotency key): its receipt (`created: false`) if so, an `IdempotencyConflict` if the
    /// key was used for another message, `None` for a new key. A read only: a caller checks
    /// this before storing attachments' bytes, so a retry stores no second copy.
    pub async fn find_repeat(&self, msg: &InboundMessage) -> Result<Option<InboundReceipt>, StoreError> {
        let Some(key) = key_of(msg) else { return Ok(None) };
        let msg = msg.clone();
        self.read(move |c| {
            let Some(r) =
                c.query_opt(KEY_ROW_SQL, &params![msg.channel.as_str(), msg.idempotency_scope.as_str(), key.as_str()])?
            else {
                return Ok(None);
            };
            if r.i64(0) == 0 {
                return Ok(None);
            }
            repeat_of_row(&r, &msg, &key).map(Some)
        })
        .await
    }
}

/// One inbound message queued for the writer.
struct IngestOp {
    msg: NewInbound,
    window_us: i64,
    out: Option<Result<InboundReceipt, StoreError>>,
    reply: oneshot::Sender<Result<InboundReceipt, StoreError>>,
}

impl WriteOp for IngestOp {
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let r = ingest_in(tx, &self.msg, self.window_us);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        crate::writer::answer(self.out, commit, self.reply);
    }

    /// Messages for an explicit case take the single path (their checks may refuse them), and
    /// so do messages with attachments (each gets its own row).
    fn merge(&self) -> Option<&'static Merge> {
        (self.msg.case_id.is_none() && self.msg.attachments.is_empty()).then_some(&BULK_INGEST)
    }

    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
        Err(self)
    }
}

/// The writer's batching hook for inbound messages: several become one [`BulkIngest`].
static BULK_INGEST: Merge = Merge { name: "bulk-ingest", combine: combine_ingests };

fn combine_ingests(ops: Vec<Box<dyn WriteOp>>) -> Vec<Box<dyn WriteOp>> {
    let mut items = Vec::with_capacity(ops.len());
    let mut others: Vec<Box<dyn WriteOp>> = Vec::new();
    for op in ops {
        if !(op.as_ref() as &dyn std::any::Any).is::<IngestOp>() {
            others.push(op);
            continue;
        }
        if let Ok(item) = (op as Box<dyn std::any::Any>).downcast::<IngestOp>() {
            items.push(*item);
        }
    }
    if !items.is_empty() {
        others.insert(0, Box::new(BulkIngest { items }));
    }
    others
}

/// Several inbound messages stored with set-based statements: a handful of round trips per
/// batch instead of per message. If it fails, the writer runs the messages one by one.
struct BulkIngest {
    items: Vec<IngestOp>,
}

impl WriteOp for BulkIngest {
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let window = self.items.first().map(|i| i.window_us).unwrap_or(0);
        let msgs: Vec<&NewInbound> = self.items.iter().map(|i| &i.msg).collect();
        match ingest_many(tx, &msgs, window) {
            Ok(receipts) => {
                for (item, r) in self.items.iter_mut().zip(receipts) {
                    item.out = Some(r);
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, n = self.items.len(), "Bulk ingest failed; storing one by one.");
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        for item in self.items {
            Box::new(item).finish(commit);
        }
    }

    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
        Ok(self
            .items
            .into_iter()
            .map(|mut i| {
                i.out = None;
                Box::new(i) as Box<dyn WriteOp>
            })
            .collect())
    }
}

/// The idempotency key of a message within its channel and scope.
fn key_of(m: &NewInbound) -> Option<String> {
    m.provider_message_id
        .as_deref()
        .map(|p| format!("p:{p}"))
        .or_else(|| m.idempotency_key.as_deref().map(|k| format!("k:{k}")))
}

/// What a retry must repeat for its key to count as the same message: sender, subject,
/// text, HTML, attachments and the requested case (hashed; the key row keeps no second copy
/// of the content). Absent and empty optional fields hash differently.
fn fingerprint(m: &NewInbound) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let attachments = serde_json::to_string(&m.attachments).unwrap_or_default();
    let case = m.case_id.map(|c| c.to_string());
    let parts: [Option<&str>; 7] = [
        Some(m.from_kind.as_str()),
        Some(m.from_address.as_str()),
        m.subject.as_deref(),
        Some(m.text.as_str()),
        m.html.as_deref(),
        Some(attachments.as_str()),
        case.as_deref(),
    ];
    for part in parts {
        match part {
            None => h.update([0u8]),
            Some(p) => {
                h.update([1u8]);
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// The row of a key: the first message's ids and the fingerprint (channel, scope, key).
const KEY_ROW_SQL: &str = "SELECT message_id, case_id, customer_id, event_id, fingerprint FROM inbound_keys \
     WHERE channel = ? AND scope = ? AND idem_key = ?";

/// [`repeat_of`] for a row of [`KEY_ROW_SQL`].
fn repeat_of_row(r: &crate::Row, m: &NewInbound, key: &str) -> Result<InboundReceipt, StoreError> {
    let first = InboundReceipt {
        message_id: r.i64(0),
        case_id: r.i64(1),
        customer_id: r.i64(2),
        event_id: r.i64(3),
        created: false,
    };
    repeat_of(first, r.opt_text(4).as_deref(), m, key)
}

/// The answer for a key seen before: its first message's ids, or a conflict if this
/// message is not the same (`stored` is `None` for keys kept before fingerprints existed).
fn repeat_of(
    first: InboundReceipt,
    stored: Option<&str>,
    m: &NewInbound,
    key: &str,
) -> Result<InboundReceipt, StoreError> {
    match stored {
        Some(f) if f != fingerprint(m) => Err(StoreError::IdempotencyConflict(format!(
            "{} {:?} was already used for another message (other sender, subject, text, html, \
             attachments or case_id); use a new key for a new message",
            if key.starts_with("p:") { "provider_message_id" } else { "Idempotency-Key" },
            &key[2..]
        ))),
        _ => Ok(InboundReceipt { created: false, ..first }),
    }
}

/// An event row for a multi-row insert.
struct NewEvent {
    kind: kontor_core::EventKind,
    case_id: Option<i64>,
    customer_id: i64,
    payload: serde_json::Value,
}

/// Appends events with one statement; returns their ids (in order, as `Tx::event` would).
fn insert_events(tx: &mut Tx<'_>, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "INSERT INTO events (kind, case_id, customer_id, payload, created_at) VALUES {} RETURNING id",
        value_rows(events.len(), 5)
    );
    let now = tx.now;
    let p: Vec<Val> = events
        .iter()
        .flat_map(|e| params![e.kind.as_str(), e.case_id, e.customer_id, e.payload.to_string(), now])
        .collect();
    let ids = ids_in_order(&tx.conn.query(&sql, &p)?, events.len())?;
    if let Some(max) = ids.last() {
        tx.note_event(*max);
    }
    Ok(ids)
}

/// `(?, ?, ...), (?, ...)` for `rows` rows of `cols` placeholders.
fn value_rows(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

/// Returned ids must be strictly increasing, i.e. in the order of the VALUES rows.
fn ids_in_order(rows: &[crate::Row], want: usize) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.i64(0)).collect();
    if ids.len() != want || ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(StoreError::Database("multi-row insert returned ids out of order".into()));
    }
    Ok(ids)
}

/// The bulk path of `ingest_in` for messages without an explicit case. Same rules, same
/// events, in the same order per message.
fn ingest_many(
    tx: &mut Tx<'_>,
    items: &[&NewInbound],
    window_us: i64,
) -> Result<Vec<Result<InboundReceipt, StoreError>>, StoreError> {
    let now = tx.now;
    let n = items.len();
    // (channel, scope, key) of each item that has a key.
    type KeyOf = (&'static str, String, String);
    let keys: Vec<Option<KeyOf>> =
        items.iter().map(|m| key_of(m).map(|k| (m.channel.as_str(), m.idempotency_scope.clone(), k))).collect();

    // 1. Keys seen before, and duplicates inside this batch.
    let mut known: HashMap<KeyOf, (InboundReceipt, Option<String>)> = HashMap::new();
    let keyed: Vec<&KeyOf> = keys.iter().flatten().collect();
    if !keyed.is_empty() {
        let sql = format!(
            "SELECT channel, scope, idem_key, message_id, case_id, customer_id, event_id, fingerprint FROM inbound_keys \
             WHERE (channel, scope, idem_key) IN (VALUES {})",
            value_rows(keyed.len(), 3)
        );
        let p: Vec<Val> =
            keyed.iter().flat_map(|(c, s, k)| [Val::from(*c), Val::from(s.as_str()), Val::from(k.as_str())]).collect();
        for r in tx.conn.query(&sql, &p)? {
            let Some(channel) = Channel::parse(&r.text(0)) else { continue };
            known.insert(
                (channel.as_str(), r.text(1), r.text(2)),
                (
                    InboundReceipt {
                        message_id: r.i64(3),
                        case_id: r.i64(4),
                        customer_id: r.i64(5),
                        event_id: r.i64(6),
                        created: false,
                    },
                    r.opt_text(7),
                ),
            );
        }
    }
    // For each item: the index of the first item of this batch with the same key.
    let mut first_with_key: HashMap<&KeyOf, usize> = HashMap::new();
    let mut dup_of: Vec<Option<usize>> = vec![None; n];
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            if known.contains_key(k) {
                continue;
            }
            match first_with_key.get(k) {
                Some(j) => dup_of[i] = Some(*j),
                None => {
                    first_with_key.insert(k, i);
                }
            }
        }
    }
    let is_new = |i: usize| -> bool { dup_of[i].is_none() && keys[i].as_ref().is_none_or(|k| !known.contains_key(k)) };

    // 2. Customers by identity, creating the unknown ones.
    let mut owners: HashMap<(&'static str, String), (i64, bool)> = HashMap::new();
    {
        let mut wanted: Vec<(&'static str, &str)> = (0..n)
            .filter(|i| is_new(*i))
            .map(|i| (items[i].from_kind.as_str(), items[i].from_address.as_str()))
            .collect();
        wanted.sort();
        wanted.dedup();
        if !wanted.is_empty() {
            let sql = format!(
                "SELECT i.kind, i.address, i.customer_id, c.name IS NOT NULL FROM identities i \
                 JOIN customers c ON c.id = i.customer_id WHERE (i.kind, i.address) IN (VALUES {})",
                value_rows(wanted.len(), 2)
            );
            let p: Vec<Val> = wanted.iter().flat_map(|(k, a)| [Val::from(*k), Val::from(*a)]).collect();
            for r in tx.conn.query(&sql, &p)? {
                if let Some(kind) = IdentityKind::parse(&r.text(0)) {
                    owners.insert((kind.as_str(), r.text(1)), (r.i64(2), r.i64(3) != 0));
                }
            }
        }
    }
    // New customers, one row each in order of first appearance, with the first name given.
    let mut new_customers: Vec<(IdentityKind, String, Option<String>)> = Vec::new();
    let mut new_index: HashMap<(&'static str, String), usize> = HashMap::new();
    for i in (0..n).filter(|i| is_new(*i)) {
        let m = items[i];
        let key = (m.from_kind.as_str(), m.from_address.clone());
        if let Some((cid, has_name)) = owners.get(&key).copied() {
            if !has_name && m.name.is_some() {
                // Same rule as the single path: a name fills in a nameless customer.
                find_or_create_customer(tx, m.from_kind, &m.from_address, m.name.as_deref())?;
                owners.insert(key, (cid, true));
            }
            continue;
        }
        match new_index.get(&key) {
            Some(&k) => {
                if new_customers[k].2.is_none() {
                    new_customers[k].2 = m.name.clone();
                }
            }
            None => {
                new_index.insert(key, new_customers.len());
                new_customers.push((m.from_kind, m.from_address.clone(), m.name.clone()));
            }
        }
    }
    if !new_customers.is_empty() {
        let k = new_customers.len();
        let search_text = |name: &Option<String>, address: &str| {
            format!("{} {address}", name.as_deref().unwrap_or("")).trim().to_string()
        };
        let sql = format!(
            "INSERT INTO customers (name, search_text, created_at, updated_at) VALUES {} RETURNING id",
            value_rows(k, 4)
        );
        let p: Vec<Val> = new_customers
            .iter()
            .flat_map(|(_, address, name)| params![name.as_deref(), search_text(name, address), now, now])
            .collect();
        let ids = ids_in_order(&tx.conn.query(&sql, &p)?, k)?;
        let sql = format!(
            "INSERT INTO identities (customer_id, kind, address, created_at) VALUES {} RETURNING id",
            value_rows(k, 4)
        );
        let p: Vec<Val> = new_customers
            .iter()
            .zip(&ids)
            .flat_map(|((kind, address, _), id)| params![*id, kind.as_str(), address.as_str(), now])
            .collect();
        let identity_ids = ids_in_order(&tx.conn.query(&sql, &p)?, k)?;
        if tx.backend() == crate::Backend::Sqlite {
            let sql = format!("INSERT INTO customers_fts (rowid, search_text) VALUES {}", value_rows(k, 2));
            let p: Vec<Val> = new_customers
                .iter()
                .zip(&ids)
                .flat_map(|((_, address, name), id)| params![*id, search_text(name, address)])
                .collect();
            tx.conn.execute(&sql, &p)?;
        }
        // By reference: no name or address in the event (see `crate::events`).
        let events: Vec<NewEvent> = ids
            .iter()
            .zip(&identity_ids)
            .map(|(id, identity_id)| NewEvent {
                kind: kontor_core::EventKind::CustomerCreated,
                case_id: None,
                customer_id: *id,
                payload: json!({ "customer_id": id, "identity_id": identity_id }),
            })
            .collect();
        insert_events(tx, &events)?;
        for ((kind, address, name), id) in new_customers.iter().zip(&ids) {
            owners.insert((kind.as_str(), address.clone()), (*id, name.is_some()));
        }
    }
    let mut customer_of: Vec<i64> = vec![0; n];
    for i in (0..n).filter(|i| is_new(*i)) {
        let key = (items[i].from_kind.as_str(), items[i].from_address.clone());
        customer_of[i] = owners
            .get(&key)
            .map(|(cid, _)| *cid)
            .ok_or_else(|| StoreError::Database("bulk ingest lost a customer".into()))?;
    }

    // 3. Cases: the customers' candidates, then the same choice as the single path. New
    // cases get placeholder ids (negative) until they are inserted together.
    let mut candidates: HashMap<i64, Vec<CaseCandidate>> = HashMap::new();
    {
        let mut cids: Vec<i64> = (0..n).filter(|i| is_new(*i)).map(|i| customer_of[i]).collect();
        cids.sort_unstable();
        cids.dedup();
        if !cids.is_empty() {
            let sql = format!(
                "SELECT id, customer_id, status, updated_at FROM cases WHERE customer_id IN ({}) \
                 AND status IN ('open', 'pending', 'resolved')",
                vec!["?"; cids.len()].join(", ")
            );
            let p: Vec<Val> = cids.iter().map(|c| Val::from(*c)).collect();
            for r in tx.conn.query(&sql, &p)? {
                candidates.entry(r.i64(1)).or_default().push(CaseCandidate {
                    id: r.i64(0),
                    status: CaseStatus::parse(&r.text(2)).unwrap_or(CaseStatus::Open),
                    updated_at_us: r.i64(3),
                });
            }
        }
    }
    let mut case_of: Vec<i64> = vec![0; n];
    let mut new_cases: Vec<usize> = Vec::new(); // the item that opens each new case
    for i in (0..n).filter(|i| is_new(*i)) {
        let cid = customer_of[i];
        let cands = candidates.entry(cid).or_default();
        let case_id = match choose_case(cands, now, window_us) {
            Threading::Append(id) => id,
            Threading::Reopen(id) => {
                reopen(tx, id, cid)?;
                if let Some(c) = cands.iter_mut().find(|c| c.id == id) {
                    c.status = CaseStatus::Open;
                }
                id
            }
            Threading::New => {
                new_cases.push(i);
                let placeholder = -(new_cases.len() as i64);
                cands.push(CaseCandidate { id: placeholder, status: CaseStatus::Open, updated_at_us: now });
                placeholder
            }
        };
        // Later messages of this batch go to the same case.
        if let Some(c) = cands.iter_mut().find(|c| c.id == case_id) {
            c.updated_at_us = now;
        }
        case_of[i] = case_id;
    }
    if !new_cases.is_empty() {
        let sql = format!(
            "INSERT INTO cases (customer_id, subject, status, priority, channel, created_at, updated_at) VALUES {} RETURNING id",
            value_rows(new_cases.len(), 7)
        );
        let p: Vec<Val> = new_cases
            .iter()
            .flat_map(|&i| {
                params![
                    customer_of[i],
                    items[i].subject.as_deref(),
                    "open",
                    "normal",
                    items[i].channel.as_str(),
                    now,
                    now
                ]
            })
            .collect();
        let ids = ids_in_order(&tx.conn.query(&sql, &p)?, new_cases.len())?;
        let created_at = kontor_core::Timestamp::from_micros(now);
        let events: Vec<NewEvent> = new_cases
            .iter()
            .zip(&ids)
            .map(|(&i, id)| {
                let case = Case {
                    id: *id,
                    customer_id: customer_of[i],
                    subject: None,
                    status: CaseStatus::Open,
                    priority: Priority::Normal,
                    assignee_id: None,
                    team_id: None,
                    tags: vec![],
                    channel: items[i].channel,
                    created_at,
                    updated_at: created_at,
                    first_response_at: None,
                    resolved_at: None,
                    last_message_at: None,
                    last_event_id: 0,
                };
                NewEvent {
                    kind: kontor_core::EventKind::CaseCreated,
                    case_id: Some(*id),
                    customer_id: customer_of[i],
                    payload: case_ref(&case),
                }
            })
            .collect();
        insert_events(tx, &events)?;
        for c in case_of.iter_mut().filter(|c| **c < 0) {
            *c = ids[(-*c - 1) as usize];
        }
    }

    // 4. Messages, in one statement.
    let stored: Vec<usize> = (0..n).filter(|i| is_new(*i)).collect();
    let mut messages: Vec<Message> = Vec::with_capacity(stored.len());
    if !stored.is_empty() {
        let sql = format!(
            "INSERT INTO messages (case_id, customer_id, direction, internal, channel, subject, text, html, attachments, \
             provider_message_id, author_id, delivery_state, created_at) VALUES {} RETURNING id",
            value_rows(stored.len(), 13)
        );
        let mut p: Vec<Val> = Vec::with_capacity(stored.len() * 13);
        for &i in &stored {
            let m = items[i];
            let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
            p.extend(params![
                case_of[i],
                customer_of[i],
                "in",
                false,
                m.channel.as_str(),
                m.subject.as_deref(),
                m.text.as_str(),
                m.html.as_deref(),
                attachments,
                m.provider_message_id.as_deref(),
                Val::Null,
                Val::Null,
                now
            ]);
        }
        let ids = ids_in_order(&tx.conn.query(&sql, &p)?, stored.len())?;
        for (&i, id) in stored.iter().zip(ids) {
            let m = items[i];
            messages.push(Message {
                id,
                case_id: case_of[i],
                customer_id: customer_of[i],
                direction: Direction::In,
                internal: false,
                channel: m.channel,
                subject: m.subject.clone(),
                text: m.text.clone(),
                html: m.html.clone(),
                attachments: m.attachments.clone(),
                provider_message_id: m.provider_message_id.clone(),
                author_id: None,
                delivery_state: None,
                delivery_error: None,
                created_at: kontor_core::Timestamp::from_micros(now),
                duration_seconds: None,
            });
        }
        if tx.backend() == crate::Backend::Sqlite {
            let sql =
                format!("INSERT INTO messages_fts (rowid, subject, text) VALUES {}", value_rows(messages.len(), 3));
            let p: Vec<Val> = messages
                .iter()
                .flat_map(|m| params![m.id, m.subject.as_deref().unwrap_or(""), m.text.as_str()])
                .collect();
            tx.conn.execute(&sql, &p)?;
        }
    }

    // 5. Their events, in one statement (ids in order, as `Tx::event` would give them).
    let mut event_of: HashMap<usize, i64> = HashMap::new();
    if !messages.is_empty() {
        let events: Vec<NewEvent> = messages
            .iter()
            .map(|m| NewEvent {
                kind: kontor_core::EventKind::MessageReceived,
                case_id: Some(m.case_id),
                customer_id: m.customer_id,
                payload: message_ref(m),
            })
            .collect();
        let ids = insert_events(tx, &events)?;
        for (&i, id) in stored.iter().zip(ids) {
            event_of.insert(i, id);
        }

        // 6. Each case once: activity time, newest event, subject if it had none.
        let mut per_case: Vec<(i64, i64, Option<String>)> = Vec::new();
        for &i in &stored {
            let ev = event_of.get(&i).copied().unwrap_or(0);
            match per_case.iter_mut().find(|(c, _, _)| *c == case_of[i]) {
                Some(entry) => {
                    entry.1 = entry.1.max(ev);
                    if entry.2.is_none() {
                        entry.2 = items[i].subject.clone();
                    }
                }
                None => per_case.push((case_of[i], ev, items[i].subject.clone())),
            }
        }
        let sql = format!(
            "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = v.ev, subject = COALESCE(cases.subject, v.subj) \
             FROM (SELECT CAST(NULL AS BIGINT) AS cid, CAST(NULL AS BIGINT) AS ev, CAST(NULL AS TEXT) AS subj \
             UNION ALL VALUES {}) AS v WHERE cases.id = v.cid",
            (0..per_case.len()).map(|_| "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT))").collect::<Vec<_>>().join(", ")
        );
        let mut p: Vec<Val> = params![now, now].to_vec();
        for (c, ev, subj) in &per_case {
            p.extend(params![*c, *ev, subj.as_deref()]);
        }
        tx.conn.execute(&sql, &p)?;

        // 7. The keys, so that the same message again is a duplicate.
        let with_key: Vec<usize> = stored.iter().copied().filter(|i| keys[*i].is_some()).collect();
        if !with_key.is_empty() {
            let sql = format!(
                "INSERT INTO inbound_keys (channel, scope, idem_key, fingerprint, message_id, case_id, customer_id, event_id) \
                 VALUES {}",
                value_rows(with_key.len(), 8)
            );
            let mut p: Vec<Val> = Vec::with_capacity(with_key.len() * 8);
            for (&i, m) in stored.iter().zip(&messages) {
                if let Some((channel, scope, k)) = &keys[i] {
                    p.extend(params![
                        *channel,
                        scope.as_str(),
                        k.as_str(),
                        fingerprint(items[i]),
                        m.id,
                        case_of[i],
                        customer_of[i],
                        event_of.get(&i).copied().unwrap_or(0)
                    ]);
                }
            }
            tx.conn.execute(&sql, &p)?;
        }
    }

    // Receipts in request order.
    let mut receipts: Vec<Result<InboundReceipt, StoreError>> = Vec::with_capacity(n);
    let mut by_item: HashMap<usize, InboundReceipt> = HashMap::new();
    for (&i, m) in stored.iter().zip(&messages) {
        by_item.insert(
            i,
            InboundReceipt {
                message_id: m.id,
                case_id: m.case_id,
                customer_id: m.customer_id,
                event_id: event_of.get(&i).copied().unwrap_or(0),
                created: true,
            },
        );
    }
    for i in 0..n {
        let lost = || StoreError::Database("bulk ingest lost a message".into());
        let key = keys[i].as_ref().map(|(_, _, k)| k.as_str()).unwrap_or("");
        let r = if let Some(j) = dup_of[i] {
            let first = by_item.get(&j).copied().ok_or_else(lost)?;
            repeat_of(first, Some(&fingerprint(items[j])), items[i], key)
        } else if let Some(r) = by_item.get(&i) {
            Ok(*r)
        } else {
            let (first, stored) = keys[i].as_ref().and_then(|k| known.get(k)).ok_or_else(lost)?;
            repeat_of(*first, stored.as_deref(), items[i], key)
        };
        receipts.push(r);
    }
    Ok(receipts)
}

fn ingest_in(tx: &mut Tx<'_>, m: &NewInbound, reopen_window_us: i64) -> Result<InboundReceipt, StoreError> {
    let key = key_of(m);
    let channel = m.channel.as_str();
    let scope = m.idempotency_scope.as_str();
    if let Some(key) = &key {
        let claimed = tx.conn.execute(
            "INSERT INTO inbound_keys (channel, scope, idem_key, fingerprint, message_id, case_id, customer_id, event_id) \
             VALUES (?, ?, ?, ?, 0, 0, 0, 0) ON CONFLICT DO NOTHING",
            &params![channel, scope, key.as_str(), fingerprint(m)],
        )?;
        if claimed == 0 {
            let r = tx
                .conn
                .query_opt(KEY_ROW_SQL, &params![channel, scope, key.as_str()])?
                .ok_or_else(|| StoreError::Conflict("duplicate is still being stored".into()))?;
            return repeat_of_row(&r, m, key);
        }
    }

    let (customer_id, _) = find_or_create_customer(tx, m.from_kind, &m.from_address, m.name.as_deref())?;
    let now = tx.now;

    let case_id = thread_case(tx, customer_id, m.case_id, true, m.subject.as_deref(), m.channel, reopen_window_us)?;

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
            duration_seconds: None,
        },
    )?;
    let message_id = message.id;
    let event_id =
        tx.event(kontor_core::EventKind::MessageReceived, Some(case_id), Some(customer_id), &message_ref(&message))?;
    tx.conn.execute(
        "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = ?, subject = COALESCE(subject, ?) WHERE id = ?",
        &params![now, now, event_id, m.subject.as_deref(), case_id],
    )?;
    if let Some(key) = &key {
        tx.conn.execute(
            "UPDATE inbound_keys SET message_id = ?, case_id = ?, customer_id = ?, event_id = ? \
             WHERE channel = ? AND scope = ? AND idem_key = ?",
            &params![message_id, case_id, customer_id, event_id, channel, scope, key.as_str()],
        )?;
    }
    Ok(InboundReceipt { message_id, case_id, customer_id, event_id, created: true })
}

/// Opens a new case for a message and appends `case.created`.
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
            let mut id = requested;
            for _ in 0..16 {
                match crate::cases::merged_into(tx.conn, id)? {
                    Some(target) => id = target,
                    None => break,
                }
            }
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
            match choose_case(&candidates, tx.now, reopen_window_us) {
                Threading::Append(id) => Ok(id),
                Threading::Reopen(id) => {
                    if reopen_case {
                        reopen(tx, id, customer_id)?;
                    }
                    Ok(id)
                }
                Threading::New => new_case(tx, customer_id, subject, channel),
            }
        }
    }
}

fn new_case(tx: &mut Tx<'_>, customer_id: i64, subject: Option<&str>, channel: Channel) -> Result<i64, StoreError> {
    let now = tx.now;
    let id = tx
        .conn
        .query_opt(
            "INSERT INTO cases (customer_id, subject, status, priority, channel, created_at, updated_at) \
             VALUES (?, ?, 'open', 'normal', ?, ?, ?) RETURNING id",
            &params![customer_id, subject, channel.as_str(), now, now],
        )?
        .map(|r| r.i64(0))
        .ok_or_else(|| StoreError::Database("case insert returned no id".into()))?;
    let case = load_case(tx.conn, id)?;
    tx.event(kontor_core::EventKind::CaseCreated, Some(id), Some(customer_id), &case_ref(&case))?;
    Ok(id)
}

fn reopen(tx: &mut Tx<'_>, case_id: i64, customer_id: i64) -> Result<(), StoreError> {
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
    /// Length of a recorded phone call.
    pub duration_seconds: Option<i64>,
}

/// Inserts a message and indexes it for search; returns it as stored.
pub(crate) fn insert_message(tx: &mut Tx<'_>, m: &MessageRow<'_>) -> Result<Message, StoreError> {
    let attachments = serde_json::to_string(m.attachments).unwrap_or_else(|_| "[]".into());
    let id = tx
        .conn
        .query_opt(
            "INSERT INTO messages (case_id, customer_id, direction, internal, channel, subject, text, html, attachments, \
             provider_message_id, author_id, delivery_state, created_at, duration_seconds) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
                tx.now,
                m.duration_seconds
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
    let attachments =
        if m.attachments.is_empty() { Vec::new() } else { crate::messages::insert_attachments(tx, id, m.attachments)? };
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
        attachments,
        provider_message_id: m.provider_message_id.map(str::to_string),
        author_id: m.author_id,
        delivery_state: m.delivery_state.and_then(DeliveryState::parse),
        delivery_error: None,
        created_at: kontor_core::Timestamp::from_micros(tx.now),
        duration_seconds: m.duration_seconds,
    })
}
