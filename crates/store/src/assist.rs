//! The digital assistant's data: message analyses, the analysis job's cursor, training
//! examples from agents, trained models and automation levels per intent.
//!
//! **Analysis after ingest.** The analysis job (`analyse_messages`) follows the event log:
//! it reads the `message.received` events after its cursor (event ids become visible in
//! commit order, so nothing behind the cursor can appear later), analyses their messages off
//! the writer, and stores the results in parts of a few messages ([`ROWS_PER_WRITE`]), each a
//! short transaction of its own ([`Store::store_analysed`]) so that ingest, which shares the
//! single writer, never waits behind a whole batch. Each part stores its analyses, appends
//! `message.analysed` events, sets the cases' intents and moves the cursor, which it compares
//! first: a second run that raced it writes nothing. Ingest itself writes nothing for the
//! assistant. At most one analysis job
//! is queued or running at a time; its completion queues its successor while a backlog
//! remains ([`analysis_done_effect`]), and [`Store::kick_analysis`] queues one when new
//! messages arrived.

use std::collections::HashMap;

use kontor_core::{Direction, EventKind, Message, MessageAnalysis};
use serde_json::json;

use crate::jobs::{enqueue_job, JobEffect, JobEnd, JobPayload};
use crate::records::{message_from_row, MESSAGE_COLS};
use crate::writer::Tx;
use crate::{params, Conn, Store, StoreError, Val};

/// Name of the analysis job's cursor (the last event id it has read) in `channel_cursors`.
pub const ANALYSIS_CURSOR: &str = "assist.analysis";

/// The analysis job: analyses the messages received after the cursor, a batch at a time.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AnalyseMessages {}

impl JobPayload for AnalyseMessages {
    const KIND: &'static str = "analyse_messages";
    const QUEUE: &'static str = "assist";
}

/// Attempts an analysis job gets (it only fails while the database is away).
const ANALYSIS_MAX_ATTEMPTS: i64 = 1000;

/// Inbound messages waiting for their analysis.
#[derive(Debug, Clone)]
pub struct PendingAnalysis {
    /// The cursor as read (the effect moves it only from here).
    pub from: i64,
    /// Where the cursor goes once these are stored.
    pub upto: i64,
    /// Inbound messages (not notes), in the order they were received.
    pub messages: Vec<Message>,
    /// True when the batch was full: more may wait behind it.
    pub more: bool,
    /// The stored language of each message's customer, by customer id.
    pub customer_languages: HashMap<i64, String>,
    /// The `message.received` event of each message, by message id.
    pub received: HashMap<i64, i64>,
}

/// The analyses of one batch, stored by the analysis job's effect.
#[derive(Debug, Clone)]
pub struct AnalysedBatch {
    pub from: i64,
    pub upto: i64,
    /// Message id and its analysis.
    pub analyses: Vec<(i64, MessageAnalysis)>,
    /// Automatic answers (intents at level `auto`); `None`: none are sent.
    pub auto: Option<AutoAnswerPolicy>,
    /// The rules each message met, in order, by message id.
    pub rules: HashMap<i64, Vec<crate::rules::MatchedRule>>,
    /// Channels that are public: a negative message on one raises an alert.
    pub public_channels: Vec<kontor_core::Channel>,
    /// The messages rules, alerts and automatic answers act on: those received recently. An
    /// older backlog (the first start on an existing installation, analysis switched back on)
    /// is analysed, but nothing is done to its cases.
    pub act_on: std::collections::HashSet<i64>,
}

fn cursor_value(c: &mut Conn) -> Result<i64, StoreError> {
    match c.query_opt("SELECT value FROM channel_cursors WHERE name = ?", &params![ANALYSIS_CURSOR])? {
        Some(r) => r
            .req_text(0, "channel_cursors.value")?
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("the {ANALYSIS_CURSOR} cursor is not a number"))),
        None => Ok(0),
    }
}

/// True if a `message.received` event lies after the cursor.
fn backlog_exists(c: &mut Conn) -> Result<bool, StoreError> {
    let cursor = cursor_value(c)?;
    Ok(c.query_opt(
        "SELECT 1 FROM events WHERE id > ? AND kind = ? LIMIT 1",
        &params![cursor, EventKind::MessageReceived.as_str()],
    )?
    .is_some())
}

/// True if an analysis job is queued or running.
fn job_pending(c: &mut Conn) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        "SELECT 1 FROM jobs WHERE kind = ? AND status IN ('queued', 'running') LIMIT 1",
        &params![AnalyseMessages::KIND],
    )?
    .is_some())
}

/// Queues an analysis job unless one is queued or running (`tx` holds the write lock, so two
/// nodes cannot both queue one).
fn enqueue_analysis(tx: &mut Tx<'_>) -> Result<bool, StoreError> {
    if job_pending(tx.conn)? {
        return Ok(false);
    }
    enqueue_job(tx, &AnalyseMessages {}, ANALYSIS_MAX_ATTEMPTS, 0)?;
    Ok(true)
}

/// An analysis as its row stores it (the whole as JSON; intent and source are the columns').
fn analysis_from_row(
    data: &str,
    intent: String,
    confidence: f64,
    source: String,
) -> Result<MessageAnalysis, StoreError> {
    let mut a: MessageAnalysis = serde_json::from_str(data)
        .map_err(|e| StoreError::Corrupt(format!("message_analysis.data is not an analysis: {e}")))?;
    a.intent = intent;
    a.intent_confidence = confidence as f32;
    a.intent_source = source;
    Ok(a)
}

/// The analyses of the messages of one case, by message id.
pub(crate) fn analyses_of_case(c: &mut Conn, case_id: i64) -> Result<HashMap<i64, MessageAnalysis>, StoreError> {
    let rows = c.query(
        "SELECT a.message_id, a.data, a.intent, a.intent_confidence, a.intent_source FROM message_analysis a \
         JOIN messages m ON m.id = a.message_id WHERE m.case_id = ?",
        &params![case_id],
    )?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let confidence = r.f64(3);
        let message_id = r.req_i64(0, "message_analysis.message_id")?;
        let read = analysis_from_row(
            &r.req_text(1, "message_analysis.data")?,
            r.req_text(2, "message_analysis.intent")?,
            confidence,
            r.req_text(4, "message_analysis.intent_source")?,
        );
        // One unreadable analysis must not make the case (and its replies' delivery) fail.
        match read {
            Ok(a) => {
                out.insert(message_id, a);
            }
            Err(error) => tracing::error!(message_id, %error, "A stored analysis cannot be read; it is left out."),
        }
    }
    Ok(out)
}

/// Puts each message's analysis (if it has one) with it.
pub(crate) fn attach_analyses(c: &mut Conn, case_id: i64, messages: &mut [Message]) -> Result<(), StoreError> {
    let mut analyses = analyses_of_case(c, case_id)?;
    for m in messages.iter_mut() {
        m.analysis = analyses.remove(&m.id);
    }
    Ok(())
}

/// Messages per write of the analysis' results: each part is its own short transaction, so
/// an ingest request that arrives meanwhile waits for at most that many rows, not a whole batch
/// (the writer is single and ingest shares it).
pub const ROWS_PER_WRITE: usize = 8;

impl AnalysedBatch {
    /// This batch in parts of up to `rows` messages, in the order of their receipt events,
    /// each moving the cursor from where the part before left it to the receipt event of its
    /// own last message (the last part to where the whole batch goes). `received` gives each
    /// message's receipt event ([`PendingAnalysis::received`]).
    pub fn into_parts(self, received: &HashMap<i64, i64>, rows: usize) -> Vec<AnalysedBatch> {
        let rows = rows.max(1);
        let mut analyses = self.analyses;
        analyses.sort_by_key(|(id, _)| (received.get(id).copied().unwrap_or(i64::MAX), *id));
        let count = analyses.len().div_ceil(rows).max(1);
        let mut parts = Vec::with_capacity(count);
        let mut from = self.from;
        let mut rules = self.rules;
        let mut rest = analyses.into_iter();
        for i in 0..count {
            let chunk: Vec<(i64, MessageAnalysis)> = rest.by_ref().take(rows).collect();
            let last = i + 1 == count;
            // (A message without a known receipt sorts last, so only the last part can end with
            // one; should another, it leaves the cursor where it is rather than guess.)
            let upto = match (last, chunk.last().and_then(|(id, _)| received.get(id))) {
                (true, _) => self.upto,
                (false, Some(event)) => *event,
                (false, None) => from,
            };
            let part_rules = chunk.iter().filter_map(|(id, _)| rules.remove_entry(id)).collect();
            let act_on = chunk.iter().map(|(id, _)| *id).filter(|id| self.act_on.contains(id)).collect();
            parts.push(AnalysedBatch {
                from,
                upto,
                analyses: chunk,
                auto: self.auto.clone(),
                rules: part_rules,
                public_channels: self.public_channels.clone(),
                act_on,
            });
            from = upto;
        }
        parts
    }

    /// Stores the analyses (each once), appends `message.analysed`, sets the intent of cases
    /// that have none, applies rules, alerts and automatic answers to recent messages, and
    /// moves the cursor. If the cursor is no longer where this batch starts, another run
    /// stored it already: nothing is written (false).
    fn store(&self, tx: &mut Tx<'_>, data: &Result<Vec<String>, String>) -> Result<bool, StoreError> {
        let current = cursor_value(tx.conn)?;
        if current != self.from {
            return Ok(false);
        }
        tx.conn.execute(
            "INSERT INTO channel_cursors (name, value, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &params![ANALYSIS_CURSOR, self.upto.to_string(), tx.now],
        )?;
        let data = data.as_ref().map_err(|e| StoreError::Database(format!("analysis as JSON: {e}")))?;
        let stored = store_analyses(tx, &self.analyses, data)?;
        // Automatic answers by intent: read once for the batch.
        let auto_intents = match &self.auto {
            Some(_) => auto_intents(tx.conn)?,
            None => HashMap::new(),
        };
        for (message_id, analysis, placed) in stored {
            if !self.act_on.contains(&message_id) {
                continue;
            }
            if analysis.sentiment == "negative" && self.public_channels.contains(&placed.channel) {
                raise_alert(tx, message_id, &placed)?;
            }
            for rule in self.rules.get(&message_id).into_iter().flatten() {
                crate::rules::apply_rule(tx, message_id, &placed, analysis, rule, self.auto.as_ref())?;
            }
            if let Some(policy) = &self.auto {
                if analysis.intent_confidence >= policy.min_confidence {
                    if let Some(canned_id) = auto_intents.get(analysis.intent.as_str()) {
                        auto_answer_with(tx, message_id, analysis, policy, *canned_id, None)?;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Each analysis as its row stores it (made before the write, off the writer thread).
    fn stored_data(&self) -> Result<Vec<String>, String> {
        self.analyses.iter().map(|(_, a)| serde_json::to_string(a).map_err(|e| e.to_string())).collect()
    }
}

/// The analysis job's effect, committed with its completion once its results are stored
/// ([`Store::store_analysed`]): the finished job's row goes, and the next job is queued while
/// a backlog remains (`more`: the batch was full).
pub fn analysis_done_effect(more: bool) -> JobEffect {
    std::sync::Arc::new(move |tx: &mut Tx<'_>, finish| {
        if finish.end != JobEnd::Done {
            return Ok(());
        }
        // A finished analysis job leaves nothing to look at (the analyses are the record, and
        // the metrics count the runs): its row goes, so the queue does not grow with every
        // message.
        tx.conn.execute("DELETE FROM jobs WHERE kind = ? AND status = 'done'", &params![AnalyseMessages::KIND])?;
        if more || backlog_exists(tx.conn)? {
            enqueue_analysis(tx)?;
        }
        Ok(())
    })
}

impl Store {
    /// Stores (a part of) an analysed batch. False if another run had stored it already.
    /// Durable like any write that appends events: what it writes is seen at once (events with
    /// their ids, rule actions, automatic answers and their delivery), so it must not be lost
    /// afterwards. It shares the commit of the writes around it (see [`Store::write_shared`]),
    /// so under load it costs the writer its statements but no commit of its own.
    pub async fn store_analysed(&self, batch: AnalysedBatch) -> Result<bool, StoreError> {
        let data = batch.stored_data();
        self.write_shared(move |tx| batch.store(tx, &data)).await
    }
}

/// What an alert says (the inbox shows it as a badge).
pub const NEGATIVE_ON_PUBLIC: &str = "negative message on a public channel";

/// Raises an alert on the case of a negative message that came on a public channel (the
/// caller checked both): `alert.raised` (seen by the case's team on their live streams) and
/// the case's badge.
fn raise_alert(tx: &mut Tx<'_>, message_id: i64, at: &Placed) -> Result<(), StoreError> {
    let Some(case) = tx.conn.query_opt("SELECT team_id FROM cases WHERE id = ?", &params![at.case_id])? else {
        return Ok(());
    };
    tx.conn.execute(
        "UPDATE cases SET alert = ?, updated_at = ? WHERE id = ?",
        &params![NEGATIVE_ON_PUBLIC, tx.now, at.case_id],
    )?;
    let ev = tx.event(
        EventKind::AlertRaised,
        Some(at.case_id),
        Some(at.customer_id),
        &json!({ "case_id": at.case_id, "message_id": message_id, "channel": at.channel, "team_id": case.opt_i64(0),
                 "reason": NEGATIVE_ON_PUBLIC }),
    )?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, at.case_id])?;
    Ok(())
}

/// Where a message belongs, as storing its analysis (and acting on it) needs it.
pub(crate) struct Placed {
    pub case_id: i64,
    pub customer_id: i64,
    pub channel: kontor_core::Channel,
}

/// Rows per multi-row statement of the analysis effect (8 values a row stays far below the
/// databases' limits on bound values).
const ROWS_PER_STATEMENT: usize = 500;

/// Stores each message's first analysis (a later one for the same message is ignored, as is
/// one of a message erased meanwhile), appends a `message.analysed` event for each stored one,
/// and gives cases without an intent that of their first message here. A batch is written
/// with one statement per table (per 500 messages), not one per message, so that the writer
/// — which ingest shares — is held briefly. Returns the stored ones, in the given order.
fn store_analyses<'a>(
    tx: &mut Tx<'_>,
    analyses: &'a [(i64, MessageAnalysis)],
    data: &[String],
) -> Result<Vec<(i64, &'a MessageAnalysis, Placed)>, StoreError> {
    if data.len() != analyses.len() {
        return Err(StoreError::Database("an analysis without its stored form".into()));
    }
    let mut placed: HashMap<i64, Placed> = HashMap::with_capacity(analyses.len());
    for chunk in analyses.chunks(ROWS_PER_STATEMENT) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let p: Vec<Val> = chunk.iter().map(|(id, _)| Val::Int(*id)).collect();
        let sql = format!("SELECT id, case_id, customer_id, channel FROM messages WHERE id IN ({marks})");
        for r in tx.conn.query(&sql, &p)? {
            placed.insert(
                r.req_i64(0, "messages.id")?,
                Placed {
                    case_id: r.req_i64(1, "messages.case_id")?,
                    customer_id: r.req_i64(2, "messages.customer_id")?,
                    channel: r.req_enum(3, "messages.channel", kontor_core::Channel::parse)?,
                },
            );
        }
    }
    let present: Vec<(&(i64, MessageAnalysis), &String)> =
        analyses.iter().zip(data).filter(|((id, _), _)| placed.contains_key(id)).collect();
    let mut inserted = std::collections::HashSet::with_capacity(present.len());
    for chunk in present.chunks(ROWS_PER_STATEMENT) {
        let mut p: Vec<Val> = Vec::with_capacity(chunk.len() * 8);
        for ((message_id, a), data) in chunk {
            p.extend(params![
                *message_id,
                a.intent.as_str(),
                a.intent_confidence as f64,
                a.intent_source.as_str(),
                a.sentiment.as_str(),
                a.language.as_deref(),
                data.as_str(),
                tx.now
            ]);
        }
        let sql = format!(
            "INSERT INTO message_analysis (message_id, intent, intent_confidence, intent_source, sentiment, language, data, analysed_at) \
             VALUES {} ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            crate::ingest::value_rows(chunk.len(), 8)
        );
        for r in tx.conn.query(&sql, &p)? {
            inserted.insert(r.req_i64(0, "message_analysis.message_id")?);
        }
    }
    let mut stored = Vec::with_capacity(inserted.len());
    for ((message_id, a), _) in present {
        if inserted.contains(message_id) {
            if let Some(at) = placed.remove(message_id) {
                stored.push((*message_id, a, at));
            }
        }
    }
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let events: Vec<crate::ingest::NewEvent> = chunk
            .iter()
            .map(|(message_id, a, at)| crate::ingest::NewEvent {
                kind: EventKind::MessageAnalysed,
                case_id: Some(at.case_id),
                customer_id: at.customer_id,
                payload: json!({
                    "message_id": message_id,
                    "case_id": at.case_id,
                    "customer_id": at.customer_id,
                    "channel": at.channel,
                    "language": a.language,
                    "intent": a.intent,
                    "intent_confidence": a.intent_confidence,
                    "sentiment": a.sentiment,
                    "sentiment_score": a.sentiment_score,
                }),
            })
            .collect();
        crate::ingest::insert_events(tx, &events)?;
    }
    // A case's intent is that of its first analysed inbound message: the first here, unless it
    // has one already.
    let mut first: Vec<(i64, &str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (_, a, at) in &stored {
        if seen.insert(at.case_id) {
            first.push((at.case_id, a.intent.as_str()));
        }
    }
    for chunk in first.chunks(ROWS_PER_STATEMENT) {
        // The first row types the columns (PostgreSQL infers VALUES types from it).
        let sql = format!(
            "UPDATE cases SET intent = v.intent, intent_source = 'model' \
             FROM (SELECT CAST(NULL AS BIGINT) AS cid, CAST(NULL AS TEXT) AS intent UNION ALL VALUES {}) AS v \
             WHERE cases.id = v.cid AND cases.intent IS NULL",
            vec!["(CAST(? AS BIGINT), CAST(? AS TEXT))"; chunk.len()].join(", ")
        );
        let p: Vec<Val> = chunk.iter().flat_map(|(case_id, intent)| params![*case_id, *intent]).collect();
        tx.conn.execute(&sql, &p)?;
    }
    Ok(stored)
}

/// The canned response of each intent whose level is `auto`.
fn auto_intents(c: &mut Conn) -> Result<HashMap<String, i64>, StoreError> {
    c.query("SELECT intent, canned_id FROM assist_intents WHERE level = 'auto' AND canned_id IS NOT NULL", &[])?
        .iter()
        .map(|r| Ok((r.req_text(0, "assist_intents.intent")?, r.req_i64(1, "assist_intents.canned_id")?)))
        .collect()
}

impl Store {
    /// The next inbound messages to analyse (up to `limit`), after the analysis cursor.
    pub async fn pending_analysis(&self, limit: i64) -> Result<PendingAnalysis, StoreError> {
        self.read(move |c| {
            let from = cursor_value(c)?;
            // Every event up to `newest` is visible now (ids appear in commit order); read no
            // further than it, so the cursor never passes an event this read did not see.
            let newest =
                c.query_opt("SELECT MAX(id) FROM events", &[])?.and_then(|r| r.opt_i64(0)).unwrap_or(0).max(from);
            let rows = c.query(
                "SELECT id, payload FROM events WHERE id > ? AND id <= ? AND kind = ? ORDER BY id LIMIT ?",
                &params![from, newest, EventKind::MessageReceived.as_str(), limit],
            )?;
            let more = rows.len() as i64 >= limit;
            let upto =
                if more { rows.last().map(|r| r.req_i64(0, "events.id")).transpose()?.unwrap_or(from) } else { newest };
            let mut ids = Vec::with_capacity(rows.len());
            let mut received = HashMap::with_capacity(rows.len());
            for r in &rows {
                let payload: serde_json::Value = serde_json::from_str(&r.req_text(1, "events.payload")?)
                    .map_err(|e| StoreError::Corrupt(format!("events.payload is not JSON: {e}")))?;
                if let Some(id) = crate::events::event_message_id(EventKind::MessageReceived.as_str(), &payload) {
                    ids.push(id);
                    received.insert(id, r.req_i64(0, "events.id")?);
                }
            }
            let mut messages = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let p: Vec<Val> = chunk.iter().map(|id| Val::Int(*id)).collect();
                for r in c.query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id IN ({marks})"), &p)? {
                    let m = message_from_row(&r)?;
                    if m.direction == Direction::In && !m.internal {
                        messages.push(m);
                    }
                }
            }
            messages.sort_by_key(|m| (received.get(&m.id).copied().unwrap_or(i64::MAX), m.id));
            let mut customers: Vec<i64> = messages.iter().map(|m| m.customer_id).collect();
            customers.sort();
            customers.dedup();
            let mut customer_languages = HashMap::new();
            for chunk in customers.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let p: Vec<Val> = chunk.iter().map(|id| Val::Int(*id)).collect();
                let sql = format!("SELECT id, language FROM customers WHERE id IN ({marks}) AND language IS NOT NULL");
                for r in c.query(&sql, &p)? {
                    customer_languages.insert(r.req_i64(0, "customers.id")?, r.req_text(1, "customers.language")?);
                }
            }
            Ok(PendingAnalysis { from, upto, messages, more, customer_languages, received })
        })
        .await
    }

    /// Queues the analysis job if messages wait for it and none is queued or running. True if
    /// messages wait (then a job is queued or running, and a worker should look). Cheap when
    /// there is nothing to do (one read).
    pub async fn kick_analysis(&self) -> Result<bool, StoreError> {
        let (backlog, pending) = self.read(|c| Ok((backlog_exists(c)?, job_pending(c)?))).await?;
        if !backlog {
            return Ok(false);
        }
        if !pending {
            // Lost in a power failure, the job is queued again by the next look.
            self.write_relaxed(|tx| if backlog_exists(tx.conn)? { enqueue_analysis(tx).map(drop) } else { Ok(()) })
                .await?;
        }
        Ok(true)
    }

    /// How many received messages wait for their analysis (counted up to 1,000,000).
    pub async fn analysis_backlog(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            let cursor = cursor_value(c)?;
            c.query_opt(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE id > ? AND kind = ? LIMIT 1000000) AS waiting",
                &params![cursor, EventKind::MessageReceived.as_str()],
            )?
            .map(|r| r.req_i64(0, "COUNT(*)"))
            .transpose()
            .map(Option::unwrap_or_default)
        })
        .await
    }
}

/// A training example an agent gave: the text and the intent it has.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingExample {
    pub text: String,
    pub label: String,
}

impl Store {
    /// The id of the newest trained model (0 if there is none).
    pub async fn latest_model_id(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT MAX(id) FROM assist_models", &[])?.and_then(|r| r.opt_i64(0)).unwrap_or(0))
        })
        .await
    }

    /// The saved bytes of a trained model.
    pub async fn model_bytes(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        self.read(move |c| {
            c.query_opt("SELECT model FROM assist_models WHERE id = ?", &params![id])?
                .and_then(|r| r.opt_bytes(0).map(<[u8]>::to_vec))
                .ok_or_else(|| StoreError::NotFound(format!("model {id}")))
        })
        .await
    }

    /// Every training example agents gave, oldest first.
    pub async fn training_examples(&self) -> Result<Vec<TrainingExample>, StoreError> {
        self.read(|c| {
            c.query("SELECT text, label FROM assist_examples ORDER BY id", &[])?
                .iter()
                .map(|r| {
                    Ok(TrainingExample {
                        text: r.req_text(0, "assist_examples.text")?,
                        label: r.req_text(1, "assist_examples.label")?,
                    })
                })
                .collect()
        })
        .await
    }
}

/// The retraining job: trains a model on the seed set and every example agents gave, and
/// stores it; nodes use the newest model once it is stored.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RetrainIntents {}

impl JobPayload for RetrainIntents {
    const KIND: &'static str = "retrain_intents";
    const QUEUE: &'static str = "assist";
}

/// Corrections within this many milliseconds are trained on together.
const RETRAIN_DELAY_MS: i64 = 5_000;
/// At most one retraining in this many microseconds (ten minutes): agents' corrections cannot
/// keep the CPU busy.
const RETRAIN_EVERY_US: i64 = 600_000_000;
/// A training example keeps at most this many characters of the message.
const EXAMPLE_MAX_CHARS: usize = 2_000;
/// Trained models kept (older ones are deleted when a new one is stored).
const MODELS_KEPT: i64 = 3;

/// A trained model to store (the retraining job's effect).
pub struct TrainedModel {
    pub bytes: Vec<u8>,
    pub examples: i64,
}

impl TrainedModel {
    /// Stores the model and deletes all but the newest few.
    pub fn into_effect(self) -> JobEffect {
        let bytes = std::sync::Arc::new(self.bytes);
        std::sync::Arc::new(move |tx: &mut Tx<'_>, finish| {
            if finish.end != JobEnd::Done {
                return Ok(());
            }
            tx.conn.execute(
                "INSERT INTO assist_models (model, examples, created_at) VALUES (?, ?, ?)",
                &params![Val::Bytes(bytes.to_vec()), self.examples, tx.now],
            )?;
            tx.conn.execute(
                "DELETE FROM assist_models WHERE id NOT IN (SELECT id FROM assist_models ORDER BY id DESC LIMIT ?)",
                &params![MODELS_KEPT],
            )?;
            Ok(())
        })
    }
}

/// What an agent's intent correction changed.
#[derive(Debug, Clone)]
pub struct IntentCorrection {
    pub analysis: MessageAnalysis,
    pub case_id: i64,
    /// The case's intent changed with it (the message is the case's first inbound one).
    pub case_intent_changed: bool,
}

impl Store {
    /// An agent sets or corrects the intent of an analysed inbound message: the analysis
    /// shows it (source `agent`), the message's text becomes a training example, the case
    /// takes the intent if this is its first inbound message, and a retraining job is queued.
    /// `text` is what the model reads for the message (its subject and new text).
    pub async fn correct_intent(
        &self,
        message_id: i64,
        intent: String,
        text: String,
        user_id: Option<i64>,
    ) -> Result<IntentCorrection, StoreError> {
        let text: String = text.chars().take(EXAMPLE_MAX_CHARS).collect();
        self.write(move |tx| {
            let row = tx
                .conn
                .query_opt(
                    "SELECT m.case_id, m.customer_id, m.direction, m.internal, a.data, a.intent FROM messages m \
                     LEFT JOIN message_analysis a ON a.message_id = m.id WHERE m.id = ?",
                    &params![message_id],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("message {message_id}")))?;
            let (case_id, customer_id) = (row.req_i64(0, "messages.case_id")?, row.req_i64(1, "messages.customer_id")?);
            if row.req_text(2, "messages.direction")? != "in" || row.req_i64(3, "messages.internal")? != 0 {
                return Err(StoreError::invalid("message", "only a customer's message has an intent"));
            }
            let Some(data) = row.opt_text(4) else {
                return Err(StoreError::Conflict(format!(
                    "message {message_id} has not been analysed yet; try again shortly"
                )));
            };
            let mut analysis = analysis_from_row(&data, intent.clone(), 1.0, "agent".into())?;
            let data =
                serde_json::to_string(&analysis).map_err(|e| StoreError::Database(format!("analysis as JSON: {e}")))?;
            tx.conn.execute(
                "UPDATE message_analysis SET intent = ?, intent_confidence = 1.0, intent_source = 'agent', data = ? \
                 WHERE message_id = ?",
                &params![intent.as_str(), data, message_id],
            )?;
            tx.conn.execute(
                "INSERT INTO assist_examples (message_id, text, label, user_id, created_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (message_id) DO UPDATE SET text = excluded.text, label = excluded.label, \
                 user_id = excluded.user_id, created_at = excluded.created_at",
                &params![message_id, text.as_str(), intent.as_str(), user_id, tx.now],
            )?;
            tx.event(
                EventKind::MessageAnalysed,
                Some(case_id),
                Some(customer_id),
                &json!({ "message_id": message_id, "case_id": case_id, "customer_id": customer_id,
                         "intent": intent, "intent_source": "agent", "by_user_id": user_id }),
            )?;
            let first_inbound = tx
                .conn
                .query_opt(
                    "SELECT MIN(id) FROM messages WHERE case_id = ? AND direction = 'in' AND internal = 0",
                    &params![case_id],
                )?
                .and_then(|r| r.opt_i64(0));
            let mut case_intent_changed = false;
            if first_inbound == Some(message_id) {
                let before =
                    tx.conn.query_opt("SELECT intent, intent_source FROM cases WHERE id = ?", &params![case_id])?;
                let before = before.map(|r| (r.opt_text(0), r.opt_text(1))).unwrap_or_default();
                if before != (Some(intent.clone()), Some("agent".to_string())) {
                    tx.conn.execute(
                        "UPDATE cases SET intent = ?, intent_source = 'agent', updated_at = ? WHERE id = ?",
                        &params![intent.as_str(), tx.now, case_id],
                    )?;
                    let ev = tx.event(
                        EventKind::CaseUpdated,
                        Some(case_id),
                        Some(customer_id),
                        &json!({ "case_id": case_id, "changes": { "intent": intent }, "by_user_id": user_id }),
                    )?;
                    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
                    case_intent_changed = true;
                }
            }
            if tx
                .conn
                .query_opt(
                    "SELECT 1 FROM jobs WHERE kind = ? AND status = 'queued' LIMIT 1",
                    &params![RetrainIntents::KIND],
                )?
                .is_none()
            {
                // At most one retraining per RETRAIN_EVERY: corrections in between wait for it.
                let last =
                    tx.conn.query_opt("SELECT MAX(created_at) FROM assist_models", &[])?.and_then(|r| r.opt_i64(0));
                let wait_ms = last.map(|at| (at + RETRAIN_EVERY_US - tx.now) / 1000).unwrap_or(0).max(RETRAIN_DELAY_MS);
                enqueue_job(tx, &RetrainIntents {}, 5, wait_ms)?;
            }
            analysis.intent_source = "agent".into();
            Ok(IntentCorrection { analysis, case_id, case_intent_changed })
        })
        .await
    }
}

/// The automation level of one intent, with the canned response that answers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentSetting {
    pub intent: String,
    /// `off`, `suggest` (the answer goes into the composer) or `auto` (it is sent).
    #[schema(pattern = "^(off|suggest|auto)$")]
    pub level: String,
    /// The canned response mapped to the intent (required for `suggest` and `auto`).
    pub canned_id: Option<i64>,
}

/// The automation levels.
pub const LEVELS: &[&str] = &["off", "suggest", "auto"];

impl Store {
    /// The stored automation levels (intents not listed are `off`).
    pub async fn intent_settings(&self) -> Result<Vec<IntentSetting>, StoreError> {
        self.read(|c| {
            c.query("SELECT intent, level, canned_id FROM assist_intents ORDER BY intent", &[])?
                .iter()
                .map(|r| {
                    Ok(IntentSetting {
                        intent: r.req_text(0, "assist_intents.intent")?,
                        level: r.req_text(1, "assist_intents.level")?,
                        canned_id: r.opt_i64(2),
                    })
                })
                .collect()
        })
        .await
    }

    /// Sets the automation level of the given intents (others stay as they are); a level
    /// other than `off` needs an existing canned response. Recorded as `settings.updated`.
    pub async fn set_intent_settings(&self, settings: Vec<IntentSetting>) -> Result<(), StoreError> {
        for s in &settings {
            if !LEVELS.contains(&s.level.as_str()) {
                return Err(StoreError::invalid("level", format!("must be one of {}", LEVELS.join(", "))));
            }
            if s.level != "off" && s.canned_id.is_none() {
                return Err(StoreError::invalid(
                    "canned_id",
                    format!("{} needs a canned response for {}", s.intent, s.level),
                ));
            }
        }
        self.write(move |tx| {
            for s in &settings {
                if let Some(id) = s.canned_id {
                    if tx.conn.query_opt("SELECT 1 FROM canned_responses WHERE id = ?", &params![id])?.is_none() {
                        return Err(StoreError::invalid("canned_id", format!("no canned response {id}")));
                    }
                }
                tx.conn.execute(
                    "INSERT INTO assist_intents (intent, level, canned_id, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (intent) DO UPDATE SET level = excluded.level, canned_id = excluded.canned_id, \
                     updated_at = excluded.updated_at",
                    &params![s.intent.as_str(), s.level.as_str(), s.canned_id, tx.now],
                )?;
            }
            tx.event(EventKind::SettingsUpdated, None, None, &json!({ "key": "assist.intents", "value": settings }))?;
            Ok(())
        })
        .await
    }
}

/// When the assistant answers by itself (an intent at level `auto`).
#[derive(Debug, Clone)]
pub struct AutoAnswerPolicy {
    /// Channels with an outbound adapter.
    pub deliverable: Vec<kontor_core::Channel>,
    /// A customer gets at most one automatic answer within this many microseconds.
    pub quiet_us: i64,
    /// The model must be at least this sure of the intent.
    pub min_confidence: f32,
    /// Attempts the delivery job gets.
    pub max_attempts: i64,
    /// Channels whose replies are public: an automatic answer there waits for approval too.
    pub public_channels: Vec<kontor_core::Channel>,
    /// At most this many automatic answers in any hour, to all customers together.
    pub max_per_hour: i64,
}

/// The line every automatic answer ends with: how to reach a person.
pub fn human_contact_line(language: Option<&str>) -> &'static str {
    match language {
        Some("en") => {
            "This is an automatic answer. To reach a person, simply reply to this message and a member of our team will get back to you."
        }
        _ => {
            "Dies ist eine automatische Antwort. Möchten Sie mit einem Menschen sprechen, antworten Sie einfach auf diese Nachricht – eine Mitarbeiterin oder ein Mitarbeiter meldet sich bei Ihnen."
        }
    }
}

/// Sends a canned response as an automatic answer to the message's customer, if every
/// safeguard holds: a message not sent by a machine, a case that still stands and is not
/// closed, a channel that can answer, and no automatic answer to that customer within the
/// quiet period. It ends with how to reach a person. Returns the answer's message id.
pub(crate) fn auto_answer_with(
    tx: &mut Tx<'_>,
    message_id: i64,
    a: &MessageAnalysis,
    policy: &AutoAnswerPolicy,
    canned_id: i64,
    rule: Option<(i64, &str)>,
) -> Result<Option<i64>, StoreError> {
    let Some(canned) = tx.conn.query_opt("SELECT body FROM canned_responses WHERE id = ?", &params![canned_id])? else {
        return Ok(None);
    };
    let body = canned.req_text(0, "canned_responses.body")?;
    let Some(m) = tx.conn.query_opt(
        "SELECT m.case_id, m.customer_id, m.channel, m.auto_submitted, c.merged_into, c.status FROM messages m \
         JOIN cases c ON c.id = m.case_id WHERE m.id = ?",
        &params![message_id],
    )?
    else {
        return Ok(None);
    };
    let (case_id, customer_id) = (m.req_i64(0, "messages.case_id")?, m.req_i64(1, "messages.customer_id")?);
    let channel = m.req_enum(2, "messages.channel", kontor_core::Channel::parse)?;
    let closed = m.opt_text(5).as_deref() == Some("closed");
    if m.i64(3) != 0 || m.opt_i64(4).is_some() || closed || !policy.deliverable.contains(&channel) {
        return Ok(None);
    }
    let hour_ago = tx.now.saturating_sub(3_600_000_000);
    let sent_last_hour = tx
        .conn
        .query_opt("SELECT COUNT(*) FROM messages WHERE automatic = 1 AND created_at > ?", &params![hour_ago])?
        .map(|r| r.i64(0))
        .unwrap_or(0);
    if sent_last_hour >= policy.max_per_hour {
        tracing::warn!(
            message_id,
            limit = policy.max_per_hour,
            "Automatic answers paused: the hourly limit is reached."
        );
        return Ok(None);
    }
    let since = tx.now.saturating_sub(policy.quiet_us);
    if tx
        .conn
        .query_opt(
            "SELECT 1 FROM messages WHERE customer_id = ? AND automatic = 1 AND created_at > ? LIMIT 1",
            &params![customer_id, since],
        )?
        .is_some()
    {
        return Ok(None);
    }
    let text = format!("{}\n\n{}", body.trim_end(), human_contact_line(a.language.as_deref()));
    let reply = crate::cases::NewReply {
        text,
        based_on_event_id: 0,
        force: true,
        channel: Some(channel),
        author_id: None,
        only_assignee: false,
        attachments: Vec::new(),
        subject: None,
        cc: Vec::new(),
        public_channels: policy.public_channels.clone(),
    };
    match crate::cases::reply_in(tx, case_id, &reply, &policy.deliverable, policy.max_attempts)? {
        crate::cases::ReplyOutcome::Queued { message_id: answer, .. }
        | crate::cases::ReplyOutcome::Held { message_id: answer, .. } => {
            tx.conn.execute("UPDATE messages SET automatic = 1 WHERE id = ?", &params![answer])?;
            if let Some((rule_id, rule_name)) = rule {
                let ev = tx.event(
                    EventKind::CaseUpdated,
                    Some(case_id),
                    Some(customer_id),
                    &json!({ "case_id": case_id, "changes": { "auto_answer": answer },
                             "rule": { "id": rule_id, "name": rule_name }, "message_id": message_id }),
                )?;
                tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, case_id])?;
            }
            Ok(Some(answer))
        }
        crate::cases::ReplyOutcome::Stale { .. } => Ok(None),
    }
}
