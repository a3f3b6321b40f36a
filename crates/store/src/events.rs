//! The event log: what an event row stores, and how events are rendered for clients.
//!
//! Event rows hold references, not content: a message event stores the message's id and the
//! few fields a client needs to decide whether to fetch it (`message_id`, `case_id`,
//! `customer_id`, `channel`, `direction`), a customer event the customer's id, a staff event
//! the user's id. Names, addresses, subjects and message text stay in their own tables, so an
//! erased message is gone once its row is. Readers get events *rendered*: the current
//! message, case, customer or user is put back under `payload.message`, `payload.case`,
//! `payload.customer`, `payload.user` at read time (`null` when it no longer exists), loaded
//! with one query per kind for a whole page of events.

use std::collections::{HashMap, HashSet};

use kontor_core::{Case, Customer, Event, Message, StaffUser};
use serde_json::{json, Value};

use crate::db::{Conn, Row, Val};
use crate::records::{case_from_row, CASE_COLS};
use crate::records::{customer_from_row, identity_from_row, CUSTOMER_COLS};
use crate::records::{message_from_row, MESSAGE_COLS};
use crate::records::{user_from_row, USER_COLS};
use crate::{params, Store, StoreError};

/// Event kinds whose payload refers to one message (`message_id`).
pub const MESSAGE_EVENT_KINDS: &[kontor_core::EventKind] = kontor_core::EventKind::MESSAGES;

/// Who may see an event in the event API and on a live stream (the rule of
/// `Store::case_visible_to` and `Store::customer_visible_to`, decided from what the event
/// carries instead of a query per reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Only unrestricted readers (admins, API tokens): staff, token, team and settings
    /// events, and events of a case that no longer exists.
    Unrestricted,
    /// Restricted staff users who belong to one of these teams; `None` stands for a case
    /// without a team, which every staff user sees. Empty: nobody restricted.
    Teams(Vec<Option<i64>>),
}

impl Audience {
    /// True if a restricted staff user who belongs to `teams` may see the event.
    pub fn admits(&self, teams: &HashSet<i64>) -> bool {
        match self {
            Audience::Unrestricted => false,
            Audience::Teams(t) => t.iter().any(|team| team.is_none_or(|id| teams.contains(&id))),
        }
    }
}

/// An event rendered for clients, with who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// The event as the API and the stream show it.
    pub event: Event,
    /// Who may see it, as of the moment it was read.
    pub audience: Audience,
}

/// The stored payload of a message event: ids and the fields a client needs to decide
/// whether to fetch the message, never its text.
pub(crate) fn message_ref(m: &Message) -> Value {
    json!({
        "message_id": m.id,
        "case_id": m.case_id,
        "customer_id": m.customer_id,
        "channel": m.channel,
        "direction": m.direction,
        "internal": m.internal,
    })
}

/// The stored payload of `case.created`: ids and non-personal fields, never the subject.
pub(crate) fn case_ref(case: &Case) -> Value {
    json!({
        "case_id": case.id,
        "customer_id": case.customer_id,
        "channel": case.channel,
        "status": case.status,
        "priority": case.priority,
    })
}

/// An object an event refers to, if its row can be read. A corrupt row is logged and left
/// out (the event shows `null` for it, and an event of a case that cannot be read is for
/// unrestricted readers only): one bad row must not stop every event stream on the node.
fn readable<T>(row: Result<T, StoreError>) -> Option<T> {
    match row {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "An event refers to a row that cannot be read; it is left out.");
            None
        }
    }
}

/// The message id an event refers to (stored by reference, or, in rows written before
/// events were stored by reference, inside the embedded message).
pub fn event_message_id(kind: &str, payload: &Value) -> Option<i64> {
    if !kontor_core::EventKind::parse(kind).is_some_and(|k| MESSAGE_EVENT_KINDS.contains(&k)) {
        return None;
    }
    payload.get("message_id").and_then(Value::as_i64).or_else(|| payload.pointer("/message/id").and_then(Value::as_i64))
}

const EVENT_COLS: &str = "id, kind, case_id, customer_id, payload, created_at";

fn event_from_row(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: r.req_i64(0, "events.id")?,
        kind: r.req_text(1, "events.kind")?,
        case_id: r.opt_i64(2),
        customer_id: r.opt_i64(3),
        payload: serde_json::from_str(&r.req_text(4, "events.payload")?)
            .map_err(|e| StoreError::Corrupt(format!("events.payload is not JSON: {e}")))?,
        created_at: r.req_ts(5, "events.created_at")?,
    })
}

/// Events as stored (payloads by reference), for code inside the store.
pub(crate) fn events_from_rows(rows: &[Row]) -> Result<Vec<Event>, StoreError> {
    rows.iter().map(event_from_row).collect()
}

/// `?, ?, ?` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Rows of `SELECT {cols} FROM {table} WHERE {key} IN (ids)`, in chunks that stay within
/// both backends' parameter limits (one query for a page of events).
fn rows_with_ids(c: &mut Conn, sql_head: &str, ids: &HashSet<i64>) -> Result<Vec<Row>, StoreError> {
    let ids: Vec<i64> = ids.iter().copied().collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(1000) {
        let p: Vec<Val> = chunk.iter().map(|id| Val::Int(*id)).collect();
        out.extend(c.query(&format!("{sql_head} ({})", marks(chunk.len())), &p)?);
    }
    Ok(out)
}

fn set_field(payload: &mut Value, key: &str, value: Value) {
    if !payload.is_object() {
        *payload = json!({});
    }
    if let Some(map) = payload.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// Renders stored events for clients: one query each for the messages, cases, customers
/// (with identities and the teams of their cases) and users the page refers to.
pub(crate) fn render(c: &mut Conn, rows: &[Row]) -> Result<Vec<ClientEvent>, StoreError> {
    let raw = events_from_rows(rows)?;
    let mut message_ids = HashSet::new();
    let mut case_ids = HashSet::new();
    let mut customer_ids = HashSet::new();
    let mut user_ids = HashSet::new();
    for e in &raw {
        if let Some(id) = event_message_id(&e.kind, &e.payload) {
            message_ids.insert(id);
        }
        if e.kind == kontor_core::EventKind::MessageDelivery.as_str() {
            if let Some(id) = e.payload.get("message_id").and_then(Value::as_i64) {
                message_ids.insert(id);
            }
        }
        if let Some(id) = e.case_id {
            case_ids.insert(id);
        } else if let Some(id) = e.customer_id {
            customer_ids.insert(id);
        }
        if matches!(e.kind.as_str(), "user.created" | "user.updated") {
            if let Some(id) = e.payload.get("user_id").or_else(|| e.payload.pointer("/user/id")).and_then(Value::as_i64)
            {
                user_ids.insert(id);
            }
        }
    }

    let mut messages: HashMap<i64, Message> = HashMap::new();
    if !message_ids.is_empty() {
        let head = format!("SELECT {MESSAGE_COLS} FROM messages WHERE id IN");
        for r in rows_with_ids(c, &head, &message_ids)? {
            if let Some(m) = readable(message_from_row(&r)) {
                messages.insert(m.id, m);
            }
        }
    }
    let mut cases: HashMap<i64, Case> = HashMap::new();
    if !case_ids.is_empty() {
        let head = format!("SELECT {CASE_COLS} FROM cases WHERE id IN");
        for r in rows_with_ids(c, &head, &case_ids)? {
            if let Some(case) = readable(case_from_row(&r)) {
                cases.insert(case.id, case);
            }
        }
    }
    let mut customers: HashMap<i64, Customer> = HashMap::new();
    let mut customer_teams: HashMap<i64, Vec<Option<i64>>> = HashMap::new();
    if !customer_ids.is_empty() {
        let head = format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id IN");
        for r in rows_with_ids(c, &head, &customer_ids)? {
            if let Some(customer) = readable(customer_from_row(&r)) {
                customers.insert(customer.id, customer);
            }
        }
        let head = "SELECT id, customer_id, kind, address, created_at FROM identities WHERE customer_id IN";
        let mut identities: Vec<_> =
            rows_with_ids(c, head, &customer_ids)?.iter().filter_map(|r| readable(identity_from_row(r))).collect();
        identities.sort_by_key(|i| i.id);
        for identity in identities {
            if let Some(customer) = customers.get_mut(&identity.customer_id) {
                customer.identities.push(identity);
            }
        }
        // A restricted user sees a customer with an unmerged case they may see.
        let head = "SELECT DISTINCT customer_id, team_id FROM cases WHERE merged_into IS NULL AND customer_id IN";
        for r in rows_with_ids(c, head, &customer_ids)? {
            customer_teams.entry(r.req_i64(0, "cases.customer_id")?).or_default().push(r.opt_i64(1));
        }
    }
    let mut users: HashMap<i64, StaffUser> = HashMap::new();
    if !user_ids.is_empty() {
        let head = format!("SELECT {USER_COLS} FROM users WHERE id IN");
        for r in rows_with_ids(c, &head, &user_ids)? {
            if let Some(u) = readable(user_from_row(&r)) {
                users.insert(u.id, u);
            }
        }
    }

    let mut out = Vec::with_capacity(raw.len());
    for mut event in raw {
        if let Some(id) = event_message_id(&event.kind, &event.payload) {
            // Only while the message is still in the event's case: a merge moves messages into
            // another case, which may be hidden from those who may see this event's case.
            let m = messages
                .get(&id)
                .filter(|m| event.case_id.is_none_or(|c| c == m.case_id))
                .map(|m| json!(m))
                .unwrap_or(Value::Null);
            set_field(&mut event.payload, "message", m);
        }
        match event.kind.as_str() {
            // The reason as the message holds it now (events store no provider text); rows
            // from before this change keep the text they stored.
            "message.delivery"
                if event.payload.get("state").and_then(Value::as_str) == Some("failed")
                    && event.payload.get("error").is_none() =>
            {
                let id = event.payload.get("message_id").and_then(Value::as_i64);
                let error = id.and_then(|id| messages.get(&id)).and_then(|m| m.delivery_error.clone());
                set_field(&mut event.payload, "error", json!(error));
            }
            "case.created" => {
                let case = event.case_id.and_then(|id| cases.get(&id)).map(|c| json!(c)).unwrap_or(Value::Null);
                set_field(&mut event.payload, "case", case);
            }
            "case.updated" if event.payload.get("subject_changed").is_some() => {
                let subject = event.case_id.and_then(|id| cases.get(&id)).map(|c| json!(c.subject));
                if let Some(changes) = event.payload.get_mut("changes").and_then(Value::as_object_mut) {
                    changes.insert("subject".into(), subject.unwrap_or(Value::Null));
                }
            }
            "customer.created" | "customer.updated" | "customer.merged" => {
                let customer =
                    event.customer_id.and_then(|id| customers.get(&id)).map(|c| json!(c)).unwrap_or(Value::Null);
                set_field(&mut event.payload, "customer", customer);
            }
            "user.created" | "user.updated" => {
                let id =
                    event.payload.get("user_id").or_else(|| event.payload.pointer("/user/id")).and_then(Value::as_i64);
                let user = id.and_then(|id| users.get(&id)).map(|u| json!(u)).unwrap_or(Value::Null);
                set_field(&mut event.payload, "user", user);
            }
            _ => {}
        }
        let audience = match (event.case_id, event.customer_id) {
            (Some(id), _) => match cases.get(&id) {
                Some(case) => Audience::Teams(vec![case.team_id]),
                None => Audience::Unrestricted,
            },
            (None, Some(id)) => Audience::Teams(customer_teams.get(&id).cloned().unwrap_or_default()),
            (None, None) => Audience::Unrestricted,
        };
        out.push(ClientEvent { event, audience });
    }
    Ok(out)
}

impl Store {
    /// Events with id greater than `after`, oldest first, at most `limit` (1..=1000),
    /// rendered for clients (see the module documentation).
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        Ok(self.client_events_after(after, limit).await?.into_iter().map(|e| e.event).collect())
    }

    /// Like [`Store::events_after`], with each event's audience (for the event API and the
    /// live stream, which decide visibility without a query per reader).
    pub async fn client_events_after(&self, after: i64, limit: i64) -> Result<Vec<ClientEvent>, StoreError> {
        self.read(move |c| {
            let rows = c.query(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id > ? ORDER BY id LIMIT ?"),
                &params![after, limit.clamp(1, 1000)],
            )?;
            render(c, &rows)
        })
        .await
    }

    /// Events with id greater than `after` as stored (payloads by reference, nothing
    /// rendered), oldest first, at most `limit` (1..=1000): the log itself, for audits.
    pub async fn stored_events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| {
            let rows = c.query(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id > ? ORDER BY id LIMIT ?"),
                &params![after, limit.clamp(1, 1000)],
            )?;
            events_from_rows(&rows)
        })
        .await
    }

    /// The newest event id in the database.
    pub async fn max_event_id(&self) -> Result<i64, StoreError> {
        self.read(max_event_id).await
    }

    /// A staff user's role and teams as they are now, if the session is valid: what a live
    /// stream opened with that session may show. One read for both.
    pub async fn session_viewer(&self, session: &str) -> Result<Option<SessionViewer>, StoreError> {
        let hash = crate::staff::token_hash(session);
        self.read(move |c| {
            // One query: the user, with one row per team (or one row with no team).
            let rows = c.query(
                "SELECT u.id, u.role, tm.team_id FROM sessions s JOIN users u ON u.id = s.user_id \
                 LEFT JOIN team_members tm ON tm.user_id = u.id \
                 WHERE s.id = ? AND s.expires_at > ? AND u.active = 1",
                &params![hash, crate::now_us()],
            )?;
            let Some(first) = rows.first() else { return Ok(None) };
            let user_id = first.req_i64(0, "users.id")?;
            let role = first.req_enum(1, "users.role", kontor_core::Role::parse)?;
            let teams = rows.iter().filter_map(|r| r.opt_i64(2)).collect();
            Ok(Some(SessionViewer { user_id, role, teams }))
        })
        .await
    }
}

/// The newest event id in the database (0 for none).
pub(crate) fn max_event_id(c: &mut Conn) -> Result<i64, StoreError> {
    match c.query_opt("SELECT COALESCE(MAX(id), 0) FROM events", &[])? {
        Some(r) => r.req_i64(0, "MAX(events.id)"),
        None => Ok(0),
    }
}

/// A signed-in staff user as a live stream needs them: role and teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionViewer {
    /// The staff user.
    pub user_id: i64,
    /// Their role now.
    pub role: kontor_core::Role,
    /// The teams they belong to now.
    pub teams: HashSet<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_admits_by_team_or_unteamed_case() {
        let mine: HashSet<i64> = [1, 2].into();
        let table: &[(Audience, bool)] = &[
            (Audience::Unrestricted, false),
            (Audience::Teams(vec![]), false),
            (Audience::Teams(vec![None]), true),
            (Audience::Teams(vec![Some(1)]), true),
            (Audience::Teams(vec![Some(3)]), false),
            (Audience::Teams(vec![Some(3), Some(2)]), true),
            (Audience::Teams(vec![Some(3), None]), true),
        ];
        for (audience, admitted) in table {
            assert_eq!(audience.admits(&mine), *admitted, "{audience:?}");
        }
    }

    #[test]
    fn message_id_is_read_from_references_and_from_old_embedded_messages() {
        let table: &[(&str, Value, Option<i64>)] = &[
            ("message.received", json!({ "message_id": 7 }), Some(7)),
            ("note.added", json!({ "message": { "id": 8, "text": "alt" } }), Some(8)),
            ("message.delivery", json!({ "message_id": 9 }), None),
            ("case.created", json!({ "case_id": 1 }), None),
        ];
        for (kind, payload, want) in table {
            assert_eq!(event_message_id(kind, payload), *want, "{kind} {payload}");
        }
    }
}
