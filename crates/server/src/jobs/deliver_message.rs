//! `deliver_message`: sends an outbound message through its channel's sender and records
//! the provider's id (or the failure) with the job's outcome.

use kontor_channel::{OutboundMessage, Recipient, RecipientAddress, SendError};
use kontor_core::DeliveryState;
use kontor_store::{DeliverMessage, DeliveryUpdate};

use super::{Job, JobResult, JobRun};
use crate::AppState;

#[async_trait::async_trait]
impl Job for DeliverMessage {
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult {
        let message_id = self.message_id;
        let update = |state: DeliveryState, error: Option<String>, provider_message_id: Option<String>| {
            DeliveryUpdate { message_id, state, error, provider_message_id }.into_effect()
        };
        let detail = match state.store.message(message_id).await {
            Ok(m) => m,
            Err(e) if e.is_unavailable() => return JobResult::retry(state, &run, e.to_string()),
            Err(e) => return JobResult::fail(e.to_string()),
        };
        let Some(sender) = state.channels.outbound(detail.channel) else {
            let err = format!("no outbound adapter for channel {}", detail.channel);
            return JobResult::fail(err.clone()).with_effect(update(DeliveryState::Failed, Some(err), None));
        };
        let customer = match state.store.customer(detail.customer_id).await {
            Ok(c) => c,
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        // Provider ids of the case's earlier messages, oldest first (e-mail threading).
        let thread = match state.store.case_detail(detail.case_id).await {
            Ok(case) => case
                .messages
                .iter()
                .filter(|m| m.id < message_id && !m.internal && m.channel == detail.channel)
                .filter_map(|m| m.provider_message_id.clone())
                .collect(),
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let message = OutboundMessage {
            message_id,
            case_id: detail.case_id,
            customer_id: detail.customer_id,
            channel: detail.channel,
            to: Recipient {
                name: customer.name.clone(),
                identities: customer
                    .identities
                    .iter()
                    .map(|i| RecipientAddress { kind: i.kind, address: i.address.clone() })
                    .collect(),
            },
            cc: Vec::new(),
            subject: detail.subject.clone(),
            text: detail.text.clone(),
            html: detail.html.clone(),
            attachments: Vec::new(),
            thread,
            automatic: false,
            created_at: detail.created_at.clone(),
        };
        match sender.send(&message).await {
            Ok(receipt) => {
                JobResult::done().with_effect(update(DeliveryState::Sent, None, receipt.provider_message_id))
            }
            // Applied only if this was the last attempt (then as failed).
            Err(SendError::Retryable(e)) => {
                JobResult::retry(state, &run, e.clone()).with_effect(update(DeliveryState::Failed, Some(e), None))
            }
            Err(SendError::Permanent(e)) => {
                JobResult::fail(e.clone()).with_effect(update(DeliveryState::Failed, Some(e), None))
            }
        }
    }
}
