//! `analyse_messages`: analyses the messages received after the analysis cursor (a batch at
//! a time, off the async threads) and stores the results with the job's completion (see
//! `kontor_store::assist`). Never part of an ingest transaction.

use kontor_store::assist::{AnalyseMessages, AnalysedBatch, AutoAnswerPolicy};

use super::{Job, JobResult, JobRun};
use crate::AppState;

#[async_trait::async_trait]
impl Job for AnalyseMessages {
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult {
        let pending = match state.store.pending_analysis(state.config.assist.batch).await {
            Ok(p) => p,
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let analyser = match state.assist.analyser(&state.store).await {
            Ok(a) => a,
            Err(e) => return JobResult::retry(state, &run, format!("no intent model: {e}")),
        };
        let messages = pending.messages;
        let started = std::time::Instant::now();
        let analysed = tokio::task::spawn_blocking(move || {
            let now = kontor_core::Timestamp::now();
            let today = chrono::Utc::now().date_naive();
            messages
                .iter()
                .map(|m| (m.id, analyser.analyse(m.subject.as_deref(), &m.text, today, now)))
                .collect::<Vec<_>>()
        })
        .await;
        let analyses = match analysed {
            Ok(a) => a,
            Err(e) => return JobResult::retry(state, &run, format!("the analysis stopped: {e}")),
        };
        state.metrics.assist_analysed.inc_by(analyses.len() as u64);
        state.metrics.assist_seconds.observe(started.elapsed().as_secs_f64());
        let cfg = &state.config.assist;
        let auto = AutoAnswerPolicy {
            deliverable: state.deliverable_channels(),
            quiet_us: i64::try_from(cfg.auto_answer_quiet_hours.saturating_mul(3_600_000_000)).unwrap_or(i64::MAX),
            min_confidence: cfg.auto_answer_min_confidence,
            max_attempts: state.store.settings().job_max_attempts,
        };
        let batch =
            AnalysedBatch { from: pending.from, upto: pending.upto, more: pending.more, analyses, auto: Some(auto) };
        JobResult::done().with_effect(batch.into_effect())
    }
}
