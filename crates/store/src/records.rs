//! The bottom layer of the store: how each domain object is read from its row (the column
//! lists and row mappers, strict about required values), loading one by id, and the SQL form
//! of the visibility rule. Every domain module reads through here, and this module depends on
//! none of them, so the domain modules form no import cycle. The write paths depend on one
//! another in one direction only: `cases` (replies, notes) and `contacts` → `ingest` (row
//! builders, threading) → `customers`, `messages` (attachments) → `jobs` (the queue); `events`
//! builds payloads and renders them for everyone above.

use kontor_core::{
    Attachment, Case, CaseId, CaseStatus, Channel, Customer, CustomerId, DeliveryState, Direction, Identity,
    IdentityKind, Message, Priority, Role, StaffUser, UserId,
};

use crate::db::{Conn, Row};
use crate::{params, StoreError};

pub(crate) const CASE_COLS: &str = "id, customer_id, subject, status, priority, assignee_id, team_id, tags, channel, \
     created_at, updated_at, first_response_at, resolved_at, last_message_at, last_event_id, intent, intent_source, approval_rule, alert";

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
        created_at: r.req_ts(9, "cases.created_at")?,
        updated_at: r.req_ts(10, "cases.updated_at")?,
        first_response_at: r.opt_ts(11, "cases.first_response_at")?,
        resolved_at: r.opt_ts(12, "cases.resolved_at")?,
        last_message_at: r.opt_ts(13, "cases.last_message_at")?,
        last_event_id: r.req_i64(14, "cases.last_event_id")?,
        intent: r.opt_text(15),
        intent_source: r.opt_text(16),
        approval_rule: r.opt_text(17),
        alert: r.opt_text(18),
    })
}

pub(crate) fn load_case(c: &mut Conn, id: i64) -> Result<Case, StoreError> {
    c.query_opt(&format!("SELECT {CASE_COLS} FROM cases WHERE id = ?"), &params![id])?
        .map(|r| case_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?
}

/// SQL condition on `cases` for the cases a staff user may see: admins see all, others the
/// cases without a team and those of their teams. Takes the user id twice.
pub(crate) const VISIBLE_TO_SQL: &str = "(cases.team_id IS NULL \
     OR EXISTS (SELECT 1 FROM users u WHERE u.id = ? AND u.role = 'admin') \
     OR cases.team_id IN (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = ?))";

/// Whether a staff user may see a case (the rule of [`VISIBLE_TO_SQL`]); false if there is
/// no such case, so a hidden case and a missing one answer alike.
pub(crate) fn case_visible(c: &mut Conn, case_id: CaseId, user_id: UserId) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        &format!("SELECT 1 FROM cases WHERE cases.id = ? AND {VISIBLE_TO_SQL}"),
        &params![case_id, user_id, user_id],
    )?
    .is_some())
}

/// The case a case was merged into, if it was.
pub(crate) fn merged_into(c: &mut Conn, case_id: i64) -> Result<Option<i64>, StoreError> {
    Ok(c.query_opt("SELECT merged_into FROM cases WHERE id = ?", &params![case_id])?.and_then(|r| r.opt_i64(0)))
}

/// The case that lives on for `case_id`: itself, or the case it was merged into (followed
/// through up to 16 merges).
pub(crate) fn follow_merges(c: &mut Conn, case_id: i64) -> Result<i64, StoreError> {
    let mut id = case_id;
    for _ in 0..16 {
        match merged_into(c, id)? {
            Some(target) => id = target,
            None => break,
        }
    }
    Ok(id)
}

pub(crate) const MESSAGE_COLS: &str = "id, case_id, customer_id, direction, internal, channel, subject, text, html, \
     attachments, provider_message_id, author_id, delivery_state, delivery_error, created_at, duration_seconds, \
     auto_submitted, raw_blob_id, cc, recipients, automatic";

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
        auto_submitted: r.req_i64(16, "messages.auto_submitted")? != 0,
        has_raw_source: r.opt_text(17).is_some(),
        automatic: r.i64(20) != 0,
        analysis: None,
        raw_blob_id: r.opt_text(17),
        cc: serde_json::from_str(&r.req_text(18, "messages.cc")?)
            .map_err(|e| StoreError::Corrupt(format!("messages.cc is not a JSON list: {e}")))?,
        to: serde_json::from_str(&r.req_text(19, "messages.recipients")?)
            .map_err(|e| StoreError::Corrupt(format!("messages.recipients is not a JSON list: {e}")))?,
    })
}

pub(crate) fn load_message(c: &mut Conn, id: i64) -> Result<Message, StoreError> {
    c.query_opt(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = ?"), &params![id])?
        .map(|r| message_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?
}

pub(crate) fn identity_from_row(r: &Row) -> Result<Identity, StoreError> {
    Ok(Identity {
        id: r.req_i64(0, "identities.id")?,
        customer_id: r.req_i64(1, "identities.customer_id")?,
        kind: r.req_enum(2, "identities.kind", IdentityKind::parse)?,
        address: r.req_text(3, "identities.address")?,
        created_at: r.req_ts(4, "identities.created_at")?,
    })
}

/// The columns [`customer_from_row`] reads.
pub(crate) const CUSTOMER_COLS: &str = "id, name, language, merged_into, created_at, updated_at";

/// A customer from a row of [`CUSTOMER_COLS`], without its identities.
pub(crate) fn customer_from_row(r: &Row) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: r.req_i64(0, "customers.id")?,
        name: r.opt_text(1),
        language: r.opt_text(2),
        merged_into: r.opt_i64(3),
        created_at: r.req_ts(4, "customers.created_at")?,
        updated_at: r.req_ts(5, "customers.updated_at")?,
        identities: Vec::new(),
    })
}

/// Loads a customer with identities.
pub(crate) fn load_customer(c: &mut Conn, id: i64) -> Result<Customer, StoreError> {
    let r = c
        .query_opt(&format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id = ?"), &params![id])?
        .ok_or_else(|| StoreError::NotFound(format!("customer {id}")))?;
    let identities = c
        .query(
            "SELECT id, customer_id, kind, address, created_at FROM identities WHERE customer_id = ? ORDER BY id",
            &params![id],
        )?
        .iter()
        .map(identity_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Customer { identities, ..customer_from_row(&r)? })
}

/// Whether a restricted staff user may see a customer: it has an unmerged case the user may
/// see (the rule of `Store::customer_visible_to`). False if there is no such customer.
pub(crate) fn customer_visible(c: &mut Conn, customer_id: CustomerId, user_id: UserId) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        &format!(
            "SELECT 1 FROM cases WHERE cases.customer_id = ? AND cases.merged_into IS NULL AND {VISIBLE_TO_SQL} LIMIT 1"
        ),
        &params![customer_id, user_id, user_id],
    )?
    .is_some())
}

/// The columns [`user_from_row`] reads (of `users`).
pub(crate) const USER_COLS: &str = "id, email, name, role, created_at, active";

/// A staff user from a row of [`USER_COLS`].
pub(crate) fn user_from_row(r: &Row) -> Result<StaffUser, StoreError> {
    Ok(StaffUser {
        id: r.req_i64(0, "users.id")?,
        email: r.req_text(1, "users.email")?,
        name: r.req_text(2, "users.name")?,
        role: r.req_enum(3, "users.role", Role::parse)?,
        created_at: r.req_ts(4, "users.created_at")?,
        active: r.req_i64(5, "users.active")? != 0,
    })
}
