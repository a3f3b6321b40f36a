//! The digital assistant's data: message analyses, the analysis job's cursor, training
//! examples from agents, trained models and automation levels per intent.
//!
//! **Analysis after ingest.** The analysis job (`analyse_messages`) follows the event log:
//! it reads the `message.received` events after its cursor (event ids become visible in
//! commit order, so nothing behind the cursor can appear later), analyses their messages off
//! the writer, and its effect — committed with the job's completion — stores the analyses,
//! appends `message.analysed` events, sets the cases' intents and moves the cursor, which it
//! compares first: a second run that raced it writes nothing. Ingest itself writes nothing
//! for the assistant. At most one analysis job is queued or running at a time; it queues its
//! successor while a backlog remains, and [`Store::kick_analysis`] queues one when new
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
    /// Inbound messages (not notes), oldest first.
    pub messages: Vec<Message>,
    /// True when the batch was full: more may wait behind it.
    pub more: bool,
}

/// The analyses of one batch, stored by the analysis job's effect.
#[derive(Debug, Clone)]
pub struct AnalysedBatch {
    pub from: i64,
    pub upto: i64,
    pub more: bool,
    /// Message id and its analysis.
    pub analyses: Vec<(i64, MessageAnalysis)>,
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
        out.insert(
            r.req_i64(0, "message_analysis.message_id")?,
            analysis_from_row(
                &r.req_text(1, "message_analysis.data")?,
                r.req_text(2, "message_analysis.intent")?,
                confidence,
                r.req_text(4, "message_analysis.intent_source")?,
            )?,
        );
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

impl AnalysedBatch {
    /// The job's effect: stores the analyses (each once), appends `message.analysed`, sets
    /// the intent of cases that have none, moves the cursor, and queues the next job while a
    /// backlog remains. If the cursor is no longer where this batch started, another run
    /// stored it already: nothing is written.
    pub fn into_effect(self) -> JobEffect {
        std::sync::Arc::new(move |tx: &mut Tx<'_>, finish| {
            if finish.end != JobEnd::Done {
                return Ok(());
            }
            let current = cursor_value(tx.conn)?;
            if current != self.from {
                return Ok(());
            }
            tx.conn.execute(
                "INSERT INTO channel_cursors (name, value, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &params![ANALYSIS_CURSOR, self.upto.to_string(), tx.now],
            )?;
            for (message_id, analysis) in &self.analyses {
                store_analysis(tx, *message_id, analysis)?;
            }
            if self.more || backlog_exists(tx.conn)? {
                enqueue_analysis(tx)?;
            }
            Ok(())
        })
    }
}

/// Stores one message's first analysis (a later one for the same message is ignored).
fn store_analysis(tx: &mut Tx<'_>, message_id: i64, a: &MessageAnalysis) -> Result<(), StoreError> {
    let Some(row) =
        tx.conn.query_opt("SELECT case_id, customer_id, channel FROM messages WHERE id = ?", &params![message_id])?
    else {
        return Ok(()); // erased meanwhile
    };
    let (case_id, customer_id) = (row.req_i64(0, "messages.case_id")?, row.req_i64(1, "messages.customer_id")?);
    let channel = row.req_text(2, "messages.channel")?;
    let data = serde_json::to_string(a).map_err(|e| StoreError::Database(format!("analysis as JSON: {e}")))?;
    let inserted = tx.conn.execute(
        "INSERT INTO message_analysis (message_id, intent, intent_confidence, intent_source, sentiment, language, data, analysed_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        &params![
            message_id,
            a.intent.as_str(),
            a.intent_confidence as f64,
            a.intent_source.as_str(),
            a.sentiment.as_str(),
            a.language.as_deref(),
            data,
            tx.now
        ],
    )?;
    if inserted == 0 {
        return Ok(());
    }
    tx.event(
        EventKind::MessageAnalysed,
        Some(case_id),
        Some(customer_id),
        &json!({
            "message_id": message_id,
            "case_id": case_id,
            "customer_id": customer_id,
            "channel": channel,
            "language": a.language,
            "intent": a.intent,
            "intent_confidence": a.intent_confidence,
            "sentiment": a.sentiment,
            "sentiment_score": a.sentiment_score,
        }),
    )?;
    tx.conn.execute(
        "UPDATE cases SET intent = ?, intent_source = 'model' WHERE id = ? AND intent IS NULL",
        &params![a.intent.as_str(), case_id],
    )?;
    Ok(())
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
            for r in &rows {
                let payload: serde_json::Value = serde_json::from_str(&r.req_text(1, "events.payload")?)
                    .map_err(|e| StoreError::Corrupt(format!("events.payload is not JSON: {e}")))?;
                if let Some(id) = crate::events::event_message_id(EventKind::MessageReceived.as_str(), &payload) {
                    ids.push(id);
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
            messages.sort_by_key(|m| m.id);
            Ok(PendingAnalysis { from, upto, messages, more })
        })
        .await
    }

    /// Queues the analysis job if messages wait for it and none is queued or running; true if
    /// it queued one. Cheap when there is nothing to do (one read).
    pub async fn kick_analysis(&self) -> Result<bool, StoreError> {
        let needed = self.read(|c| Ok(backlog_exists(c)? && !job_pending(c)?)).await?;
        if !needed {
            return Ok(false);
        }
        self.write(|tx| if backlog_exists(tx.conn)? { enqueue_analysis(tx) } else { Ok(false) }).await
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
