//! Four-eyes approval: a reply that a rule or a public channel holds is stored with the
//! delivery state `pending_approval` and no delivery job; a second staff user (not its
//! author) approves it — then it is queued for delivery — or rejects it. Every step is in the
//! case history (`approval.requested`, `approval.decided`; the comment stays in the
//! approval, not in the event log).

use kontor_core::{EventKind, Message, UserId};
use serde_json::json;

use crate::events::message_ref;
use crate::jobs::enqueue_job;
use crate::messages::DeliverMessage;
use crate::records::VISIBLE_TO_SQL;
use crate::writer::Tx;
use crate::{params, Conn, Row, Store, StoreError, Val};

/// A held reply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub id: i64,
    pub message_id: i64,
    pub case_id: i64,
    /// Who wrote the reply (`null`: the assistant or an API integration).
    pub author_id: Option<i64>,
    /// Why it is held: `public channel` or `rule: <name>`.
    pub reason: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub decided_by: Option<i64>,
    pub comment: Option<String>,
    pub created_at: kontor_core::Timestamp,
    pub decided_at: Option<kontor_core::Timestamp>,
    /// The reply's text.
    pub text: String,
    pub case_subject: Option<String>,
}

const COLS: &str = "a.id, a.message_id, a.case_id, a.author_id, a.reason, a.status, a.decided_by, a.comment, \
     a.created_at, a.decided_at, m.text, c.subject";
/// The tables [`COLS`] reads from.
const FROM: &str = "FROM approvals a JOIN messages m ON m.id = a.message_id JOIN cases c ON c.id = a.case_id";

/// One approval, read with the reply's text and the case's subject.
fn load(c: &mut Conn, id: i64) -> Result<Approval, StoreError> {
    c.query_opt(&format!("SELECT {COLS} {FROM} WHERE a.id = ?"), &params![id])?
        .map(|r| from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("approval {id}")))?
}

fn from_row(r: &Row) -> Result<Approval, StoreError> {
    Ok(Approval {
        id: r.req_i64(0, "approvals.id")?,
        message_id: r.req_i64(1, "approvals.message_id")?,
        case_id: r.req_i64(2, "approvals.case_id")?,
        author_id: r.opt_i64(3),
        reason: r.req_text(4, "approvals.reason")?,
        status: r.req_text(5, "approvals.status")?,
        decided_by: r.opt_i64(6),
        comment: r.opt_text(7),
        created_at: r.req_ts(8, "approvals.created_at")?,
        decided_at: r.opt_ts(9, "approvals.decided_at")?,
        text: r.req_text(10, "messages.text")?,
        case_subject: r.opt_text(11),
    })
}

/// Holds a stored reply for approval; returns the approval's id.
pub(crate) fn hold(tx: &mut Tx<'_>, message: &Message, reason: &str) -> Result<i64, StoreError> {
    let id = tx
        .conn
        .query_opt(
            "INSERT INTO approvals (message_id, case_id, author_id, reason, status, created_at) \
             VALUES (?, ?, ?, ?, 'pending', ?) RETURNING id",
            &params![message.id, message.case_id, message.author_id, reason, tx.now],
        )?
        .ok_or_else(|| StoreError::Database("approval insert returned no id".into()))?
        .req_i64(0, "approvals.id")?;
    let mut payload = message_ref(message);
    payload["approval_id"] = json!(id);
    payload["reason"] = json!(reason);
    let ev = tx.event(EventKind::ApprovalRequested, Some(message.case_id), Some(message.customer_id), &payload)?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, message.case_id])?;
    Ok(id)
}

/// The condition (and its parameters) that keeps to the cases `viewer` may see.
fn visible_to(viewer: Option<UserId>) -> (String, Vec<Val>) {
    match viewer {
        Some(u) => (format!(" AND {}", VISIBLE_TO_SQL.replace("cases.", "c.")), params![u.get(), u.get()].to_vec()),
        None => (String::new(), Vec::new()),
    }
}

/// A decision on a held reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Store {
    /// Pending approvals, oldest first, of the cases `viewer` may see (`None`: all).
    pub async fn pending_approvals(&self, viewer: Option<UserId>) -> Result<Vec<Approval>, StoreError> {
        self.read(move |c| {
            let (visible, p) = visible_to(viewer);
            let sql = format!("SELECT {COLS} {FROM} WHERE a.status = 'pending'{visible} ORDER BY a.id LIMIT 500");
            c.query(&sql, &p)?.iter().map(from_row).collect()
        })
        .await
    }

    /// How many approvals are pending in the cases `viewer` may see (`None`: all).
    pub async fn pending_approval_count(&self, viewer: Option<UserId>) -> Result<i64, StoreError> {
        self.read(move |c| {
            let (visible, p) = visible_to(viewer);
            let sql = format!("SELECT COUNT(*) {FROM} WHERE a.status = 'pending'{visible}");
            Ok(c.query_opt(&sql, &p)?.map(|r| r.i64(0)).unwrap_or(0))
        })
        .await
    }

    /// One approval.
    pub async fn approval(&self, id: i64) -> Result<Approval, StoreError> {
        self.read(move |c| load(c, id)).await
    }

    /// Approves (the reply is queued for delivery) or rejects (it is never sent) a pending
    /// approval. `by` must be a staff user other than the reply's author.
    pub async fn decide_approval(
        &self,
        id: i64,
        by: UserId,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<Approval, StoreError> {
        let attempts = self.settings().job_max_attempts.max(1);
        self.write(move |tx| {
            let row = tx
                .conn
                .query_opt(
                    "SELECT a.message_id, a.case_id, a.author_id, a.status, m.customer_id FROM approvals a \
                     JOIN messages m ON m.id = a.message_id WHERE a.id = ?",
                    &params![id],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("approval {id}")))?;
            let (message_id, case_id) = (row.req_i64(0, "approvals.message_id")?, row.req_i64(1, "approvals.case_id")?);
            let customer_id = row.req_i64(4, "messages.customer_id")?;
            if row.req_text(3, "approvals.status")? != "pending" {
                return Err(StoreError::Conflict(format!("approval {id} was already decided")));
            }
            if row.opt_i64(2) == Some(by.get()) {
                return Err(StoreError::Forbidden(
                    "four eyes: the author of a reply cannot approve or reject it".into(),
                ));
            }
            let (status, state) = match decision {
                Decision::Approve => ("approved", "queued"),
                Decision::Reject => ("rejected", "rejected"),
            };
            tx.conn.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, comment = ?, decided_at = ? WHERE id = ?",
                &params![status, by.get(), comment.as_deref(), tx.now, id],
            )?;
            tx.conn.execute("UPDATE messages SET delivery_state = ? WHERE id = ?", &params![state, message_id])?;
            if decision == Decision::Approve {
                enqueue_job(tx, &DeliverMessage { message_id }, attempts, 0)?;
            }
            let ev = tx.event(
                EventKind::ApprovalDecided,
                Some(case_id),
                Some(customer_id),
                &json!({ "approval_id": id, "message_id": message_id, "case_id": case_id, "status": status,
                         "decided_by": by.get(), "has_comment": comment.is_some() }),
            )?;
            tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
            load(tx.conn, id)
        })
        .await
    }
}
