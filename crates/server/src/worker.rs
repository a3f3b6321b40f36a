//! Background job workers: claim due jobs with a lease, run each with the handler of its kind
//! (see [`crate::jobs`]), record the outcome with its effect.
//! Handlers are idempotent: a job whose node died is re-run by another after its lease.
//!
//! A job never runs twice at once: while its handler runs, the worker renews the lease
//! (every third of it), and stops the handler before the lease could run out unrenewed, or
//! at once when a renewal finds that the claim is gone. Renewals and the outcome match the
//! claim itself (node and attempt), so a stale run cannot touch a newer one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kontor_store::jobs::{ClaimedJob, JobOutcome};
use tokio::sync::Semaphore;

use crate::jobs::JobResult;
use crate::AppState;

/// Starts the claim loop of this node.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let cfg = state.config.jobs.clone();
        let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        loop {
            let free = slots.available_permits();
            if free == 0 {
                let _ = slots.clone().acquire_owned().await.map(drop);
                continue;
            }
            // The lease runs from the claim's commit, which is after this instant.
            let claimed_at = Instant::now();
            match state.store.claim_jobs(state.node.clone(), free as i64, lease_ms(&state)).await {
                Ok(jobs) if !jobs.is_empty() => {
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let st = state.clone();
                        tokio::spawn(async move {
                            run(&st, job, claimed_at).await;
                            drop(permit);
                        });
                    }
                }
                Ok(_) => {
                    let _ = tokio::time::timeout(Duration::from_millis(cfg.poll_ms), state.jobs_ready.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot claim jobs; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

fn lease_ms(state: &AppState) -> i64 {
    state.config.jobs.lease_secs.saturating_mul(1000)
}

async fn run(state: &AppState, job: ClaimedJob, claimed_at: Instant) {
    let handler = state.jobs.run(state, job.clone());
    let JobResult { outcome, effect } = tokio::select! {
        done = handler => done,
        () = hold_lease(state, &job, claimed_at) => {
            // Dropping the handler stops it (an HTTP request in flight is cancelled).
            state.metrics.jobs.with_label_values(&[&job.kind, "lost"]).inc();
            tracing::warn!(job_id = job.id, attempts = job.attempts, "Job lease lost; stopped its handler.");
            return;
        }
    };
    let label = match &outcome {
        JobOutcome::Done => "done",
        JobOutcome::Retry { .. } if job.attempts < job.max_attempts => "retry",
        _ => "dead",
    };
    state.metrics.jobs.with_label_values(&[&job.kind, label]).inc();
    if let JobOutcome::Retry { error, .. } | JobOutcome::Fail { error } = &outcome {
        tracing::warn!(job_id = job.id, attempts = job.attempts, %error, outcome = label, "Job failed.");
    }
    // The outcome must be recorded; if the database is away, keep trying until the lease
    // would run out (then another node redoes the idempotent job). The effect is committed
    // with the outcome, in the same transaction.
    for attempt in 0..30 {
        match state.store.finish_claimed_job(&job, state.node.clone(), outcome.clone(), effect.clone()).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(
                    job_id = job.id,
                    attempts = job.attempts,
                    "Job lease lost before its outcome was recorded."
                );
                return;
            }
            Err(e) if e.is_unavailable() => {
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1).min(10))).await
            }
            Err(e) => {
                tracing::error!(job_id = job.id, error = %e, "Cannot record job outcome.");
                return;
            }
        }
    }
}

/// Renews the lease of `job` while its handler runs; resolves only when the lease is lost:
/// a renewal found the claim gone, or no renewal succeeded in time and the lease is about to
/// run out (then another node may claim the job, so this run must end first).
async fn hold_lease(state: &AppState, job: &ClaimedJob, claimed_at: Instant) {
    let lease = Duration::from_millis(lease_ms(state).max(1) as u64);
    // Stop this long before the lease would run out unrenewed (clock steps, a slow drop).
    let margin = lease / 5;
    let every = lease / 3;
    let mut held_until = claimed_at + lease;
    let mut pause = every;
    loop {
        let stop_at = held_until - margin;
        tokio::time::sleep_until((Instant::now() + pause).min(stop_at)).await;
        let sent = Instant::now();
        if sent >= stop_at {
            return;
        }
        let renewal = state.store.renew_job_lease(job.id, state.node.clone(), job.attempts, lease_ms(state));
        match tokio::time::timeout_at(stop_at, renewal).await {
            Ok(Ok(true)) => {
                held_until = sent + lease;
                pause = every;
            }
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                tracing::warn!(job_id = job.id, error = %e, "Cannot renew a job's lease; trying again.");
                pause = every / 4;
            }
            Err(_) => return,
        }
    }
}
