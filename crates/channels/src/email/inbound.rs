//! From a received mail to an inbound message: the sender (the `From` address, else the
//! envelope sender), the text, the ids it answers, its files; the Message-ID is its
//! provider id, so the same mail arriving twice (again by SMTP, or also by IMAP) is stored
//! once.

use std::net::IpAddr;

use kontor_channel::{DeliveryReport, InboundFile, InboundMessage, InboundReceipt, InboundSink, RawSource, SinkError};
use kontor_core::{Channel, DeliveryState, IdentityKind};
use sha2::{Digest, Sha256};

use super::keys::{MailKeys, Token};
use super::parse::{delivery_failure, parse, UNREADABLE_TEXT};

/// How a mail came in.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `MAIL FROM` (empty for bounces).
    pub mail_from: String,
    /// `RCPT TO`, our addresses only.
    pub rcpt_to: Vec<String>,
    /// The name the client gave in `EHLO`.
    pub helo: String,
    pub peer: IpAddr,
    /// What our recipient addresses said (bounce addresses, case tokens; MACs checked).
    pub tokens: Vec<Token>,
    /// The domain of Kontor's own Message-IDs (that of `email.outbound.from`).
    pub reply_domain: String,
    /// The channel's key (Kontor's Message-IDs carry a MAC made with it).
    pub keys: Option<MailKeys>,
}

/// The Message-ID (without brackets) Kontor gives reply `message` of `case`: with a MAC when
/// the key is there, so nobody can name one of Kontor's mails without having received it.
pub fn reply_message_id(keys: Option<&MailKeys>, case: i64, message: i64, domain: &str) -> String {
    match keys {
        Some(k) => format!("kontor.{case}.{message}.{}@{domain}", k.message_id_mac(case, message)),
        None => format!("kontor.{case}.{message}@{domain}"),
    }
}

/// A bounce of one of Kontor's replies: the report that marks it failed, with the reason.
pub fn bounce_report(raw: &[u8], envelope: &Envelope) -> Option<DeliveryReport> {
    let (case, message) = envelope.tokens.iter().find_map(|t| match t {
        Token::Bounce { case, message } => Some((*case, *message)),
        Token::Case(_) => None,
    })?;
    let reason = delivery_failure(raw)?;
    Some(DeliveryReport {
        channel: Channel::Email,
        provider_message_id: reply_message_id(envelope.keys.as_ref(), case, message, &envelope.reply_domain),
        state: DeliveryState::Failed,
        error: Some(reason),
    })
}

/// The sender of a mail nobody can be named for (no usable `From`, an empty envelope sender).
pub const UNKNOWN_SENDER: &str = "unbekannt@absender.invalid";

/// Longest text kept in the message (the raw source keeps all of it).
const MAX_TEXT_CHARS: usize = 200_000;
/// Largest HTML kept in the message (larger HTML stays in the raw source only).
const MAX_HTML_BYTES: usize = 1_000_000;

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// A mail nothing could be read from (the parser failed on it): kept with its source.
pub fn unreadable(raw: &[u8], envelope: &Envelope) -> InboundMessage {
    let from = kontor_core::normalise_identity(IdentityKind::Email, &envelope.mail_from, "DE")
        .unwrap_or_else(|_| UNKNOWN_SENDER.to_string());
    let digest = Sha256::digest(raw);
    InboundMessage {
        channel: Channel::Email,
        from_kind: IdentityKind::Email,
        from_address: from.clone(),
        name: None,
        subject: None,
        text: UNREADABLE_TEXT.to_string(),
        html: None,
        attachments: Vec::new(),
        provider_message_id: Some(format!("sha256:{}", hex::encode(&digest[..16]))),
        idempotency_key: None,
        idempotency_scope: format!("from:{from}"),
        case_id: None,
        refers_to: Vec::new(),
        case_hint: None,
        files: vec![InboundFile {
            filename: "original.eml".into(),
            content_type: "message/rfc822".into(),
            bytes: bytes::Bytes::copy_from_slice(raw),
        }],
        auto_submitted: false,
        raw_source: Some(RawSource::Bytes(bytes::Bytes::copy_from_slice(raw))),
        to: envelope.rcpt_to.clone(),
        cc: Vec::new(),
    }
}

/// The inbound message for a received mail. A mail that cannot be read is kept as such (with
/// a note as its text); an error only when nothing about it can be stored.
pub fn to_inbound(raw: &[u8], envelope: &Envelope, region: &str) -> Result<InboundMessage, String> {
    let mail = parse(raw);
    let normalise = |a: &str| kontor_core::normalise_identity(IdentityKind::Email, a, region).ok();
    let from = mail
        .from_address
        .as_deref()
        .and_then(normalise)
        .or_else(|| normalise(&envelope.mail_from))
        .unwrap_or_else(|| UNKNOWN_SENDER.to_string());
    // The Message-ID identifies the mail; a mail without one by its content.
    let provider_id = mail.message_id.clone().unwrap_or_else(|| {
        let digest = Sha256::digest(raw);
        format!("sha256:{}", hex::encode(&digest[..16]))
    });
    // A mail to a bounce address answers that reply, whatever its headers say.
    let bounced = envelope.tokens.iter().find_map(|t| match t {
        Token::Bounce { case, message } => {
            Some(reply_message_id(envelope.keys.as_ref(), *case, *message, &envelope.reply_domain))
        }
        Token::Case(_) => None,
    });
    let mut refers_to = mail.refers_to.clone();
    if let Some(id) = &bounced {
        refers_to.retain(|r| r != id);
        refers_to.insert(0, id.clone());
    }
    let mut text = mail.text.clone();
    if text.trim().is_empty() && mail.files.is_empty() && mail.readable {
        text = "(ohne Text / no text)".into();
    }
    if !mail.readable {
        text = UNREADABLE_TEXT.to_string();
    }
    // The message holds what an agent reads; the raw source keeps everything.
    if text.chars().nth(MAX_TEXT_CHARS).is_some() {
        text = format!("{}\n\n[… gekürzt / shortened; the whole mail is in its source]", cut(&text, MAX_TEXT_CHARS));
    }
    let html = mail.html.clone().filter(|h| h.len() <= MAX_HTML_BYTES);
    let raw_kept = mail.readable;
    let mut files: Vec<InboundFile> = mail
        .files
        .iter()
        .map(|f| InboundFile {
            filename: cut(&f.filename, 255),
            content_type: f.content_type.clone(),
            bytes: bytes::Bytes::from(f.bytes.clone()),
        })
        .collect();
    if !raw_kept {
        // Unreadable: the raw source is also shown as a file, the only readable form of it.
        files.push(InboundFile {
            filename: "original.eml".into(),
            content_type: "message/rfc822".into(),
            bytes: bytes::Bytes::copy_from_slice(raw),
        });
    }
    Ok(InboundMessage {
        channel: Channel::Email,
        from_kind: IdentityKind::Email,
        from_address: from.clone(),
        name: mail.from_name.as_deref().map(|n| cut(n, 200)),
        subject: mail.subject.as_deref().map(|s| cut(s, 998)),
        text,
        html,
        attachments: Vec::new(),
        provider_message_id: Some(provider_id),
        idempotency_key: None,
        // One key space per sender: the same mail again (by SMTP or IMAP, from any mailbox)
        // is one message, and nobody can suppress another sender's mail by using its id.
        idempotency_scope: format!("from:{from}"),
        case_id: None,
        refers_to,
        case_hint: envelope.tokens.iter().find_map(|t| match t {
            Token::Case(c) => Some(*c),
            Token::Bounce { .. } => None,
        }),
        files,
        // Mail to a bounce address (a vacation notice answers the envelope sender) is a
        // machine's.
        auto_submitted: mail.auto_submitted || bounced.is_some(),
        raw_source: Some(RawSource::Bytes(bytes::Bytes::copy_from_slice(raw))),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
    })
}

/// What became of a delivered mail.
#[derive(Debug)]
pub enum Delivered {
    /// Stored as a message (or it was one already).
    Message(InboundReceipt),
    /// A bounce of one of Kontor's replies; `applied`: it marked that reply failed.
    Bounce { applied: bool },
    /// A copy of one of Kontor's own replies (its Message-ID carries Kontor's MAC: a sent
    /// copy in an IMAP mailbox, a Bcc back to the support address): not a customer's mail,
    /// nothing stored.
    Own,
}

/// Parses one received mail (SMTP or IMAP) and hands it to the sink — a bounce of one of
/// Kontor's replies as a delivery report; resolves after the commit. Parsing a large mail
/// takes a while, so it runs off the async threads; a mail that makes the parser panic is
/// kept as unreadable (with its source), never refused for ever.
pub async fn deliver(
    raw: bytes::Bytes,
    envelope: Envelope,
    region: String,
    sink: &dyn InboundSink,
) -> Result<Delivered, SinkError> {
    let parsed = {
        let (raw, envelope) = (raw.clone(), envelope.clone());
        tokio::task::spawn_blocking(move || match bounce_report(&raw, &envelope) {
            Some(report) => Ok(Err(report)),
            None => to_inbound(&raw, &envelope, &region).map(Ok),
        })
        .await
    };
    let inbound = match parsed {
        Ok(Ok(Ok(inbound)))
            if envelope
                .keys
                .as_ref()
                .is_some_and(|k| inbound.provider_message_id.as_deref().is_some_and(|id| k.is_own_message_id(id))) =>
        {
            return Ok(Delivered::Own)
        }
        Ok(Ok(Ok(inbound))) => inbound,
        Ok(Ok(Err(report))) => return Ok(Delivered::Bounce { applied: sink.report(report).await? }),
        Ok(Err(reason)) => return Err(SinkError::Rejected(reason)),
        Err(e) => {
            tracing::error!(error = %e, "The mail parser failed on a mail; it is kept as unreadable.");
            unreadable(&raw, &envelope)
        }
    };
    Ok(Delivered::Message(sink.accept(inbound).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(from: &str) -> Envelope {
        Envelope {
            mail_from: from.into(),
            rcpt_to: vec!["support@support.example.de".into()],
            helo: "c".into(),
            peer: [127, 0, 0, 1].into(),
            tokens: vec![],
            reply_domain: "support.example.de".into(),
            keys: None,
        }
    }

    #[test]
    fn the_sender_is_the_from_address_else_the_envelope() {
        let m = to_inbound(
            b"From: Jana <Jana@Kunde.Example>\r\nMessage-ID: <x@y>\r\n\r\nHallo\r\n",
            &env("b@c.example"),
            "DE",
        )
        .unwrap();
        assert_eq!((m.from_address.as_str(), m.provider_message_id.as_deref()), ("jana@kunde.example", Some("x@y")));
        assert_eq!(m.idempotency_scope, "from:jana@kunde.example");
        let m = to_inbound(b"Subject: ohne Absender\r\n\r\nHallo\r\n", &env("b@c.example"), "DE").unwrap();
        assert_eq!(m.from_address, "b@c.example");
        assert!(m.provider_message_id.unwrap().starts_with("sha256:"), "no Message-ID: the content identifies it");
    }

    #[test]
    fn an_overlong_text_is_shortened_and_overlong_html_left_to_the_source() {
        let long = "x".repeat(250_000);
        let mail = format!("From: a@b.example\r\nContent-Type: text/plain\r\n\r\n{long}\r\n");
        let m = to_inbound(mail.as_bytes(), &env("a@b.example"), "DE").unwrap();
        assert!(m.text.chars().count() < 200_100 && m.text.ends_with("its source]"), "{}", m.text.len());
        let html = format!("<p>{}</p>", "y".repeat(1_100_000));
        let mail = format!("From: a@b.example\r\nContent-Type: text/html\r\n\r\n{html}\r\n");
        let m = to_inbound(mail.as_bytes(), &env("a@b.example"), "DE").unwrap();
        assert!(m.html.is_none());
        assert!(matches!(m.raw_source, Some(RawSource::Bytes(ref b)) if b.len() > 1_100_000), "the source keeps it");
    }

    #[test]
    fn a_mail_the_parser_failed_on_is_kept_with_its_source() {
        let m = unreadable(b"\xff\xfe whatever", &env("b@c.example"));
        assert_eq!((m.from_address.as_str(), m.text.as_str()), ("b@c.example", UNREADABLE_TEXT));
        assert_eq!(m.files.len(), 1);
    }

    #[test]
    fn an_unreadable_mail_is_kept_with_its_source() {
        let m = to_inbound(b"\x00\x01garbage", &env(""), "DE").unwrap();
        assert_eq!(m.from_address, UNKNOWN_SENDER);
        assert_eq!(m.text, UNREADABLE_TEXT);
        assert_eq!(m.files.len(), 1);
        assert_eq!(&m.files[0].bytes[..], b"\x00\x01garbage");
    }
}
