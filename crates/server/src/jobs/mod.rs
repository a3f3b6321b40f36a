//! Typed background jobs: each kind is a payload type (`kontor_store::jobs::JobPayload`, with its
//! kind constant) and a handler in a file of its own here; the worker dispatches through the
//! [`JobRegistry`]. A handler returns its outcome together with its effect, which the store
//! commits in the same transaction as the job's completion (and only while the run still
//! holds its claim), so a crash means a retry, never a half-recorded job.
//!
//! Adding a job kind: a payload struct implementing `JobPayload`, a file here implementing
//! [`Job`] for it, and one line in [`JobRegistry::standard`].

mod analyse_messages;
mod deliver_message;
mod retrain_intents;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use kontor_store::jobs::{ClaimedJob, JobEffect, JobOutcome, JobPayload};

use crate::AppState;

/// How a run ended, and what it changes besides the job's own row.
pub struct JobResult {
    pub outcome: JobOutcome,
    /// Committed with the outcome.
    pub effect: Option<JobEffect>,
}

impl JobResult {
    /// Done, with no effect of its own.
    pub fn done() -> Self {
        JobResult { outcome: JobOutcome::Done, effect: None }
    }

    /// Failed for good, with no effect of its own.
    pub fn fail(error: impl Into<String>) -> Self {
        JobResult { outcome: JobOutcome::Fail { error: error.into() }, effect: None }
    }

    /// Run again after the configured backoff for this attempt.
    pub fn retry(state: &AppState, run: &JobRun, error: impl Into<String>) -> Self {
        JobResult {
            outcome: JobOutcome::Retry { error: error.into(), delay_ms: run.retry_delay_ms(state) },
            effect: None,
        }
    }

    /// The same outcome with `effect` committed alongside.
    pub fn with_effect(self, effect: JobEffect) -> Self {
        JobResult { effect: Some(effect), ..self }
    }
}

/// The claim a handler runs under.
#[derive(Debug, Clone, Copy)]
pub struct JobRun {
    pub id: i64,
    /// Attempts including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

impl JobRun {
    /// The backoff before the next attempt (exponential with jitter, from `[jobs]`).
    pub fn retry_delay_ms(&self, state: &AppState) -> u64 {
        let cfg = &state.config.jobs;
        kontor_core::retry::backoff_ms(self.attempts.max(1) as u32, cfg.backoff_base_ms, cfg.backoff_max_ms)
    }
}

/// A job kind's handler. Must be idempotent: a run whose node died is run again.
#[async_trait::async_trait]
pub trait Job: JobPayload {
    /// Does the work; the store records the outcome and commits the effect.
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult;
}

type Handler = Arc<dyn Fn(AppState, ClaimedJob) -> BoxFuture<'static, JobResult> + Send + Sync>;

/// The handlers by job kind.
#[derive(Clone, Default)]
pub struct JobRegistry {
    handlers: BTreeMap<&'static str, Handler>,
}

impl std::fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl JobRegistry {
    /// Every job kind Kontor runs.
    pub fn standard() -> Self {
        let mut r = JobRegistry::default();
        r.register::<kontor_store::messages::DeliverMessage>();
        r.register::<kontor_store::assist::AnalyseMessages>();
        r.register::<kontor_store::assist::RetrainIntents>();
        r
    }

    /// Adds the handler of `J` (its payload is decoded from the job's JSON before it runs).
    pub fn register<J: Job>(&mut self) -> &mut Self {
        let handler: Handler = Arc::new(|state: AppState, job: ClaimedJob| {
            Box::pin(async move {
                let payload: J = match serde_json::from_value(job.payload.clone()) {
                    Ok(p) => p,
                    Err(e) => return JobResult::fail(format!("job payload of kind {} is not valid: {e}", J::KIND)),
                };
                let run = JobRun { id: job.id, attempts: job.attempts, max_attempts: job.max_attempts };
                payload.run(&state, run).await
            })
        });
        self.handlers.insert(J::KIND, handler);
        self
    }

    /// The registered kinds.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// Runs a claimed job with the handler of its kind; an unknown kind fails for good.
    pub async fn run(&self, state: &AppState, job: ClaimedJob) -> JobResult {
        match self.handlers.get(job.kind.as_str()) {
            Some(handler) => handler(state.clone(), job).await,
            None => JobResult::fail(format!("unknown job kind {}", job.kind)),
        }
    }
}
