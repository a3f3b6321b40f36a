//! Delivery reports from providers' status callbacks.

use kontor_channel::{supersedes, DeliveryReport};
use kontor_core::DeliveryState;
use serde_json::json;

use crate::jobs::{JobEffect, JobEnd, JobPayload};
use crate::records::load_message;
use crate::writer::Tx;
use crate::{params, Store, StoreError};

/// How long a report for an unknown provider id waits for its message: a week.
const PENDING_KEPT_US: i64 = 7 * 24 * 3600 * 1_000_000;

/// Applies the reports that arrived for `provider_message_id` before it was recorded for the
/// message, in the order they came, each only if it moves the state forward.
pub(crate) fn apply_pending_reports(
    tx: &mut crate::Tx<'_>,
    message_id: i64,
    channel: &str,
    provider_message_id: &str,
) -> Result<(), StoreError> {
    let rows = tx.conn.query(
        "SELECT state, error FROM delivery_reports_pending WHERE channel = ? AND provider_message_id = ? ORDER BY received_at",
        &params![channel, provider_message_id],
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    tx.conn.execute(
        "DELETE FROM delivery_reports_pending WHERE channel = ? AND provider_message_id = ?",
        &params![channel, provider_message_id],
    )?;
    for r in rows {
        // A report that cannot be read is dropped, not an error: failing here would fail the
        // delivery's own outcome, and the job would send the message again.
        let state = match r.req_enum(0, "delivery_reports_pending.state", DeliveryState::parse) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(message_id, %error, "Dropped an unreadable pending delivery report.");
                continue;
            }
        };
        let current =
            match tx.conn.query_opt("SELECT delivery_state FROM messages WHERE id = ?", &params![message_id])? {
                Some(row) => row.opt_enum(0, "messages.delivery_state", DeliveryState::parse)?,
                None => None,
            };
        if supersedes(state, current) {
            let error = if state == DeliveryState::Failed { r.opt_text(1) } else { None };
            apply_delivery(tx, &DeliveryUpdate { message_id, state, error, provider_message_id: None }, None)?;
        }
    }
    Ok(())
}

impl Store {
    /// Applies a provider's status report to the outbound message it names (by channel and
    /// provider message id). Returns the message's id, or `None` when no outbound message has
    /// that id or the report is older news than what the message already shows (a late `sent`
    /// never overwrites `read`). A report that changes the state is announced as
    /// `message.delivery`; one that changes nothing writes nothing.
    pub async fn apply_delivery_report(&self, report: DeliveryReport) -> Result<Option<i64>, StoreError> {
        self.write(move |tx| {
            let Some(row) = tx.conn.query_opt(
                "SELECT id, delivery_state FROM messages \
                 WHERE channel = ? AND provider_message_id = ? AND direction = 'out' ORDER BY id LIMIT 1",
                &params![report.channel.as_str(), report.provider_message_id.as_str()],
            )?
            else {
                // Perhaps faster than the send was recorded: keep it for when it is.
                let week_ago = tx.now.saturating_sub(PENDING_KEPT_US);
                tx.conn.execute("DELETE FROM delivery_reports_pending WHERE received_at < ?", &params![week_ago])?;
                tx.conn.execute(
                    "INSERT INTO delivery_reports_pending (channel, provider_message_id, state, error, received_at) \
                     VALUES (?, ?, ?, ?, ?)",
                    &params![
                        report.channel.as_str(),
                        report.provider_message_id.as_str(),
                        report.state.as_str(),
                        report.error.as_deref(),
                        tx.now
                    ],
                )?;
                return Ok(None);
            };
            let message_id = row.req_i64(0, "messages.id")?;
            let current = row.opt_enum(1, "messages.delivery_state", DeliveryState::parse)?;
            if !supersedes(report.state, current) {
                return Ok(None);
            }
            let error = if report.state == DeliveryState::Failed { report.error.clone() } else { None };
            apply_delivery(
                tx,
                &DeliveryUpdate { message_id, state: report.state, error, provider_message_id: None },
                None,
            )?;
            Ok(Some(message_id))
        })
        .await
    }
}

/// The effect of a delivery job on its message, committed with the job's state.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub message_id: i64,
    pub state: DeliveryState,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
}

/// Deliver an outbound message through its channel's sender.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliverMessage {
    pub message_id: i64,
}

impl JobPayload for DeliverMessage {
    const KIND: &'static str = "deliver_message";
    const QUEUE: &'static str = "outbound";
}

impl DeliveryUpdate {
    /// This update as a job effect: applied when the job is done, as `failed` (with the job's
    /// error) when it is dead, and not at all while it will be retried.
    pub fn into_effect(self) -> JobEffect {
        std::sync::Arc::new(move |tx, finish| {
            let update = match finish.end {
                JobEnd::Retrying => return Ok(()),
                JobEnd::Dead => DeliveryUpdate {
                    state: DeliveryState::Failed,
                    error: finish.error.map(str::to_string),
                    ..self.clone()
                },
                JobEnd::Done => self.clone(),
            };
            apply_delivery(tx, &update, Some(finish.attempts)).map(|_| ())
        })
    }
}

/// Sets a message's delivery state and announces it (`message.delivery`). `attempts` is the
/// job's attempt count when a job's run decided it (absent for provider reports).
pub(crate) fn apply_delivery(tx: &mut Tx<'_>, d: &DeliveryUpdate, attempts: Option<i64>) -> Result<i64, StoreError> {
    tx.conn.execute(
        "UPDATE messages SET delivery_state = ?, delivery_error = ?, provider_message_id = COALESCE(?, provider_message_id) WHERE id = ?",
        &params![d.state.as_str(), d.error.as_deref(), d.provider_message_id.as_deref(), d.message_id],
    )?;
    let m = load_message(tx.conn, d.message_id)?;
    // By reference: a provider's reason often names the recipient, so it stays in the message
    // (`delivery_error`) and is rendered from there when the event is read.
    let mut payload = json!({ "message_id": m.id, "state": d.state, "provider_message_id": m.provider_message_id });
    if let Some(a) = attempts {
        payload["attempts"] = json!(a);
    }
    let ev = tx.event(kontor_core::EventKind::MessageDelivery, Some(m.case_id), Some(m.customer_id), &payload)?;
    tx.conn.execute("UPDATE cases SET last_event_id = ? WHERE id = ?", &params![ev, m.case_id])?;
    // Reports that came before this send was recorded apply now.
    if let Some(pid) = d.provider_message_id.as_deref() {
        apply_pending_reports(tx, m.id, m.channel.as_str(), pid)?;
    }
    Ok(ev)
}
