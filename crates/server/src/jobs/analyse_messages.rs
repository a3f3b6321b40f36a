//! `analyse_messages`: analyses the messages received after the analysis cursor (a batch at
//! a time, off the async threads), decides which rules each meets, and stores the results in
//! short writes of a few messages each, every one moving the cursor (see
//! `kontor_store::assist`): analyses, rule actions, automatic answers. The job's completion
//! queues the next batch while a backlog remains. Never part of an ingest transaction.

use std::collections::{HashMap, HashSet};

use kontor_assist::rules::{matches, RuleInput};
use kontor_store::assist::{analysis_done_effect, AnalyseMessages, AnalysedBatch, AutoAnswerPolicy, ROWS_PER_WRITE};
use kontor_store::rules::MatchedRule;

use super::{Job, JobResult, JobRun};
use crate::assist::business_hours;
use crate::AppState;

/// Rules, alerts and automatic answers act only on messages received this recently (one hour):
/// an older backlog is analysed, but its cases are left as they are.
const ACT_WINDOW_US: i64 = 3_600_000_000;

/// The analysis of a message the analyser failed on.
fn unanalysable(now: kontor_core::Timestamp) -> kontor_core::MessageAnalysis {
    kontor_core::MessageAnalysis {
        language: None,
        intent: "other".into(),
        intent_confidence: 0.0,
        intent_source: "model".into(),
        intents: Vec::new(),
        sentiment: "neutral".into(),
        sentiment_score: 0.0,
        entities: Vec::new(),
        analysed_at: now,
    }
}

#[async_trait::async_trait]
impl Job for AnalyseMessages {
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult {
        let pending = match state.store.pending_analysis(state.config.assist.batch).await {
            Ok(p) => p,
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let rules = match state.store.rules().await {
            Ok(r) => r.into_iter().filter(|r| r.enabled).collect::<Vec<_>>(),
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let hours = match business_hours(state).await {
            Ok(h) => h,
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let analyser = match state.assist.analyser(&state.store).await {
            Ok(a) => a,
            Err(e) => return JobResult::retry(state, &run, format!("no intent model: {e}")),
        };
        let messages = pending.messages;
        let languages = pending.customer_languages;
        let started = std::time::Instant::now();
        let analysed = state
            .assist
            .in_background(move || {
                let now = kontor_core::Timestamp::now();
                let today = chrono::Utc::now().date_naive();
                let mut analyses = Vec::with_capacity(messages.len());
                let mut matched: HashMap<i64, Vec<MatchedRule>> = HashMap::new();
                let recent = now.as_micros().saturating_sub(ACT_WINDOW_US);
                let mut act_on = HashSet::new();
                for m in &messages {
                    // One message must never stop the analysis of all after it: a panic in the
                    // analysis is logged and the message gets an empty analysis.
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        analyser.analyse(m.subject.as_deref(), &m.text, today, now)
                    }));
                    let a = match run {
                        Ok(a) => a,
                        Err(_) => {
                            tracing::error!(
                                message_id = m.id,
                                "The analysis of a message failed; it is stored as other."
                            );
                            unanalysable(now)
                        }
                    };
                    if m.created_at.as_micros() >= recent {
                        act_on.insert(m.id);
                    }
                    let input = RuleInput {
                        channel: m.channel,
                        subject: m.subject.as_deref(),
                        text: &m.text,
                        analysis: &a,
                        customer_language: languages.get(&m.customer_id).map(String::as_str),
                        at: chrono::DateTime::from_timestamp_micros(m.created_at.as_micros()).unwrap_or_default(),
                    };
                    let met: Vec<MatchedRule> = rules
                        .iter()
                        .filter(|r| matches(&r.conditions, &input, hours.as_ref()))
                        .map(|r| MatchedRule { id: r.id, name: r.name.clone(), actions: r.actions.clone() })
                        .collect();
                    if !met.is_empty() {
                        matched.insert(m.id, met);
                    }
                    analyses.push((m.id, a));
                }
                (analyses, matched, act_on)
            })
            .await;
        let (analyses, matched, act_on) = match analysed {
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
            public_channels: cfg.public_channels.clone(),
            max_per_hour: cfg.auto_answer_max_per_hour,
        };
        let batch = AnalysedBatch {
            from: pending.from,
            upto: pending.upto,
            analyses,
            auto: Some(auto),
            rules: matched,
            public_channels: cfg.public_channels.clone(),
            act_on,
        };
        // The results go in parts of a few messages, each its own short write, so ingest —
        // which shares the writer — never waits behind a whole batch. A part another run stored
        // first is skipped (the cursor tells); one that fails is redone by the retry, from the
        // cursor where the parts before it left it.
        for part in batch.into_parts(&pending.received, ROWS_PER_WRITE) {
            if let Err(e) = state.store.store_analysed(part).await {
                return JobResult::retry(state, &run, e.to_string());
            }
        }
        JobResult::done().with_effect(analysis_done_effect(pending.more))
    }
}
