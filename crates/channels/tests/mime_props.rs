//! Property tests (proptest) of the MIME → inbound path, the e-mail channel's fuzz target:
//!
//! - any bytes at all become an inbound message (never a panic, never an error): readable or
//!   kept as unreadable, always with the bytes as its raw source and an id for deduplication;
//! - a mail built by a real composer (mail-builder, with RFC 2047/2231 encoding) from random
//!   Unicode subjects, names, texts and files reads back to what was put in;
//! - mails of the shared corpus with random bytes changed, cut off or repeated still become
//!   inbound messages.
//!
//! Found so far: mail-parser 0.11.9 panics ("Invalid part ID, could not find multipart") on
//! some damaged multipart mails; the reader catches that and keeps such a mail as unreadable
//! (the seed is kept in `mime_props.proptest-regressions`).
//!
//! `PROPTEST_CASES=20000 cargo nextest run -p kontor-channels --test mime_props` runs it
//! longer (the suite runs proptest's default of 256 cases per property).

use kontor_channel::RawSource;
use kontor_channels::email::inbound::{to_inbound, Envelope};
use mail_builder::headers::address::Address;
use mail_builder::MessageBuilder;
use proptest::prelude::*;

fn envelope() -> Envelope {
    Envelope {
        mail_from: "absender@kunde.example".into(),
        rcpt_to: vec!["support@support.example.de".into()],
        helo: "client.example".into(),
        peer: [127, 0, 0, 1].into(),
        tokens: Vec::new(),
        reply_domain: "support.example.de".into(),
        keys: None,
    }
}

/// Checks what must hold of any mail's inbound message.
fn assert_inbound(raw: &[u8]) {
    let m = to_inbound(raw, &envelope(), "DE").expect("every mail becomes an inbound message");
    assert!(!m.text.trim().is_empty() || !m.files.is_empty(), "a message has text or files");
    assert!(m.provider_message_id.as_deref().is_some_and(|id| !id.is_empty() && id.len() <= 300));
    assert!(m.from_address.contains('@'), "a sender address: {}", m.from_address);
    assert!(m.subject.as_deref().is_none_or(|s| s.chars().count() <= 998));
    assert!(m.refers_to.len() <= 51, "references are bounded");
    match &m.raw_source {
        Some(RawSource::Bytes(b)) => assert_eq!(&b[..], raw, "the raw source is the mail as it came"),
        other => panic!("no raw source: {other:?}"),
    }
}

/// Unicode text without control characters (what a subject or name can carry).
fn words() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9äöüÄÖÜßéèàçñøå€ 「」中文😀.,;:!?()'-]{1,60}").expect("regex")
}

fn corpus_mails() -> &'static [Vec<u8>] {
    static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(read_corpus)
}

fn read_corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack: Vec<_> = kontor_testkit::shared_data("email/stalwart_mail_parser").into_iter().collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                if let Ok(b) = std::fs::read(&p) {
                    out.push(b);
                }
            }
        }
    }
    out.sort();
    out
}

proptest! {
    // Failures found are kept beside this file (tests/mime_props.proptest-regressions) and
    // tried first on every run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_become_an_inbound_message(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        assert_inbound(&raw);
    }

    #[test]
    fn header_like_garbage_becomes_an_inbound_message(
        lines in proptest::collection::vec(
            proptest::string::string_regex("(From|To|Cc|Subject|Message-ID|References|In-Reply-To|Content-Type|Content-Transfer-Encoding|Content-Disposition|Auto-Submitted|X-Autoreply)?: ?[ -~]{0,80}|--[a-z]{0,5}|=\\?[a-zA-Z0-9-]{0,12}\\?[bqBQ]\\?[ -~]{0,40}|[ -~]{0,60}").expect("regex"),
            0..40,
        )
    ) {
        let raw = lines.join("\r\n");
        assert_inbound(raw.as_bytes());
    }

    #[test]
    fn a_composed_mail_reads_back_as_it_was_written(
        subject in words(),
        name in words(),
        text in words(),
        files in proptest::collection::vec((words(), proptest::collection::vec(any::<u8>(), 1..2000)), 0..4),
    ) {
        let mut b = MessageBuilder::new()
            .from(Address::new_address(Some(name.trim().to_string()), "kunde@kunde.example"))
            .to("support@support.example.de")
            .subject(subject.as_str())
            .message_id("prop@kunde.example")
            .text_body(text.as_str());
        for (filename, bytes) in &files {
            b = b.attachment("application/octet-stream", format!("{}.bin", filename.trim()), bytes.clone());
        }
        let raw = b.write_to_vec().expect("the composer writes the mail");
        assert_inbound(&raw);
        let m = to_inbound(&raw, &envelope(), "DE").expect("inbound");
        prop_assert_eq!(m.subject.as_deref(), Some(subject.trim()).filter(|s| !s.is_empty()));
        prop_assert_eq!(m.from_address.as_str(), "kunde@kunde.example");
        prop_assert_eq!(m.provider_message_id.as_deref(), Some("prop@kunde.example"));
        if text.trim().is_empty() && files.is_empty() {
            prop_assert_eq!(m.text.as_str(), "(ohne Text / no text)");
        } else {
            prop_assert_eq!(m.text.trim(), text.trim());
        }
        prop_assert_eq!(m.files.len(), files.len());
        for (got, (filename, bytes)) in m.files.iter().zip(&files) {
            prop_assert_eq!(&got.filename, &format!("{}.bin", filename.trim()));
            prop_assert_eq!(&got.bytes[..], &bytes[..]);
        }
    }

    #[test]
    fn a_damaged_corpus_mail_still_becomes_an_inbound_message(
        pick in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..20),
    ) {
        let corpus = corpus_mails();
        if corpus.is_empty() {
            return Ok(());
        }
        let mut raw = corpus[pick.index(corpus.len())].clone();
        for (at, byte, kind) in edits {
            if raw.is_empty() {
                break;
            }
            let i = at.index(raw.len());
            match kind {
                0 => raw[i] = byte,
                1 => raw.truncate(i),
                _ => {
                    let part: Vec<u8> = raw[i..raw.len().min(i + 64)].to_vec();
                    raw.splice(i..i, part);
                }
            }
        }
        assert_inbound(&raw);
    }
}
