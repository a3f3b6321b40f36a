//! Cases: listing, details, changes, internal notes and replies with collision control.

use kontor_core::{
    Attachment, Case, CaseId, CaseStatus, Channel, Customer, Direction, Event, Message, Priority, UserId,
};
use serde_json::{json, Value};

mod inbox;
mod merge;

pub use inbox::CaseSummary;
pub use merge::RelatedCase;

use crate::db::Conn;
use crate::events::{events_from_rows, message_ref};
use crate::ingest::{insert_message, MessageRow};
use crate::jobs::enqueue_job;
use crate::messages::DeliverMessage;
use crate::records::load_customer;
use crate::records::{case_from_row, load_case, merged_into, CASE_COLS, VISIBLE_TO_SQL};
use crate::records::{load_message, message_from_row, MESSAGE_COLS};
use crate::writer::Tx;
use crate::Page;
use crate::{params, Backend, Store, StoreError, Val};

/// A case with its customer and all its messages in order.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: Case,
    pub customer: Customer,
    pub messages: Vec<Message>,
}

/// Filters for listing cases; all optional. Cases merged into another case are never listed.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub assignee_id: Option<i64>,
    /// Only cases nobody is assigned to.
    pub unassigned: bool,
    pub team_id: Option<i64>,
    /// Cases with at least one message on this channel.
    pub channel: Option<Channel>,
    pub customer_id: Option<i64>,
    /// Cases carrying this tag (exact match; surrounding spaces are ignored).
    pub tag: Option<String>,
    /// Only cases this staff user may see: cases without a team and cases of the user's
    /// teams. An admin's id (or `None`) shows every case.
    pub visible_to: Option<UserId>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    pub limit: i64,
}

/// Changes to a case; `None` leaves a field as it is. `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct CasePatch {
    pub status: Option<CaseStatus>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<Option<i64>>,
    pub team_id: Option<Option<i64>>,
    pub tags: Option<Vec<String>>,
    pub subject: Option<String>,
}

/// A reply written by an agent.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub text: String,
    /// The newest event the agent had seen when writing.
    pub based_on_event_id: i64,
    /// Send even if the case changed since `based_on_event_id`.
    pub force: bool,
    /// Channel to answer on; default: the channel of the customer's latest message.
    pub channel: Option<Channel>,
    pub author_id: Option<UserId>,
    /// Refuse unless the author is the case's assignee (or the case has none): the
    /// "only the assignee may reply" setting, checked inside the transaction.
    pub only_assignee: bool,
    /// Files sent with the reply (their bytes already in the blob store).
    pub attachments: Vec<Attachment>,
    /// The subject (e-mail); default: the case's.
    pub subject: Option<String>,
    /// Further recipients (e-mail `Cc`), normalised addresses.
    pub cc: Vec<String>,
    /// Channels whose replies are public (social posts, reviews): a reply on one is held
    /// for four-eyes approval, as is every reply in a case a rule marked so.
    pub public_channels: Vec<Channel>,
}

/// What became of a reply.
#[derive(Debug, Clone)]
pub enum ReplyOutcome {
    /// Stored and queued for delivery.
    Queued { message_id: i64, event_id: i64, job_id: i64, channel: Channel },
    /// Stored and held until a second staff user approves it (four-eyes).
    Held { message_id: i64, event_id: i64, approval_id: i64, channel: Channel },
    /// The case changed since the agent's view; nothing was stored.
    Stale { events: Vec<Event>, messages: Vec<Message> },
}

/// Event kinds that make a reply written earlier stale: a new message of any kind, and a merge.
fn conversation_events() -> impl Iterator<Item = kontor_core::EventKind> {
    kontor_core::EventKind::MESSAGES.iter().copied().chain([kontor_core::EventKind::CaseMerged])
}

/// At most this many messages moved in by a merge are shown with a stale reply.
const STALE_MERGED_MESSAGES: usize = 50;

/// Reads a cursor: two integers of up to 18 digits (so they fit), joined by `_` (the
/// pattern the OpenAPI document states for `cursor`).
fn decode_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (a, b) = cursor.split_once('_')?;
    let number = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(a)?, number(b)?))
}

impl Store {
    /// One case with customer and messages (internal notes included, in order).
    pub async fn case_detail(&self, id: i64) -> Result<CaseDetail, StoreError> {
        self.read(move |c| {
            let case = load_case(c, id)?;
            let customer = load_customer(c, case.customer_id)?;
            let mut messages: Vec<Message> = c
                .query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE case_id = ? ORDER BY id"), &params![id])?
                .iter()
                .map(message_from_row)
                .collect::<Result<_, _>>()?;
            crate::assist::attach_analyses(c, id, &mut messages)?;
            Ok(CaseDetail { case, customer, messages })
        })
        .await
    }

    /// Cases, most recently changed first, without those merged into another case.
    pub async fn list_cases(&self, f: CaseFilter) -> Result<Page<Case>, StoreError> {
        let cursor = match f.cursor.as_deref() {
            Some(s) => {
                Some(decode_cursor(s).ok_or_else(|| StoreError::invalid("cursor", "not a cursor from this API"))?)
            }
            None => None,
        };
        let tag = f.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        self.read(move |c| {
            let limit = f.limit.clamp(1, 200);
            let mut sql = format!("SELECT {CASE_COLS} FROM cases WHERE merged_into IS NULL");
            let mut p: Vec<Val> = Vec::new();
            if let Some(s) = f.status {
                sql.push_str(" AND status = ?");
                p.push(s.as_str().into());
            }
            if let Some(a) = f.assignee_id {
                sql.push_str(" AND assignee_id = ?");
                p.push(a.into());
            }
            if f.unassigned {
                sql.push_str(" AND assignee_id IS NULL");
            }
            if let Some(t) = f.team_id {
                sql.push_str(" AND team_id = ?");
                p.push(t.into());
            }
            if let Some(cu) = f.customer_id {
                sql.push_str(" AND customer_id = ?");
                p.push(cu.into());
            }
            if let Some(ch) = f.channel {
                sql.push_str(" AND EXISTS (SELECT 1 FROM messages m WHERE m.case_id = cases.id AND m.channel = ?)");
                p.push(ch.as_str().into());
            }
            if let Some(tag) = &tag {
                // Tags are a JSON array of strings: match whole elements, not substrings.
                sql.push_str(match c.backend() {
                    Backend::Sqlite => " AND EXISTS (SELECT 1 FROM json_each(cases.tags) j WHERE j.value = ?)",
                    Backend::Postgres => " AND cases.tags::jsonb @> jsonb_build_array(?::text)",
                });
                p.push(tag.as_str().into());
            }
            if let Some(uid) = f.visible_to {
                sql.push_str(" AND ");
                sql.push_str(VISIBLE_TO_SQL);
                p.extend([uid.into(), uid.into()]);
            }
            if let Some((u, id)) = cursor {
                sql.push_str(" AND (updated_at < ? OR (updated_at = ? AND id < ?))");
                p.extend([u.into(), u.into(), id.into()]);
            }
            sql.push_str(" ORDER BY updated_at DESC, id DESC LIMIT ?");
            p.push((limit + 1).into());
            let rows = c.query(&sql, &p)?;
            let more = rows.len() as i64 > limit;
            let items: Vec<Case> = rows.iter().take(limit as usize).map(case_from_row).collect::<Result<_, _>>()?;
            let next_cursor =
                if more { items.last().map(|c| format!("{}_{}", c.updated_at.as_micros(), c.id)) } else { None };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    /// Changes status, priority, assignment, team, tags or subject; appends `case.updated`.
    pub async fn patch_case(&self, id: i64, patch: CasePatch) -> Result<Case, StoreError> {
        self.write(move |tx| patch_case_in(tx, id, &patch)).await
    }

    /// Adds an internal note to a case.
    pub async fn add_note(
        &self,
        case_id: CaseId,
        text: String,
        author_id: Option<UserId>,
    ) -> Result<(Message, i64), StoreError> {
        self.add_note_with(case_id, text, author_id, Vec::new()).await
    }

    /// Like [`Store::add_note`], with attachments (their bytes already in the blob store).
    pub async fn add_note_with(
        &self,
        case_id: CaseId,
        text: String,
        author_id: Option<UserId>,
        attachments: Vec<Attachment>,
    ) -> Result<(Message, i64), StoreError> {
        let (case_id, author_id) = (case_id.get(), author_id.map(UserId::get));
        self.write(move |tx| {
            let case = load_case(tx.conn, case_id)?;
            refuse_merged(tx.conn, case_id)?;
            let message = insert_message(
                tx,
                &MessageRow {
                    case_id,
                    customer_id: case.customer_id,
                    direction: Direction::Out,
                    internal: true,
                    channel: Channel::Note,
                    subject: None,
                    text: &text,
                    html: None,
                    attachments: &attachments,
                    provider_message_id: None,
                    author_id,
                    delivery_state: None,
                    duration_seconds: None,
                    auto_submitted: false,
                    raw_blob_id: None,
                    raw_sealed: None,
                    cc: &[],
                    to: &[],
                },
            )?;
            let ev = tx.event(
                kontor_core::EventKind::NoteAdded,
                Some(case_id),
                Some(case.customer_id),
                &message_ref(&message),
            )?;
            tx.conn.execute(
                "UPDATE cases SET updated_at = ?, last_event_id = ? WHERE id = ?",
                &params![tx.now, ev, case_id],
            )?;
            Ok((message, ev))
        })
        .await
    }

    /// Stores a reply and queues its delivery, unless the case changed since the agent's
    /// view (`based_on_event_id`) and `force` is false. `deliverable` lists the channels
    /// that have an outbound adapter.
    pub async fn reply(
        &self,
        case_id: i64,
        r: NewReply,
        deliverable: Vec<Channel>,
    ) -> Result<ReplyOutcome, StoreError> {
        let attempts = self.settings().job_max_attempts.max(1);
        self.write(move |tx| reply_in(tx, case_id, &r, &deliverable, attempts)).await
    }
}

/// Conflict if the case was merged into another one: work goes on there.
pub(crate) fn refuse_merged(c: &mut Conn, case_id: i64) -> Result<(), StoreError> {
    match merged_into(c, case_id)? {
        Some(target) => {
            Err(StoreError::Conflict(format!("case {case_id} was merged into case {target}; continue there")))
        }
        None => Ok(()),
    }
}

fn patch_case_in(tx: &mut Tx<'_>, id: i64, p: &CasePatch) -> Result<Case, StoreError> {
    let before = load_case(tx.conn, id)?;
    refuse_merged(tx.conn, id)?;
    let mut changes = serde_json::Map::new();
    let mut sets: Vec<&str> = Vec::new();
    let mut vals: Vec<Val> = Vec::new();
    if let Some(s) = p.status {
        if s != before.status {
            sets.push("status = ?");
            vals.push(s.as_str().into());
            sets.push("resolved_at = ?");
            vals.push(if matches!(s, CaseStatus::Resolved | CaseStatus::Closed) {
                Val::Int(tx.now)
            } else {
                Val::Null
            });
            changes.insert("status".into(), json!(s));
        }
    }
    if let Some(pr) = p.priority {
        if pr != before.priority {
            sets.push("priority = ?");
            vals.push(pr.as_str().into());
            changes.insert("priority".into(), json!(pr));
        }
    }
    if let Some(a) = p.assignee_id {
        if let Some(uid) = a {
            if tx.conn.query_opt("SELECT 1 FROM users WHERE id = ?", &params![uid])?.is_none() {
                return Err(StoreError::invalid("assignee_id", format!("no staff user {uid}")));
            }
        }
        if a != before.assignee_id {
            sets.push("assignee_id = ?");
            vals.push(a.into());
            changes.insert("assignee_id".into(), json!(a));
        }
    }
    if let Some(t) = p.team_id {
        if let Some(tid) = t {
            if tx.conn.query_opt("SELECT 1 FROM teams WHERE id = ?", &params![tid])?.is_none() {
                return Err(StoreError::invalid("team_id", format!("no team {tid}")));
            }
        }
        if t != before.team_id {
            sets.push("team_id = ?");
            vals.push(t.into());
            changes.insert("team_id".into(), json!(t));
        }
    }
    if let Some(tags) = &p.tags {
        let mut tags: Vec<String> = tags.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        tags.sort();
        tags.dedup();
        if tags != before.tags {
            sets.push("tags = ?");
            vals.push(serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()).into());
            changes.insert("tags".into(), json!(tags));
        }
    }
    if let Some(s) = &p.subject {
        if Some(s) != before.subject.as_ref() {
            sets.push("subject = ?");
            vals.push(s.into());
            changes.insert("subject".into(), json!(s));
        }
    }
    if changes.is_empty() {
        return Ok(before);
    }
    sets.push("updated_at = ?");
    vals.push(tx.now.into());
    vals.push(id.into());
    tx.conn.execute(&format!("UPDATE cases SET {} WHERE id = ?", sets.join(", ")), &vals)?;
    // The subject may be the customer's words: the event says that it changed, and readers
    // get the case's current subject (see `crate::events`).
    let mut payload = json!({ "case_id": id });
    if changes.remove("subject").is_some() {
        payload["subject_changed"] = json!(true);
    }
    payload["changes"] = Value::Object(changes);
    let ev = tx.event(kontor_core::EventKind::CaseUpdated, Some(id), Some(before.customer_id), &payload)?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, id])?;
    load_case(tx.conn, id)
}

pub(crate) fn reply_in(
    tx: &mut Tx<'_>,
    case_id: i64,
    r: &NewReply,
    deliverable: &[Channel],
    max_attempts: i64,
) -> Result<ReplyOutcome, StoreError> {
    let case = load_case(tx.conn, case_id)?;
    if let Some(into) = merged_into(tx.conn, case_id)? {
        return Err(StoreError::Conflict(format!("case {case_id} was merged into case {into}; reply there")));
    }
    if r.only_assignee && case.assignee_id.is_some_and(|a| Some(UserId(a)) != r.author_id) {
        return Err(StoreError::Forbidden(
            "only the assignee may reply to this case (setting reply_only_assignee); assign it to yourself first"
                .into(),
        ));
    }
    if !r.force {
        let kinds: Vec<Val> = conversation_events().map(|k| Val::from(k.as_str())).collect();
        let marks = vec!["?"; kinds.len()].join(", ");
        let mut p: Vec<Val> = params![case_id, r.based_on_event_id].to_vec();
        p.extend(kinds);
        let rows = tx.conn.query(
            &format!(
                "SELECT id, kind, case_id, customer_id, payload, created_at FROM events \
                 WHERE case_id = ? AND id > ? AND kind IN ({marks}) ORDER BY id"
            ),
            &p,
        )?;
        if !rows.is_empty() {
            let events = events_from_rows(&rows)?;
            let mut messages = Vec::new();
            for e in &events {
                let mut ids: Vec<i64> = Vec::new();
                if let Some(mid) = crate::events::event_message_id(&e.kind, &e.payload) {
                    ids.push(mid);
                }
                // A merge brought in the other case's messages: show the newest of them.
                if let Some(moved) = e.payload.get("message_ids").and_then(|v| v.as_array()) {
                    let moved: Vec<i64> = moved.iter().filter_map(|v| v.as_i64()).collect();
                    ids.extend(&moved[moved.len().saturating_sub(STALE_MERGED_MESSAGES)..]);
                }
                for mid in ids {
                    if let Ok(m) = load_message(tx.conn, mid) {
                        messages.push(m);
                    }
                }
            }
            messages.sort_by_key(|m| m.id);
            messages.dedup_by_key(|m| m.id);
            return Ok(ReplyOutcome::Stale { events, messages });
        }
    }
    let channel = match r.channel {
        Some(ch) => ch,
        None => tx
            .conn
            .query_opt(
                "SELECT channel FROM messages WHERE case_id = ? AND direction = 'in' ORDER BY id DESC LIMIT 1",
                &params![case_id],
            )?
            .map(|row| row.req_enum(0, "messages.channel", Channel::parse))
            .transpose()?
            .unwrap_or(case.channel),
    };
    // Four-eyes: a case a rule marked, or a public channel.
    let held = match &case.approval_rule {
        Some(rule) => Some(format!("rule: {rule}")),
        None if r.public_channels.contains(&channel) => Some("public channel".to_string()),
        None => None,
    };
    if !deliverable.contains(&channel) {
        return Err(StoreError::invalid(
            "channel",
            format!(
                "no outbound adapter for channel {channel}; available: {}",
                deliverable.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let message = insert_message(
        tx,
        &MessageRow {
            case_id,
            customer_id: case.customer_id,
            direction: Direction::Out,
            internal: false,
            channel,
            subject: r.subject.as_deref().or(case.subject.as_deref()),
            text: &r.text,
            html: None,
            attachments: &r.attachments,
            provider_message_id: None,
            author_id: r.author_id.map(UserId::get),
            delivery_state: Some(if held.is_some() { "pending_approval" } else { "queued" }),
            duration_seconds: None,
            auto_submitted: false,
            raw_blob_id: None,
            raw_sealed: None,
            cc: &r.cc,
            to: &[],
        },
    )?;
    let message_id = message.id;
    let event_id = tx.event(
        kontor_core::EventKind::MessageCreated,
        Some(case_id),
        Some(case.customer_id),
        &message_ref(&message),
    )?;
    let now = tx.now;
    tx.conn.execute(
        "UPDATE cases SET updated_at = ?, last_message_at = ?, last_event_id = ?, first_response_at = COALESCE(first_response_at, ?) WHERE id = ?",
        &params![now, now, event_id, now, case_id],
    )?;
    // A staff user's answer takes care of an alert (the badge goes).
    if r.author_id.is_some() && case.alert.is_some() {
        tx.conn.execute("UPDATE cases SET alert = NULL WHERE id = ?", &params![case_id])?;
    }
    if let Some(reason) = held {
        let approval_id = crate::approvals::hold(tx, &message, &reason)?;
        return Ok(ReplyOutcome::Held { message_id, event_id, approval_id, channel });
    }
    let job_id = enqueue_job(tx, &DeliverMessage { message_id }, max_attempts, 0)?;
    Ok(ReplyOutcome::Queued { message_id, event_id, job_id, channel })
}
