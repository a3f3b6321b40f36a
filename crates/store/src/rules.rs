//! The assistant's rules: stored in order, each enabled or not; their actions taken on a
//! case in the analysis job's effect, each change in the case history with the rule's name.
//! Whether a message meets a rule's conditions is decided outside the store
//! (`kontor_assist::rules`).

use kontor_core::{EventKind, Message, MessageAnalysis, Rule, RuleAction, RuleConditions};
use serde_json::{json, Value};

use crate::records::{message_from_row, MESSAGE_COLS};
use crate::writer::Tx;
use crate::{params, Row, Store, StoreError};

/// A rule as created or replaced.
#[derive(Debug, Clone)]
pub struct RuleInput {
    pub name: String,
    /// Where it runs among the rules (lower first); default: after the others.
    pub position: Option<i64>,
    pub enabled: bool,
    pub conditions: RuleConditions,
    pub actions: Vec<RuleAction>,
}

const RULE_COLS: &str = "id, name, position, enabled, conditions, actions, created_at, updated_at";

fn rule_from_row(r: &Row) -> Result<Rule, StoreError> {
    Ok(Rule {
        id: r.req_i64(0, "rules.id")?,
        name: r.req_text(1, "rules.name")?,
        position: r.req_i64(2, "rules.position")?,
        enabled: r.req_i64(3, "rules.enabled")? != 0,
        conditions: serde_json::from_str(&r.req_text(4, "rules.conditions")?)
            .map_err(|e| StoreError::Corrupt(format!("rules.conditions: {e}")))?,
        actions: serde_json::from_str(&r.req_text(5, "rules.actions")?)
            .map_err(|e| StoreError::Corrupt(format!("rules.actions: {e}")))?,
        created_at: r.req_ts(6, "rules.created_at")?,
        updated_at: r.req_ts(7, "rules.updated_at")?,
    })
}

fn load_rule(tx: &mut Tx<'_>, id: i64) -> Result<Rule, StoreError> {
    tx.conn
        .query_opt(&format!("SELECT {RULE_COLS} FROM rules WHERE id = ?"), &params![id])?
        .map(|r| rule_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("rule {id}")))?
}

fn check(tx: &mut Tx<'_>, input: &RuleInput) -> Result<(), StoreError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::invalid("name", "1 to 200 characters"));
    }
    if input.actions.is_empty() || input.actions.len() > 20 {
        return Err(StoreError::invalid("actions", "1 to 20 actions"));
    }
    for a in &input.actions {
        let (table, id, field) = match a {
            RuleAction::SetTeam { team_id } => ("teams", *team_id, "team_id"),
            RuleAction::SetAssignee { user_id } => ("users", *user_id, "user_id"),
            RuleAction::AutoAnswer { canned_id } => ("canned_responses", *canned_id, "canned_id"),
            RuleAction::AddTag { tag } => {
                if tag.trim().is_empty() || tag.chars().count() > 64 {
                    return Err(StoreError::invalid("actions.tag", "1 to 64 characters"));
                }
                continue;
            }
            _ => continue,
        };
        if tx.conn.query_opt(&format!("SELECT 1 FROM {table} WHERE id = ?"), &params![id])?.is_none() {
            return Err(StoreError::invalid(&format!("actions.{field}"), format!("there is no {field} {id}")));
        }
    }
    Ok(())
}

impl Store {
    /// Every rule, in the order they run.
    pub async fn rules(&self) -> Result<Vec<Rule>, StoreError> {
        self.read(|c| {
            c.query(&format!("SELECT {RULE_COLS} FROM rules ORDER BY position, id"), &[])?
                .iter()
                .map(rule_from_row)
                .collect()
        })
        .await
    }

    /// One rule.
    pub async fn rule(&self, id: i64) -> Result<Rule, StoreError> {
        self.read(move |c| {
            c.query_opt(&format!("SELECT {RULE_COLS} FROM rules WHERE id = ?"), &params![id])?
                .map(|r| rule_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("rule {id}")))?
        })
        .await
    }

    /// Adds a rule (`rule.created`).
    pub async fn create_rule(&self, input: RuleInput) -> Result<Rule, StoreError> {
        self.write(move |tx| {
            check(tx, &input)?;
            let position = match input.position {
                Some(p) => p,
                None => {
                    tx.conn.query_opt("SELECT MAX(position) FROM rules", &[])?.and_then(|r| r.opt_i64(0)).unwrap_or(0)
                        + 1
                }
            };
            let id = tx
                .conn
                .query_opt(
                    "INSERT INTO rules (name, position, enabled, conditions, actions, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    &params![
                        input.name.trim(),
                        position,
                        input.enabled,
                        json!(input.conditions).to_string(),
                        json!(input.actions).to_string(),
                        tx.now,
                        tx.now
                    ],
                )?
                .ok_or_else(|| StoreError::Database("rule insert returned no id".into()))?
                .req_i64(0, "rules.id")?;
            tx.event(EventKind::RuleCreated, None, None, &json!({ "rule_id": id, "name": input.name.trim() }))?;
            load_rule(tx, id)
        })
        .await
    }

    /// Replaces a rule (`rule.updated`).
    pub async fn update_rule(&self, id: i64, input: RuleInput) -> Result<Rule, StoreError> {
        self.write(move |tx| {
            let before = load_rule(tx, id)?;
            check(tx, &input)?;
            tx.conn.execute(
                "UPDATE rules SET name = ?, position = ?, enabled = ?, conditions = ?, actions = ?, updated_at = ? WHERE id = ?",
                &params![
                    input.name.trim(),
                    input.position.unwrap_or(before.position),
                    input.enabled,
                    json!(input.conditions).to_string(),
                    json!(input.actions).to_string(),
                    tx.now,
                    id
                ],
            )?;
            tx.event(EventKind::RuleUpdated, None, None, &json!({ "rule_id": id, "name": input.name.trim() }))?;
            load_rule(tx, id)
        })
        .await
    }

    /// Deletes a rule (`rule.deleted`).
    pub async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let before = load_rule(tx, id)?;
            tx.conn.execute("DELETE FROM rules WHERE id = ?", &params![id])?;
            tx.event(EventKind::RuleDeleted, None, None, &json!({ "rule_id": id, "name": before.name }))?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` customer messages with their analyses (if analysed) and their
    /// customers' languages, newest first: what a rule's dry run is checked against.
    pub async fn recent_inbound(
        &self,
        limit: i64,
    ) -> Result<Vec<(Message, Option<MessageAnalysis>, Option<String>)>, StoreError> {
        self.read(move |c| {
            // Rules read at most the first 20,000 characters of a text (as the extractor does).
            let cols: String = MESSAGE_COLS
                .split(", ")
                .map(|col| if col == "text" { "substr(m.text, 1, 20000)".to_string() } else { format!("m.{col}") })
                .collect::<Vec<_>>()
                .join(", ");
            let rows = c.query(
                &format!(
                    "SELECT {cols}, a.data, cu.language FROM messages m \
                     LEFT JOIN message_analysis a ON a.message_id = m.id \
                     LEFT JOIN customers cu ON cu.id = m.customer_id \
                     WHERE m.direction = 'in' AND m.internal = 0 ORDER BY m.id DESC LIMIT ?"
                ),
                &params![limit],
            )?;
            let n = MESSAGE_COLS.split(", ").count();
            rows.iter()
                .map(|r| {
                    let m = message_from_row(r)?;
                    // An unreadable analysis counts as none (the message is not judged).
                    let a = r.opt_text(n).and_then(|data| serde_json::from_str(&data).ok());
                    Ok((m, a, r.opt_text(n + 1)))
                })
                .collect()
        })
        .await
    }
}

/// A rule that matched a message, with what it does.
#[derive(Debug, Clone)]
pub struct MatchedRule {
    pub id: i64,
    pub name: String,
    pub actions: Vec<RuleAction>,
}

/// Takes a matched rule's actions on the case of `message_id`: one `case.updated` naming the
/// rule for the case's changes (team, assignee, priority, tag, four-eyes, spam); an automatic
/// answer with its safeguards. Actions whose target is gone (a deleted team) are skipped.
pub(crate) fn apply_rule(
    tx: &mut Tx<'_>,
    message_id: i64,
    at: &crate::assist::Placed,
    analysis: &MessageAnalysis,
    rule: &MatchedRule,
    policy: Option<&crate::assist::AutoAnswerPolicy>,
) -> Result<(), StoreError> {
    let (case_id, customer_id) = (at.case_id, at.customer_id);
    let case = crate::records::load_case(tx.conn, case_id)?;
    let mut changes = serde_json::Map::new();
    let mut tags = case.tags.clone();
    for action in &rule.actions {
        match action {
            RuleAction::SetTeam { team_id } => {
                if tx.conn.query_opt("SELECT 1 FROM teams WHERE id = ?", &params![*team_id])?.is_some()
                    && case.team_id != Some(*team_id)
                {
                    tx.conn.execute("UPDATE cases SET team_id = ? WHERE id = ?", &params![*team_id, case_id])?;
                    changes.insert("team_id".into(), json!(team_id));
                }
            }
            RuleAction::SetAssignee { user_id } => {
                if tx.conn.query_opt("SELECT 1 FROM users WHERE id = ? AND active = 1", &params![*user_id])?.is_some()
                    && case.assignee_id != Some(*user_id)
                {
                    tx.conn.execute("UPDATE cases SET assignee_id = ? WHERE id = ?", &params![*user_id, case_id])?;
                    changes.insert("assignee_id".into(), json!(user_id));
                }
            }
            RuleAction::SetPriority { priority } => {
                if case.priority != *priority {
                    tx.conn
                        .execute("UPDATE cases SET priority = ? WHERE id = ?", &params![priority.as_str(), case_id])?;
                    changes.insert("priority".into(), json!(priority));
                }
            }
            RuleAction::AddTag { tag } => {
                let tag = tag.trim().to_string();
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            RuleAction::MarkSpam => {
                if !tags.iter().any(|t| t == "spam") {
                    tags.push("spam".into());
                }
                if case.status != kontor_core::CaseStatus::Closed {
                    tx.conn.execute(
                        "UPDATE cases SET status = 'closed', resolved_at = ? WHERE id = ?",
                        &params![tx.now, case_id],
                    )?;
                    changes.insert("status".into(), json!("closed"));
                }
            }
            RuleAction::RequireApproval => {
                if case.approval_rule.as_deref() != Some(rule.name.as_str()) {
                    tx.conn.execute(
                        "UPDATE cases SET approval_rule = ? WHERE id = ?",
                        &params![rule.name.as_str(), case_id],
                    )?;
                    changes.insert("approval_required".into(), json!(true));
                }
            }
            RuleAction::AutoAnswer { .. } => {}
        }
    }
    tags.sort();
    tags.dedup();
    if tags != case.tags {
        tx.conn.execute("UPDATE cases SET tags = ? WHERE id = ?", &params![json!(tags).to_string(), case_id])?;
        changes.insert("tags".into(), json!(tags));
    }
    if !changes.is_empty() {
        tx.conn.execute("UPDATE cases SET updated_at = ? WHERE id = ?", &params![tx.now, case_id])?;
        let payload = json!({ "case_id": case_id, "changes": Value::Object(changes),
                              "rule": { "id": rule.id, "name": rule.name }, "message_id": message_id });
        let ev = tx.event(EventKind::CaseUpdated, Some(case_id), Some(customer_id), &payload)?;
        tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
    }
    if let Some(policy) = policy {
        for action in &rule.actions {
            if let RuleAction::AutoAnswer { canned_id } = action {
                crate::assist::auto_answer_with(
                    tx,
                    message_id,
                    analysis,
                    policy,
                    *canned_id,
                    Some((rule.id, &rule.name)),
                )?;
            }
        }
    }
    Ok(())
}
