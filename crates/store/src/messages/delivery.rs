//! Delivery reports from providers' status callbacks.

use kontor_channel::{supersedes, DeliveryReport};
use kontor_core::DeliveryState;

use crate::jobs::{apply_delivery, DeliveryUpdate};
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
