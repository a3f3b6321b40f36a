//! The durable job queue: enqueue inside a transaction, claim with a lease, finish with
//! retry (exponential backoff with jitter) or dead letter.

use kontor_core::DeliveryState;
use serde_json::json;

use super::load_message;
use crate::writer::Tx;
use crate::{params, Backend, Store, StoreError};

/// A job claimed by this node.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Attempts including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// How a job run ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    /// Done; never runs again.
    Done,
    /// Failed in a way that may pass later: run again after `delay_ms` unless attempts are used up.
    Retry { error: String, delay_ms: u64 },
    /// Failed for good: dead letter now.
    Fail { error: String },
}

/// The effect of a delivery job on its message, committed with the job's state.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub message_id: i64,
    pub state: DeliveryState,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
}

/// Job counts by status.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    pub done: i64,
}

/// Adds a job in the caller's transaction; it becomes visible with the commit.
pub(crate) fn enqueue(
    tx: &mut Tx<'_>,
    queue: &str,
    kind: &str,
    payload: &serde_json::Value,
    max_attempts: i64,
    delay_ms: i64,
) -> Result<i64, StoreError> {
    tx.conn
        .query_opt(
            "INSERT INTO jobs (queue, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at) \
             VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?) RETURNING id",
            &params![queue, kind, payload.to_string(), max_attempts, tx.now + delay_ms * 1000, tx.now, tx.now],
        )?
        .map(|r| r.i64(0))
        .ok_or_else(|| StoreError::Database("job insert returned no id".into()))
}

impl Store {
    /// Claims up to `limit` due jobs (or jobs whose lease ran out) for `node`, leasing them
    /// for `lease_ms`. On PostgreSQL, `FOR UPDATE SKIP LOCKED` keeps nodes from taking the same job.
    pub async fn claim_jobs(&self, node: String, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedJob>, StoreError> {
        self.write(move |tx| {
            let lock = if tx.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
            let now = tx.now;
            let sql = format!(
                "UPDATE jobs SET status = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, updated_at = ? \
                 WHERE id IN (SELECT id FROM jobs WHERE (status = 'queued' AND run_at <= ?) \
                 OR (status = 'running' AND locked_until < ?) ORDER BY run_at, id LIMIT ?{lock}) \
                 RETURNING id, kind, payload, attempts, max_attempts"
            );
            let rows = tx.conn.query(&sql, &params![node.as_str(), now + lease_ms * 1000, now, now, now, limit])?;
            let mut jobs: Vec<ClaimedJob> = rows
                .iter()
                .map(|r| ClaimedJob {
                    id: r.i64(0),
                    kind: r.text(1),
                    payload: serde_json::from_str(&r.text(2)).unwrap_or(serde_json::Value::Null),
                    attempts: r.i64(3),
                    max_attempts: r.i64(4),
                })
                .collect();
            jobs.sort_by_key(|j| j.id);
            Ok(jobs)
        })
        .await
    }

    /// Records how a claimed job ended, together with its effect on a message. Does nothing
    /// (returns false) if `node` no longer holds the job's lease.
    pub async fn finish_job(
        &self,
        job_id: i64,
        node: String,
        outcome: JobOutcome,
        delivery: Option<DeliveryUpdate>,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let Some(row) = tx.conn.query_opt(
                "SELECT attempts, max_attempts FROM jobs WHERE id = ? AND status = 'running' AND locked_by = ?",
                &params![job_id, node.as_str()],
            )?
            else {
                return Ok(false);
            };
            let (attempts, max_attempts) = (row.i64(0), row.i64(1));
            let now = tx.now;
            let (status, error, run_at) = match &outcome {
                JobOutcome::Done => ("done", None, now),
                JobOutcome::Retry { error, delay_ms } if attempts < max_attempts => {
                    ("queued", Some(error.clone()), now + (*delay_ms as i64) * 1000)
                }
                JobOutcome::Retry { error, .. } | JobOutcome::Fail { error } => ("dead", Some(error.clone()), now),
            };
            tx.conn.execute(
                "UPDATE jobs SET status = ?, last_error = ?, run_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ? WHERE id = ?",
                &params![status, error.as_deref(), run_at, now, job_id],
            )?;
            let delivery = match (status, delivery) {
                // A retry leaves the message queued.
                ("queued", _) => None,
                ("dead", Some(d)) => Some(DeliveryUpdate { state: DeliveryState::Failed, error: error.clone(), ..d }),
                (_, d) => d,
            };
            if let Some(d) = delivery {
                tx.conn.execute(
                    "UPDATE messages SET delivery_state = ?, delivery_error = ?, provider_message_id = COALESCE(?, provider_message_id) WHERE id = ?",
                    &params![d.state.as_str(), d.error.as_deref(), d.provider_message_id.as_deref(), d.message_id],
                )?;
                let m = load_message(tx.conn, d.message_id)?;
                let ev = tx.event(
                    "message.delivery",
                    Some(m.case_id),
                    Some(m.customer_id),
                    &json!({ "message_id": m.id, "state": d.state, "error": d.error, "provider_message_id": m.provider_message_id, "attempts": attempts }),
                )?;
                tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, m.case_id])?;
            }
            Ok(true)
        })
        .await
    }

    /// How many jobs are in each state.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.read(|c| {
            let mut s = QueueStats::default();
            for r in c.query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])? {
                match r.text(0).as_str() {
                    "queued" => s.queued = r.i64(1),
                    "running" => s.running = r.i64(1),
                    "dead" => s.dead = r.i64(1),
                    "done" => s.done = r.i64(1),
                    _ => {}
                }
            }
            Ok(s)
        })
        .await
    }
}
