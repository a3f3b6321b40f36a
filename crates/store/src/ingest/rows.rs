//! The rows a stored message writes — customer and identity, case, message and its search
//! entry, events, case activity — each built in one place and written by the same SQL
//! whether one message is stored or a batch of them: every function here takes a slice and
//! writes it with one multi-row statement per table. The single path (`super::single`) passes
//! one row, the bulk path (`super::bulk`) many.

use kontor_core::{Attachment, Case, CaseStatus, Channel, DeliveryState, Direction, IdentityKind, Message, Priority};
use serde_json::json;

use crate::events::case_ref;
use crate::writer::Tx;
use crate::{params, Backend, StoreError, Val};

/// A table and the columns a new row fills, in order.
pub(super) struct Table {
    name: &'static str,
    cols: &'static [&'static str],
}

const CUSTOMERS: Table = Table { name: "customers", cols: &["name", "search_text", "created_at", "updated_at"] };
const IDENTITIES: Table = Table { name: "identities", cols: &["customer_id", "kind", "address", "created_at"] };
const CUSTOMERS_FTS: Table = Table { name: "customers_fts", cols: &["rowid", "search_text"] };
const CASES: Table = Table {
    name: "cases",
    cols: &["customer_id", "subject", "status", "priority", "channel", "created_at", "updated_at"],
};
const MESSAGES: Table = Table {
    name: "messages",
    cols: &[
        "case_id",
        "customer_id",
        "direction",
        "internal",
        "channel",
        "subject",
        "text",
        "html",
        "attachments",
        "provider_message_id",
        "author_id",
        "delivery_state",
        "created_at",
        "duration_seconds",
        "auto_submitted",
        "raw_blob_id",
        "cc",
        "recipients",
    ],
};
const MESSAGE_SOURCES: Table = Table { name: "message_sources", cols: &["message_id", "sealed"] };
const MESSAGES_FTS: Table = Table { name: "messages_fts", cols: &["rowid", "subject", "text"] };
const EVENTS: Table = Table { name: "events", cols: &["kind", "case_id", "customer_id", "payload", "created_at"] };
pub(super) const INBOUND_KEYS: Table = Table {
    name: "inbound_keys",
    cols: &["channel", "scope", "idem_key", "fingerprint", "message_id", "case_id", "customer_id", "event_id"],
};

impl Table {
    /// `INSERT INTO <table> (<cols>) VALUES (?, …), …` for `rows` rows.
    fn sql(&self, rows: usize) -> String {
        format!("INSERT INTO {} ({}) VALUES {}", self.name, self.cols.join(", "), value_rows(rows, self.cols.len()))
    }

    /// The number of rows in `values` (a whole number of rows, or an error).
    fn rows(&self, values: &[Val]) -> Result<usize, StoreError> {
        let width = self.cols.len();
        if !values.len().is_multiple_of(width) {
            return Err(StoreError::Database(format!(
                "{} values for {} columns of {}",
                values.len(),
                width,
                self.name
            )));
        }
        Ok(values.len() / width)
    }

    /// Inserts the rows in one statement.
    pub(super) fn insert(&self, tx: &mut Tx<'_>, values: &[Val]) -> Result<(), StoreError> {
        let rows = self.rows(values)?;
        if rows > 0 {
            tx.conn.execute(&self.sql(rows), values)?;
        }
        Ok(())
    }

    /// Inserts the rows in one statement, skipping those that conflict with a unique key;
    /// returns how many were inserted.
    pub(super) fn insert_new(&self, tx: &mut Tx<'_>, values: &[Val]) -> Result<u64, StoreError> {
        let rows = self.rows(values)?;
        if rows == 0 {
            return Ok(0);
        }
        tx.conn.execute(&format!("{} ON CONFLICT DO NOTHING", self.sql(rows)), values)
    }

    /// Inserts the rows in one statement; returns their new ids in the order of the rows.
    fn insert_returning(&self, tx: &mut Tx<'_>, values: &[Val]) -> Result<Vec<i64>, StoreError> {
        let rows = self.rows(values)?;
        if rows == 0 {
            return Ok(vec![]);
        }
        let found = tx.conn.query(&format!("{} RETURNING id", self.sql(rows)), values)?;
        let ids = found.iter().map(|r| r.req_i64(0, "RETURNING id")).collect::<Result<Vec<_>, _>>()?;
        // Ids must be strictly increasing, i.e. in the order of the VALUES rows.
        if ids.len() != rows || ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StoreError::Database(format!("multi-row insert into {} returned ids out of order", self.name)));
        }
        Ok(ids)
    }
}

/// `(?, ?, ...), (?, ...)` for `rows` rows of `cols` placeholders.
pub(crate) fn value_rows(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

/// A customer to create with its first identity.
pub(super) struct NewCustomer<'a> {
    pub kind: IdentityKind,
    pub address: &'a str,
    pub name: Option<&'a str>,
}

/// The text by which a new customer is found (name and address).
fn customer_search_text(name: Option<&str>, address: &str) -> String {
    format!("{} {address}", name.unwrap_or("")).trim().to_string()
}

/// Creates customers, each with one identity and its search entry, and appends a
/// `customer.created` event for each (by reference: no name or address in it, see
/// `crate::events`). Returns the customers' ids in order.
pub(super) fn create_customers(tx: &mut Tx<'_>, new: &[NewCustomer<'_>]) -> Result<Vec<i64>, StoreError> {
    let now = tx.now;
    let p: Vec<Val> =
        new.iter().flat_map(|c| params![c.name, customer_search_text(c.name, c.address), now, now]).collect();
    let ids = CUSTOMERS.insert_returning(tx, &p)?;
    let p: Vec<Val> = new.iter().zip(&ids).flat_map(|(c, id)| params![*id, c.kind.as_str(), c.address, now]).collect();
    let identity_ids = IDENTITIES.insert_returning(tx, &p)?;
    if tx.backend() == Backend::Sqlite {
        let p: Vec<Val> =
            new.iter().zip(&ids).flat_map(|(c, id)| params![*id, customer_search_text(c.name, c.address)]).collect();
        CUSTOMERS_FTS.insert(tx, &p)?;
    }
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
    Ok(ids)
}

/// A case to open for a message.
pub(super) struct NewCase<'a> {
    pub customer_id: i64,
    pub subject: Option<&'a str>,
    pub channel: Channel,
}

/// Opens cases (open, normal priority) and appends `case.created` for each; returns their ids
/// in order.
pub(super) fn create_cases(tx: &mut Tx<'_>, new: &[NewCase<'_>]) -> Result<Vec<i64>, StoreError> {
    let now = tx.now;
    let p: Vec<Val> = new
        .iter()
        .flat_map(|c| {
            params![
                c.customer_id,
                c.subject,
                CaseStatus::Open.as_str(),
                Priority::Normal.as_str(),
                c.channel.as_str(),
                now,
                now
            ]
        })
        .collect();
    let ids = CASES.insert_returning(tx, &p)?;
    let events: Vec<NewEvent> = new
        .iter()
        .zip(&ids)
        .map(|(c, id)| {
            let case = new_case_value(*id, c, now);
            NewEvent {
                kind: kontor_core::EventKind::CaseCreated,
                case_id: Some(*id),
                customer_id: c.customer_id,
                payload: case_ref(&case),
            }
        })
        .collect();
    insert_events(tx, &events)?;
    Ok(ids)
}

/// A case as [`create_cases`] stores it.
fn new_case_value(id: i64, c: &NewCase<'_>, now: i64) -> Case {
    let at = kontor_core::Timestamp::from_micros(now);
    Case {
        id,
        customer_id: c.customer_id,
        subject: c.subject.map(str::to_string),
        status: CaseStatus::Open,
        priority: Priority::Normal,
        assignee_id: None,
        team_id: None,
        tags: vec![],
        channel: c.channel,
        created_at: at,
        updated_at: at,
        first_response_at: None,
        resolved_at: None,
        last_message_at: None,
        last_event_id: 0,
        intent: None,
        intent_source: None,
        approval_rule: None,
        alert: None,
    }
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
    /// Sent by a machine (e-mail auto-replies, list mail).
    pub auto_submitted: bool,
    /// The raw source in the blob store (received e-mail).
    pub raw_blob_id: Option<&'a str>,
    /// The raw source sealed, kept in `message_sources` (small received mails).
    pub raw_sealed: Option<&'a [u8]>,
    /// Further recipients (e-mail `Cc`).
    pub cc: &'a [String],
    /// The recipients a received mail named (`To`).
    pub to: &'a [String],
}

impl<'a> MessageRow<'a> {
    /// The row of an inbound message, threaded into `case_id` of `customer_id`.
    pub(super) fn inbound(m: &'a kontor_channel::InboundMessage, case_id: i64, customer_id: i64) -> Self {
        MessageRow {
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
            auto_submitted: m.auto_submitted,
            raw_blob_id: match &m.raw_source {
                Some(kontor_channel::RawSource::Stored(id)) => Some(id.as_str()),
                Some(kontor_channel::RawSource::Sealed { id, .. }) => Some(id.as_str()),
                _ => None,
            },
            raw_sealed: match &m.raw_source {
                Some(kontor_channel::RawSource::Sealed { bytes, .. }) => Some(&bytes[..]),
                _ => None,
            },
            cc: &m.cc,
            to: &m.to,
        }
    }
}

/// Inserts messages and their search entries; returns them as stored, in order. Attachment
/// rows are the caller's (only the single path stores messages with attachment bytes).
pub(super) fn insert_messages(tx: &mut Tx<'_>, rows: &[MessageRow<'_>]) -> Result<Vec<Message>, StoreError> {
    let now = tx.now;
    let mut p: Vec<Val> = Vec::with_capacity(rows.len() * MESSAGES.cols.len());
    for m in rows {
        let attachments = serde_json::to_string(m.attachments).unwrap_or_else(|_| "[]".into());
        p.extend(params![
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
            now,
            m.duration_seconds,
            m.auto_submitted,
            m.raw_blob_id,
            serde_json::to_string(m.cc).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(m.to).unwrap_or_else(|_| "[]".into())
        ]);
    }
    let ids = MESSAGES.insert_returning(tx, &p)?;
    // Small raw sources, sealed, in the same transaction as their messages.
    let sources: Vec<Val> =
        rows.iter().zip(&ids).filter_map(|(m, id)| m.raw_sealed.map(|s| params![*id, s.to_vec()])).flatten().collect();
    if !sources.is_empty() {
        MESSAGE_SOURCES.insert(tx, &sources)?;
    }
    if tx.backend() == Backend::Sqlite {
        let p: Vec<Val> =
            rows.iter().zip(&ids).flat_map(|(m, id)| params![*id, m.subject.unwrap_or(""), m.text]).collect();
        MESSAGES_FTS.insert(tx, &p)?;
    }
    Ok(rows.iter().zip(ids).map(|(m, id)| stored_message(id, m, now)).collect())
}

/// A message as [`insert_messages`] stores it.
fn stored_message(id: i64, m: &MessageRow<'_>, now: i64) -> Message {
    Message {
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
        created_at: kontor_core::Timestamp::from_micros(now),
        duration_seconds: m.duration_seconds,
        auto_submitted: m.auto_submitted,
        has_raw_source: m.raw_blob_id.is_some(),
        automatic: false,
        analysis: None,
        raw_blob_id: m.raw_blob_id.map(str::to_string),
        cc: m.cc.to_vec(),
        to: m.to.to_vec(),
    }
}

/// An event row.
pub(crate) struct NewEvent {
    pub kind: kontor_core::EventKind,
    pub case_id: Option<i64>,
    pub customer_id: i64,
    pub payload: serde_json::Value,
}

/// Appends events with one statement; returns their ids (in order, as `Tx::event` would).
pub(crate) fn insert_events(tx: &mut Tx<'_>, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
    let now = tx.now;
    let p: Vec<Val> = events
        .iter()
        .flat_map(|e| params![e.kind.as_str(), e.case_id, e.customer_id, e.payload.to_string(), now])
        .collect();
    tx.take_event_lock()?;
    let ids = EVENTS.insert_returning(tx, &p)?;
    if let Some(max) = ids.last() {
        tx.note_event(*max);
    }
    Ok(ids)
}

/// A case that got a new inbound message: its newest event, and a subject for it if it has none.
pub(super) struct CaseActivity<'a> {
    pub case_id: i64,
    pub event_id: i64,
    pub subject: Option<&'a str>,
}

/// Marks cases as active now (updated, last message, newest event, subject if missing), each
/// once, with one statement.
pub(super) fn touch_cases(tx: &mut Tx<'_>, cases: &[CaseActivity<'_>]) -> Result<(), StoreError> {
    if cases.is_empty() {
        return Ok(());
    }
    // The first row types the columns (PostgreSQL infers VALUES types from it).
    let sql = format!(
        "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = v.ev, subject = COALESCE(cases.subject, v.subj) \
         FROM (SELECT CAST(NULL AS BIGINT) AS cid, CAST(NULL AS BIGINT) AS ev, CAST(NULL AS TEXT) AS subj \
         UNION ALL VALUES {}) AS v WHERE cases.id = v.cid",
        vec!["(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT))"; cases.len()].join(", ")
    );
    let mut p: Vec<Val> = params![tx.now, tx.now].to_vec();
    for c in cases {
        p.extend(params![c.case_id, c.event_id, c.subject]);
    }
    tx.conn.execute(&sql, &p)?;
    Ok(())
}
