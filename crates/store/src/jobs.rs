//! The durable job queue: enqueue inside a transaction, claim with a lease, finish with
//! retry (exponential backoff with jitter) or dead letter.

use crate::db::Row;
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

/// A claimed job from a row of `id, kind, payload, attempts, max_attempts`.
fn claimed_from_row(r: &Row) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: r.req_i64(0, "jobs.id")?,
        kind: r.req_text(1, "jobs.kind")?,
        payload: serde_json::from_str(&r.req_text(2, "jobs.payload")?)
            .map_err(|e| StoreError::Corrupt(format!("jobs.payload is not JSON: {e}")))?,
        attempts: r.req_i64(3, "jobs.attempts")?,
        max_attempts: r.req_i64(4, "jobs.max_attempts")?,
    })
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

/// A job's payload: a serialisable struct with its kind (the name in the `jobs` table) and
/// queue. Each kind has one handler, registered with the worker.
pub trait JobPayload: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The job's kind, stored with it and used to find its handler.
    const KIND: &'static str;
    /// The queue it runs in.
    const QUEUE: &'static str = "default";
}

/// How a job's run ended, as recorded: the effect of a job sees this, so it can act on the
/// final outcome (a delivery marks its message failed only when no retry is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Done for good.
    Done,
    /// Will run again.
    Retrying,
    /// In the dead letter.
    Dead,
}

/// The recorded end of one run, as a job's effect sees it.
#[derive(Debug, Clone, Copy)]
pub struct JobFinish<'a> {
    pub end: JobEnd,
    /// The run's error, for a retry or the dead letter.
    pub error: Option<&'a str>,
    /// Attempts including this run.
    pub attempts: i64,
}

/// What a job changes besides its own row, committed in the same transaction as its outcome
/// (and only if the run still held its claim). It may be called again if that transaction
/// failed and recording the outcome is retried (its earlier changes were rolled back then).
pub type JobEffect =
    std::sync::Arc<dyn for<'t, 'c> Fn(&mut Tx<'c>, JobFinish<'t>) -> Result<(), StoreError> + Send + Sync>;

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
        .ok_or_else(|| StoreError::Database("job insert returned no id".into()))?
        .req_i64(0, "jobs.id")
}

/// Adds a typed job in the caller's transaction; it becomes visible with the commit.
pub fn enqueue_job<J: JobPayload>(
    tx: &mut Tx<'_>,
    job: &J,
    max_attempts: i64,
    delay_ms: i64,
) -> Result<i64, StoreError> {
    let payload = serde_json::to_value(job).map_err(|e| StoreError::Database(format!("job payload: {e}")))?;
    enqueue(tx, J::QUEUE, J::KIND, &payload, max_attempts, delay_ms)
}

impl Store {
    /// Claims up to `limit` due jobs (or jobs whose lease ran out) for `node`, leasing them
    /// for `lease_ms`. On PostgreSQL, `FOR UPDATE SKIP LOCKED` keeps nodes from taking the same job.
    ///
    /// A claimed row that cannot be read (a NULL or a value of the wrong kind where a value is
    /// required, a payload that is not JSON) is not handed out and goes to the dead letter at
    /// once, its [`StoreError::Corrupt`] reason as `last_error`: failing the claim instead
    /// would stop the whole queue at that row, and defaulting its values would run it with
    /// made-up ones.
    pub async fn claim_jobs(&self, node: String, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedJob>, StoreError> {
        self.write_relaxed(move |tx| {
            let lock = if tx.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
            let now = tx.now;
            let sql = format!(
                "UPDATE jobs SET status = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, updated_at = ? \
                 WHERE id IN (SELECT id FROM jobs WHERE (status = 'queued' AND run_at <= ?) \
                 OR (status = 'running' AND locked_until < ?) ORDER BY run_at, id LIMIT ?{lock}) \
                 RETURNING id, kind, payload, attempts, max_attempts"
            );
            let until = now.saturating_add(lease_ms.saturating_mul(1000));
            let rows = tx.conn.query(&sql, &params![node.as_str(), until, now, now, now, limit])?;
            let mut jobs = Vec::with_capacity(rows.len());
            for r in &rows {
                match claimed_from_row(r) {
                    Ok(job) => jobs.push(job),
                    Err(error @ StoreError::Corrupt(_)) => {
                        let id = r.req_i64(0, "jobs.id")?;
                        tracing::error!(job_id = id, %error, "A job row cannot be read; it goes to the dead letter.");
                        tx.conn.execute(
                            "UPDATE jobs SET status = 'dead', last_error = ?, locked_by = NULL, locked_until = NULL \
                             WHERE id = ?",
                            &params![error.to_string(), id],
                        )?;
                    }
                    Err(e) => return Err(e),
                }
            }
            jobs.sort_by_key(|j| j.id);
            Ok(jobs)
        })
        .await
    }

    /// Extends the lease of a job this node still runs: `node` must hold it with the claim
    /// that counted `attempts` (a node that lost its lease and claimed the job again holds a
    /// newer claim, so a stale run cannot renew it). Returns false if the claim is gone; the
    /// caller must then stop the job's handler.
    pub async fn renew_job_lease(
        &self,
        job_id: i64,
        node: String,
        attempts: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write_relaxed(move |tx| {
            let until = tx.now.saturating_add(lease_ms.saturating_mul(1000));
            let n = tx.conn.execute(
                "UPDATE jobs SET locked_until = ?, updated_at = ? \
                 WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
                &params![until, tx.now, job_id, node.as_str(), attempts],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Records how a claimed job ended, together with its effect (committed with it). Does nothing
    /// (returns false) if `node` no longer holds the job's lease, whichever claim it was.
    /// Job runners use [`Store::finish_claimed_job`], which also checks the claim.
    pub async fn finish_job(
        &self,
        job_id: i64,
        node: String,
        outcome: JobOutcome,
        effect: Option<JobEffect>,
    ) -> Result<bool, StoreError> {
        self.finish(job_id, node, None, outcome, effect, false).await
    }

    /// Records how the run of `job` (as claimed) ended, together with its effect, in one
    /// transaction. Does nothing (returns false) unless `node` still holds that very claim:
    /// after a lease ran out and the job was claimed again (by any node, this one included),
    /// the older run cannot record its outcome or effect over the newer one.
    pub async fn finish_claimed_job(
        &self,
        job: &ClaimedJob,
        node: String,
        outcome: JobOutcome,
        effect: Option<JobEffect>,
    ) -> Result<bool, StoreError> {
        // The analysis job's completion writes no events (its results are stored, durably,
        // before it): lost in a power failure, the job stays running until its lease runs
        // out and the next one continues from the cursor.
        let relaxed = job.kind == crate::assist::AnalyseMessages::KIND;
        self.finish(job.id, node, Some(job.attempts), outcome, effect, relaxed).await
    }

    async fn finish(
        &self,
        job_id: i64,
        node: String,
        claim: Option<i64>,
        outcome: JobOutcome,
        effect: Option<JobEffect>,
        relaxed: bool,
    ) -> Result<bool, StoreError> {
        let record = move |tx: &mut Tx<'_>| {
            let Some(row) = tx.conn.query_opt(
                "SELECT attempts, max_attempts FROM jobs WHERE id = ? AND status = 'running' AND locked_by = ?",
                &params![job_id, node.as_str()],
            )?
            else {
                return Ok(false);
            };
            let (attempts, max_attempts) = (row.req_i64(0, "jobs.attempts")?, row.req_i64(1, "jobs.max_attempts")?);
            if claim.is_some_and(|a| a != attempts) {
                return Ok(false);
            }
            let now = tx.now;
            let (end, error, run_at) = match &outcome {
                JobOutcome::Done => (JobEnd::Done, None, now),
                JobOutcome::Retry { error, delay_ms } if attempts < max_attempts => {
                    let delay_us = i64::try_from(*delay_ms).unwrap_or(i64::MAX).saturating_mul(1000);
                    (JobEnd::Retrying, Some(error.clone()), now.saturating_add(delay_us))
                }
                JobOutcome::Retry { error, .. } | JobOutcome::Fail { error } => {
                    (JobEnd::Dead, Some(error.clone()), now)
                }
            };
            let status = match end {
                JobEnd::Done => "done",
                JobEnd::Retrying => "queued",
                JobEnd::Dead => "dead",
            };
            tx.conn.execute(
                "UPDATE jobs SET status = ?, last_error = ?, run_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ? WHERE id = ?",
                &params![status, error.as_deref(), run_at, now, job_id],
            )?;
            if let Some(effect) = effect {
                effect(tx, JobFinish { end, error: error.as_deref(), attempts })?;
            }
            Ok(true)
        };
        if relaxed {
            self.write_relaxed(record).await
        } else {
            self.write(record).await
        }
    }

    /// How many jobs are in each state.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.read(|c| {
            let mut s = QueueStats::default();
            for r in c.query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])? {
                let count = r.req_i64(1, "COUNT(*) of jobs")?;
                match r.req_text(0, "jobs.status")?.as_str() {
                    "queued" => s.queued = count,
                    "running" => s.running = count,
                    "dead" => s.dead = count,
                    "done" => s.done = count,
                    _ => {}
                }
            }
            Ok(s)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreSettings;
    use serde_json::json;

    /// A store with one queued job.
    async fn store_with_job() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("k.db").display());
        let store = Store::open(&url, StoreSettings::default()).unwrap();
        store.write(|tx| enqueue(tx, "outbound", "test_job", &json!({}), 8, 0)).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn only_the_current_claim_renews_and_finishes_a_job() {
        let (_dir, store) = store_with_job().await;
        // A lease that has run out at once: the same node claims the job again.
        let first = store.claim_jobs("node-a".into(), 10, -1).await.unwrap().remove(0);
        let second = store.claim_jobs("node-a".into(), 10, 30_000).await.unwrap().remove(0);
        assert_eq!((first.id, first.attempts, second.attempts), (second.id, 1, 2));
        assert!(!store.renew_job_lease(first.id, "node-a".into(), first.attempts, 30_000).await.unwrap());
        assert!(!store.renew_job_lease(first.id, "node-b".into(), second.attempts, 30_000).await.unwrap());
        assert!(store.renew_job_lease(first.id, "node-a".into(), second.attempts, 30_000).await.unwrap());
        assert!(!store.finish_claimed_job(&first, "node-a".into(), JobOutcome::Done, None).await.unwrap());
        assert_eq!(store.queue_stats().await.unwrap().running, 1, "the stale run changed nothing");
        assert!(store.finish_claimed_job(&second, "node-a".into(), JobOutcome::Done, None).await.unwrap());
        assert!(!store.renew_job_lease(first.id, "node-a".into(), second.attempts, 30_000).await.unwrap());
        assert_eq!(store.queue_stats().await.unwrap().done, 1);
    }

    #[tokio::test]
    async fn a_renewed_lease_is_not_claimed_by_another_node() {
        let (_dir, store) = store_with_job().await;
        let job = store.claim_jobs("node-a".into(), 10, -1).await.unwrap().remove(0);
        assert!(store.renew_job_lease(job.id, "node-a".into(), job.attempts, 30_000).await.unwrap());
        assert!(store.claim_jobs("node-b".into(), 10, 30_000).await.unwrap().is_empty());
    }
}
