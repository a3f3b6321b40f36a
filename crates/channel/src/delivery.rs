//! Status callbacks from providers.

use kontor_core::{Channel, DeliveryState};

/// A provider's report on a message Kontor sent, matched by the provider's message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub channel: Channel,
    pub provider_message_id: String,
    /// `sent`, `delivered`, `read` or `failed` (`queued` is Kontor's own state, never reported).
    pub state: DeliveryState,
    /// The provider's reason for a failure.
    pub error: Option<String>,
}

fn rank(state: DeliveryState) -> u8 {
    match state {
        DeliveryState::Queued => 0,
        DeliveryState::Sent => 1,
        DeliveryState::Delivered => 2,
        DeliveryState::Read => 3,
        DeliveryState::Failed => 1,
        // Kontor's own states before sending: no report concerns them, none replaces them.
        DeliveryState::PendingApproval => 0,
        DeliveryState::Rejected => 4,
    }
}

/// Whether a report of `new` replaces the `current` state of a message. Reports arrive out of
/// order, so a state only moves forward: queued → sent → delivered → read; a late `sent` never
/// overwrites `delivered` or `read`. A failure replaces queued and sent (a bounce after the
/// relay took the mail) but not delivered or read; a repeated state changes nothing. `failed`
/// followed by `delivered` or `read` moves on (the provider got it through after all).
pub fn supersedes(new: DeliveryState, current: Option<DeliveryState>) -> bool {
    let Some(current) = current else { return true };
    if new == current || new == DeliveryState::Queued {
        return false;
    }
    match (new, current) {
        (DeliveryState::Failed, c) => rank(c) <= rank(DeliveryState::Sent),
        (_, DeliveryState::Failed) => rank(new) > rank(DeliveryState::Sent),
        (n, c) => rank(n) > rank(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    #[test]
    fn states_only_move_forward() {
        let cases = [
            (Sent, None, true),
            (Sent, Some(Queued), true),
            (Delivered, Some(Sent), true),
            (Read, Some(Delivered), true),
            (Read, Some(Sent), true),
            (Sent, Some(Read), false),
            (Sent, Some(Delivered), false),
            (Delivered, Some(Read), false),
            (Read, Some(Read), false),
            (Failed, Some(Sent), true),
            (Failed, Some(Queued), true),
            (Failed, Some(Delivered), false),
            (Failed, Some(Read), false),
            (Failed, Some(Failed), false),
            (Sent, Some(Failed), false),
            (Delivered, Some(Failed), true),
            (Read, Some(Failed), true),
            (Queued, Some(Sent), false),
        ];
        for (new, current, want) in cases {
            assert_eq!(supersedes(new, current), want, "{new:?} over {current:?}");
        }
    }
}
