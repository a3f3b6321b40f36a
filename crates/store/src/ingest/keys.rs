//! Idempotency: the key under which a message is stored once (its provider id, else the
//! client's idempotency key), the fingerprint a retry must repeat, and the answer for a
//! repeat.

use kontor_channel::{InboundMessage as NewInbound, InboundReceipt};

use crate::StoreError;

/// The idempotency key of a message within its channel and scope.
pub(super) fn key_of(m: &NewInbound) -> Option<String> {
    m.provider_message_id
        .as_deref()
        .map(|p| format!("p:{p}"))
        .or_else(|| m.idempotency_key.as_deref().map(|k| format!("k:{k}")))
}

/// What a retry must repeat for its key to count as the same message: sender, subject,
/// text, HTML, attachments and the requested case (hashed; the key row keeps no second copy
/// of the content). Absent and empty optional fields hash differently.
pub(super) fn fingerprint(m: &NewInbound) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // E-mail: the Message-ID is the mail, whichever copy comes (by SMTP again, by IMAP, from a
    // list that added a footer): a repeat from the same sender is the same message, never a
    // conflict. (The key is already scoped by sender.)
    if m.channel == kontor_core::Channel::Email {
        h.update(b"email\0");
        h.update(m.from_address.as_bytes());
        return hex::encode(&h.finalize()[..16]);
    }
    let attachments = serde_json::to_string(&m.attachments).unwrap_or_default();
    let case = m.case_id.map(|c| c.to_string());
    let parts: [Option<&str>; 7] = [
        Some(m.from_kind.as_str()),
        Some(m.from_address.as_str()),
        m.subject.as_deref(),
        Some(m.text.as_str()),
        m.html.as_deref(),
        Some(attachments.as_str()),
        case.as_deref(),
    ];
    for part in parts {
        match part {
            None => h.update([0u8]),
            Some(p) => {
                h.update([1u8]);
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// The row of a key: the first message's ids and the fingerprint (channel, scope, key).
pub(super) const KEY_ROW_SQL: &str =
    "SELECT message_id, case_id, customer_id, event_id, fingerprint FROM inbound_keys \
     WHERE channel = ? AND scope = ? AND idem_key = ?";

/// [`repeat_of`] for a row of [`KEY_ROW_SQL`].
pub(super) fn repeat_of_row(r: &crate::Row, m: &NewInbound, key: &str) -> Result<InboundReceipt, StoreError> {
    // Zeros are legitimate while the first message with the key is still being stored.
    let first = InboundReceipt {
        message_id: r.req_i64(0, "inbound_keys.message_id")?,
        case_id: r.req_i64(1, "inbound_keys.case_id")?,
        customer_id: r.req_i64(2, "inbound_keys.customer_id")?,
        event_id: r.req_i64(3, "inbound_keys.event_id")?,
        created: false,
    };
    repeat_of(first, r.opt_text(4).as_deref(), m, key)
}

/// The answer for a key seen before: its first message's ids, or a conflict if this
/// message is not the same (`stored` is `None` for keys kept before fingerprints existed).
pub(super) fn repeat_of(
    first: InboundReceipt,
    stored: Option<&str>,
    m: &NewInbound,
    key: &str,
) -> Result<InboundReceipt, StoreError> {
    match stored {
        Some(f) if f != fingerprint(m) => Err(StoreError::IdempotencyConflict(format!(
            "{} {:?} was already used for another message (other sender, subject, text, html, \
             attachments or case_id); use a new key for a new message",
            if key.starts_with("p:") { "provider_message_id" } else { "Idempotency-Key" },
            &key[2..]
        ))),
        _ => Ok(InboundReceipt { created: false, ..first }),
    }
}
