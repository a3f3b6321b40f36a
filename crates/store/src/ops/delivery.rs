//! Delivery reports from providers' status callbacks.

use kontor_channel::{supersedes, DeliveryReport};
use kontor_core::DeliveryState;

use super::jobs::{apply_delivery, DeliveryUpdate};
use crate::{params, Store, StoreError};

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
                return Ok(None);
            };
            let message_id = row.i64(0);
            let current = row.opt_text(1).and_then(|s| DeliveryState::parse(&s));
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
