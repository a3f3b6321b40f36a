//! `deliver_message`: sends an outbound message through its channel's sender and records
//! the provider's id (or the failure) with the job's outcome.

use kontor_channel::{OutboundAttachment, OutboundMessage, Recipient, RecipientAddress, SendError};
use kontor_core::DeliveryState;
use kontor_store::messages::{DeliverMessage, DeliveryUpdate};

use super::{Job, JobResult, JobRun};
use crate::AppState;

#[async_trait::async_trait]
impl Job for DeliverMessage {
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult {
        let message_id = self.message_id;
        let update = |state: DeliveryState, error: Option<String>, provider_message_id: Option<String>| {
            DeliveryUpdate { message_id, state, error, provider_message_id }.into_effect()
        };
        // The case holds the message, its customer and the earlier messages (the customer is not
        // read a second time).
        let case = match state.store.message(message_id).await {
            Ok(m) => state.store.case_detail(m.case_id).await,
            Err(e) => Err(e),
        };
        let case = match case {
            Ok(c) => c,
            Err(e) if e.is_unavailable() => return JobResult::retry(state, &run, e.to_string()),
            Err(e) => return JobResult::fail(e.to_string()),
        };
        let Some(detail) = case.messages.iter().find(|m| m.id == message_id).cloned() else {
            return JobResult::retry(state, &run, format!("message {message_id} moved while it was being sent"));
        };
        // A reply held for approval, or rejected, is never sent (only an approval queues it).
        if matches!(detail.delivery_state, Some(DeliveryState::PendingApproval | DeliveryState::Rejected)) {
            return JobResult::fail(format!("message {message_id} is not approved for sending"));
        }
        let Some(sender) = state.channels.outbound(detail.channel) else {
            let err = format!("no outbound adapter for channel {}", detail.channel);
            return JobResult::fail(err.clone()).with_effect(update(DeliveryState::Failed, Some(err), None));
        };
        let customer = &case.customer;
        // Provider ids of the case's earlier messages, oldest first (e-mail threading).
        let thread = case
            .messages
            .iter()
            .filter(|m| m.id < message_id && !m.internal && m.channel == detail.channel)
            .filter_map(|m| m.provider_message_id.clone())
            .collect();
        // The files go with the message, their bytes read (and checked) from the blob store.
        let mut attachments = Vec::with_capacity(detail.attachments.len());
        for a in &detail.attachments {
            let Some(id) = a.id else { continue };
            let stored = match state.store.attachment(id).await {
                Ok(s) => s,
                Err(e) => return JobResult::retry(state, &run, e.to_string()),
            };
            let Some(blob) = stored.blob_id else { continue };
            let Some(vault) = &state.vault else {
                return JobResult::retry(state, &run, "the blob store is not open on this node");
            };
            match vault.get(&blob).await {
                Ok(bytes) => attachments.push(OutboundAttachment {
                    filename: stored.filename,
                    content_type: stored.content_type,
                    bytes,
                }),
                Err(kontor_vault::VaultError::Io(e)) => return JobResult::retry(state, &run, e),
                Err(e) => {
                    let err = format!("attachment {id} cannot be read: {e}");
                    return JobResult::fail(err.clone()).with_effect(update(DeliveryState::Failed, Some(err), None));
                }
            }
        }
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
            cc: detail.cc.clone(),
            subject: detail.subject.clone(),
            text: detail.text.clone(),
            html: detail.html.clone(),
            attachments,
            thread,
            automatic: detail.automatic,
            created_at: detail.created_at,
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
