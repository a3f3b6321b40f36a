//! One request in two cases: finding a customer's related open cases (cross-channel
//! duplicates) and merging one case into another with its whole history.

use kontor_core::similarity::{relate, RelatedReason, RequestSummary, SAME_REQUEST_WINDOW_US};
use kontor_core::{Case, CaseId, CaseStatus, Channel, Timestamp, UserId};
use serde_json::json;

use crate::db::Row;
use crate::records::{case_visible, load_case, merged_into};
use crate::{params, Store, StoreError, Val};

/// Another open case of the same customer that looks like the same request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RelatedCase {
    pub id: i64,
    /// Channel of the message that opened it.
    pub channel: Channel,
    pub subject: Option<String>,
    pub status: CaseStatus,
    /// Its team (to hide it from staff who may not see it).
    pub team_id: Option<i64>,
    /// How alike the two requests are, `0.0..=1.0` (word overlap).
    pub score: f64,
    /// Why it is taken for the same request.
    pub reason: RelatedReason,
    /// Its last message (or its opening, if it has none), RFC 3339.
    pub last_activity_at: Timestamp,
}

/// Columns for [`request_of`]: what the duplicate rules need of a case.
const REQUEST_COLS: &str = "id, channel, subject, status, team_id, created_at, COALESCE(last_message_at, created_at), \
     (SELECT m.text FROM messages m WHERE m.case_id = cases.id AND m.direction = 'in' AND m.internal = 0 \
      ORDER BY m.id LIMIT 1), merged_into";

/// A case's channel, opening time and request text (subject and first inbound message).
fn request_of(r: &Row) -> Result<(Channel, i64, String), StoreError> {
    let text = [r.opt_text(2), r.opt_text(7)].into_iter().flatten().collect::<Vec<_>>().join("\n");
    Ok((r.req_enum(1, "cases.channel", Channel::parse)?, r.req_i64(5, "cases.created_at")?, text))
}

impl Store {
    /// Other open or pending cases of the same customer, active within the last 24 hours,
    /// that look like the same request: similar text, or opened within 24 hours of this case
    /// on another channel (see `kontor_core::similarity`). Best match first. Empty if this
    /// case is not open or pending, or was merged.
    pub async fn related_open_cases(&self, case_id: i64) -> Result<Vec<RelatedCase>, StoreError> {
        self.read(move |c| {
            let me = c
                .query_opt(&format!("SELECT {REQUEST_COLS}, customer_id FROM cases WHERE id = ?"), &params![case_id])?
                .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
            let active = me.req_enum(3, "cases.status", CaseStatus::parse)?.is_active();
            if !active || me.opt_i64(8).is_some() {
                return Ok(vec![]);
            }
            let (channel, opened_at_us, text) = request_of(&me)?;
            let mine = RequestSummary { channel, opened_at_us, text: &text };
            let since = crate::now_us() - SAME_REQUEST_WINDOW_US;
            let rows = c.query(
                &format!(
                    "SELECT {REQUEST_COLS} FROM cases WHERE customer_id = ? AND id <> ? \
                     AND status IN ('open', 'pending') AND merged_into IS NULL \
                     AND COALESCE(last_message_at, created_at) >= ? ORDER BY id"
                ),
                &params![me.req_i64(9, "cases.customer_id")?, case_id, since],
            )?;
            let mut out = Vec::new();
            for r in &rows {
                let (channel, opened_at_us, text) = request_of(r)?;
                let other = RequestSummary { channel, opened_at_us, text: &text };
                if let Some(rel) = relate(&mine, &other) {
                    out.push(RelatedCase {
                        id: r.req_i64(0, "cases.id")?,
                        channel,
                        subject: r.opt_text(2),
                        status: r.req_enum(3, "cases.status", CaseStatus::parse)?,
                        team_id: r.opt_i64(4),
                        score: rel.score,
                        reason: rel.reason,
                        last_activity_at: r.req_ts(6, "cases.last_message_at")?,
                    });
                }
            }
            // Best match first; among equals the most recently active, then the newest case.
            out.sort_by(|a, b| {
                b.score.total_cmp(&a.score).then(b.last_activity_at.cmp(&a.last_activity_at)).then(b.id.cmp(&a.id))
            });
            Ok(out)
        })
        .await
    }

    /// The case a case was merged into, `None` if it was not merged.
    pub async fn case_merged_into(&self, case_id: i64) -> Result<Option<i64>, StoreError> {
        self.read(move |c| {
            load_case(c, case_id)?;
            merged_into(c, case_id)
        })
        .await
    }

    /// Merges case `source_id` into case `target_id` of the same customer: every message
    /// moves to the target, the source is closed and points at the target, and both cases
    /// get a `case.merged` event (with both ids, the number and ids of the moved messages and
    /// the actor), so a reply written against a view from before the merge is stale. The
    /// target takes over the source's tags, its subject if it has none, and the later last
    /// message time; it is re-opened if it was resolved or closed and the source was not.
    /// Returns the target.
    pub async fn merge_cases(
        &self,
        target_id: CaseId,
        source_id: CaseId,
        actor: Option<UserId>,
    ) -> Result<Case, StoreError> {
        self.merge_cases_as(target_id, source_id, actor, None).await
    }

    /// [`Store::merge_cases`] on behalf of a restricted staff user (`visible_to`; `None`: an
    /// admin or API token): a case the user may not see is not found, as if it did not exist,
    /// and a refusal names no case the user may not see.
    pub async fn merge_cases_as(
        &self,
        target_id: CaseId,
        source_id: CaseId,
        actor: Option<UserId>,
        visible_to: Option<UserId>,
    ) -> Result<Case, StoreError> {
        let (target_id, source_id) = (target_id.get(), source_id.get());
        self.write(move |tx| {
            let visible = |conn: &mut crate::Conn, id: i64| -> Result<bool, StoreError> {
                match visible_to {
                    None => Ok(true),
                    Some(user) => case_visible(conn, CaseId(id), user),
                }
            };
            for id in [target_id, source_id] {
                if !visible(tx.conn, id)? {
                    return Err(StoreError::NotFound(format!("case {id}")));
                }
            }
            if target_id == source_id {
                return Err(StoreError::invalid("source_id", "cannot merge a case into itself"));
            }
            let target = load_case(tx.conn, target_id)?;
            let source = load_case(tx.conn, source_id)?;
            if source.customer_id != target.customer_id {
                return Err(StoreError::invalid("source_id", "belongs to another customer than the target case"));
            }
            for (id, what) in [(source_id, "was already merged"), (target_id, "was merged")] {
                if let Some(into) = merged_into(tx.conn, id)? {
                    return Err(StoreError::Conflict(if visible(tx.conn, into)? {
                        format!("case {id} {what} into case {into}")
                    } else {
                        format!("case {id} {what} into another case")
                    }));
                }
            }
            let now = tx.now;
            let customer_id = target.customer_id;
            let message_ids: Vec<i64> = tx
                .conn
                .query("SELECT id FROM messages WHERE case_id = ? ORDER BY id", &params![source_id])?
                .iter()
                .map(|r| r.req_i64(0, "messages.id"))
                .collect::<Result<_, _>>()?;
            tx.conn.execute("UPDATE messages SET case_id = ? WHERE case_id = ?", &params![target_id, source_id])?;
            // Held replies go along, and a four-eyes mark on either case holds for the merged one.
            tx.conn.execute("UPDATE approvals SET case_id = ? WHERE case_id = ?", &params![target_id, source_id])?;
            tx.conn.execute(
                "UPDATE cases SET approval_rule = (SELECT approval_rule FROM cases WHERE id = ?) \
                 WHERE id = ? AND approval_rule IS NULL",
                &params![source_id, target_id],
            )?;
            // A redelivered inbound message must report the case its message is in now.
            tx.conn.execute("UPDATE inbound_keys SET case_id = ? WHERE case_id = ?", &params![target_id, source_id])?;

            let times = |tx: &mut crate::Tx<'_>, id: i64| -> Result<(Option<i64>, Option<i64>), StoreError> {
                let r = tx
                    .conn
                    .query_opt("SELECT last_message_at, first_response_at FROM cases WHERE id = ?", &params![id])?
                    .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
                Ok((r.opt_i64(0), r.opt_i64(1)))
            };
            let (t_last, t_first) = times(tx, target_id)?;
            let (s_last, s_first) = times(tx, source_id)?;
            let last_message_at = t_last.max(s_last);
            let first_response_at = match (t_first, s_first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut tags = target.tags.clone();
            tags.extend(source.tags.iter().cloned());
            tags.sort();
            tags.dedup();
            let reopen = source.status.is_active() && !target.status.is_active();

            let payload = json!({
                "target_case_id": target_id,
                "source_case_id": source_id,
                "moved_messages": message_ids.len(),
                "message_ids": message_ids,
                "actor_id": actor,
                "reopened": reopen,
            });
            let source_event =
                tx.event(kontor_core::EventKind::CaseMerged, Some(source_id), Some(customer_id), &payload)?;
            tx.conn.execute(
                "UPDATE cases SET status = 'closed', resolved_at = COALESCE(resolved_at, ?), merged_into = ?, \
                 updated_at = ?, last_event_id = ? WHERE id = ?",
                &params![now, target_id, now, source_event, source_id],
            )?;
            let target_event =
                tx.event(kontor_core::EventKind::CaseMerged, Some(target_id), Some(customer_id), &payload)?;
            let mut sets = String::from(
                "last_message_at = ?, first_response_at = ?, tags = ?, subject = COALESCE(subject, ?), \
                 updated_at = ?, last_event_id = ?",
            );
            let mut vals: Vec<Val> = vec![
                last_message_at.into(),
                first_response_at.into(),
                serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()).into(),
                source.subject.as_deref().into(),
                now.into(),
                target_event.into(),
            ];
            if reopen {
                sets.push_str(", status = 'open', resolved_at = NULL");
            }
            vals.push(target_id.into());
            tx.conn.execute(&format!("UPDATE cases SET {sets} WHERE id = ?"), &vals)?;
            load_case(tx.conn, target_id)
        })
        .await
    }
}
