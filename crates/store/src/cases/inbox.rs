//! What the agent inbox shows beside each case: customer name and the latest message.

use std::collections::HashMap;

use kontor_core::{CaseId, Channel, CustomerId, Direction, Timestamp, UserId};

use crate::{Store, StoreError, Val};

/// The inbox line of a case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSummary {
    pub case_id: i64,
    pub customer_name: Option<String>,
    /// The customer's first address, for customers without a name.
    pub customer_address: Option<String>,
    /// Start of the latest message that is not an internal note.
    pub preview: Option<String>,
    pub last_direction: Option<Direction>,
    pub last_channel: Option<Channel>,
    pub last_at: Option<Timestamp>,
    /// The latest message came from the customer: the case awaits an answer.
    pub awaiting_reply: bool,
}

impl Store {
    /// One case without its messages.
    pub async fn case(&self, id: i64) -> Result<kontor_core::Case, StoreError> {
        self.read(move |c| crate::records::load_case(c, id)).await
    }

    /// Summaries for the given cases (one query each for customers and latest messages).
    pub async fn case_summaries(&self, case_ids: Vec<i64>) -> Result<HashMap<i64, CaseSummary>, StoreError> {
        if case_ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(move |c| {
            let marks = vec!["?"; case_ids.len()].join(", ");
            let ids: Vec<Val> = case_ids.iter().map(|id| Val::Int(*id)).collect();
            let mut out: HashMap<i64, CaseSummary> = HashMap::new();
            let customers = c.query(
                &format!(
                    "SELECT ca.id, cu.name, (SELECT i.address FROM identities i WHERE i.customer_id = cu.id ORDER BY i.id LIMIT 1) \
                     FROM cases ca JOIN customers cu ON cu.id = ca.customer_id WHERE ca.id IN ({marks})"
                ),
                &ids,
            )?;
            for r in customers {
                let case_id = r.req_i64(0, "cases.id")?;
                out.insert(
                    case_id,
                    CaseSummary {
                        case_id,
                        customer_name: r.opt_text(1),
                        customer_address: r.opt_text(2),
                        preview: None,
                        last_direction: None,
                        last_channel: None,
                        last_at: None,
                        awaiting_reply: false,
                    },
                );
            }
            let latest = c.query(
                &format!(
                    "SELECT m.case_id, substr(m.text, 1, 4000), m.direction, m.channel, m.created_at FROM messages m \
                     WHERE m.id IN (SELECT MAX(id) FROM messages WHERE internal = 0 AND case_id IN ({marks}) GROUP BY case_id)"
                ),
                &ids,
            )?;
            for r in latest {
                if let Some(s) = out.get_mut(&r.req_i64(0, "messages.case_id")?) {
                    // What is new in the latest message: a mail's quoted conversation is
                    // left out (the message keeps it).
                    s.preview = r.opt_text(1).map(|t| kontor_core::quote::preview(&t, 160));
                    s.last_direction = Some(r.req_enum(2, "messages.direction", Direction::parse)?);
                    s.last_channel = Some(r.req_enum(3, "messages.channel", Channel::parse)?);
                    s.last_at = Some(r.req_ts(4, "messages.created_at")?);
                    s.awaiting_reply = s.last_direction == Some(Direction::In);
                }
            }
            Ok(out)
        })
        .await
    }
}

impl Store {
    /// Records that `user_id` has seen `case_id` up to `event_id` (never goes back).
    ///
    /// The ids have their own types, so a call with the user and the case swapped does not
    /// compile:
    ///
    /// ```no_run
    /// # async fn f(store: kontor_store::Store) -> Result<(), kontor_store::StoreError> {
    /// use kontor_core::{CaseId, UserId};
    /// store.mark_case_seen(UserId(3), CaseId(7), 42).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// ```compile_fail,E0308
    /// # async fn f(store: kontor_store::Store) -> Result<(), kontor_store::StoreError> {
    /// use kontor_core::{CaseId, UserId};
    /// store.mark_case_seen(CaseId(7), UserId(3), 42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn mark_case_seen(&self, user_id: UserId, case_id: CaseId, event_id: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.conn.execute(
                "INSERT INTO case_reads (user_id, case_id, seen_event_id) VALUES (?, ?, ?) \
                 ON CONFLICT (user_id, case_id) DO UPDATE SET seen_event_id = CASE \
                 WHEN excluded.seen_event_id > case_reads.seen_event_id THEN excluded.seen_event_id \
                 ELSE case_reads.seen_event_id END",
                &crate::params![user_id, case_id, event_id],
            )?;
            Ok(())
        })
        .await
    }

    /// The newest event `user_id` has seen in each of the cases (absent: never opened).
    pub async fn seen_event_ids(
        &self,
        user_id: UserId,
        case_ids: Vec<CaseId>,
    ) -> Result<HashMap<CaseId, i64>, StoreError> {
        if case_ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(move |c| {
            let marks = vec!["?"; case_ids.len()].join(", ");
            let mut p: Vec<Val> = vec![user_id.into()];
            p.extend(case_ids.iter().map(|id| Val::from(*id)));
            c.query(
                &format!("SELECT case_id, seen_event_id FROM case_reads WHERE user_id = ? AND case_id IN ({marks})"),
                &p,
            )?
            .iter()
            .map(|r| Ok((CaseId(r.req_i64(0, "case_reads.case_id")?), r.req_i64(1, "case_reads.seen_event_id")?)))
            .collect()
        })
        .await
    }
}

impl Store {
    /// The case's events of the given kinds, oldest first (for the case's history line).
    pub async fn case_events(
        &self,
        case_id: i64,
        kinds: Vec<&'static str>,
    ) -> Result<Vec<kontor_core::Event>, StoreError> {
        if kinds.is_empty() {
            return Ok(vec![]);
        }
        self.read(move |c| {
            let marks = vec!["?"; kinds.len()].join(", ");
            let mut p: Vec<Val> = vec![Val::Int(case_id)];
            p.extend(kinds.iter().map(|k| Val::from(*k)));
            let rows = c.query(
                &format!(
                    "SELECT id, kind, case_id, customer_id, payload, created_at FROM events \
                     WHERE case_id = ? AND kind IN ({marks}) ORDER BY id"
                ),
                &p,
            )?;
            crate::events::events_from_rows(&rows)
        })
        .await
    }
}

impl Store {
    /// True if a restricted staff user may see the customer: it has at least one case the user
    /// may see (a case without team, or of one of the user's teams), or the user is an admin.
    pub async fn customer_visible_to(&self, customer_id: CustomerId, user_id: UserId) -> Result<bool, StoreError> {
        self.read(move |c| {
            Ok(c.query_opt(
                "SELECT 1 FROM users u WHERE u.id = ? AND (u.role = 'admin' OR EXISTS (SELECT 1 FROM cases \
                 WHERE cases.customer_id = ? AND cases.merged_into IS NULL AND (cases.team_id IS NULL \
                 OR cases.team_id IN (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = ?))))",
                &crate::params![user_id, customer_id, user_id],
            )?
            .is_some())
        })
        .await
    }
}
