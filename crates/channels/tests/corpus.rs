//! Every mail of the shared test corpus (`../shared/data/email`: Stalwart's, zbateson's and
//! php-mime-mail-parser's samples, read in place) goes through the e-mail channel's reading
//! without a panic, and each becomes an inbound message; for Stalwart's set, whose expected
//! parse is recorded beside each mail, the subject and the number of attachments match.

use std::path::{Path, PathBuf};

use kontor_channels::email::inbound::{to_inbound, Envelope};
use kontor_channels::email::parse::parse;

fn corpus() -> Option<PathBuf> {
    kontor_testkit::shared_data("email")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "eml" || x == "txt") && !p.to_string_lossy().contains("/files/") {
            out.push(p);
        }
    }
}

fn envelope() -> Envelope {
    Envelope {
        mail_from: "corpus@sender.example".into(),
        rcpt_to: vec!["support@support.example.de".into()],
        helo: "corpus".into(),
        peer: [127, 0, 0, 1].into(),
        tokens: vec![],
        reply_domain: "support.example.de".into(),
        keys: None,
    }
}

/// The subject recorded in a Stalwart expected-parse file (its first part's headers).
fn expected_subject(json: &serde_json::Value) -> Option<String> {
    json["parts"][0]["headers"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == "subject")
        .and_then(|h| h["value"]["Text"].as_str().map(|s| s.trim().to_string()))
}

#[test]
fn every_corpus_mail_is_read_and_the_stalwart_set_matches_its_expected_parse() {
    let Some(dir) = corpus() else { return };
    let mut all = Vec::new();
    files(&dir, &mut all);
    all.sort();
    assert!(all.len() > 100, "the corpus has {} mails", all.len());
    let (mut readable, mut unreadable, mut compared) = (0, 0, 0);
    let mut mismatches = Vec::new();
    for path in &all {
        let raw = std::fs::read(path).unwrap();
        let mail = parse(&raw);
        let inbound = to_inbound(&raw, &envelope(), "DE").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!inbound.text.is_empty() || !inbound.files.is_empty(), "{}: nothing to show", path.display());
        if mail.readable {
            readable += 1;
        } else {
            unreadable += 1;
        }
        let expected = path.with_extension("json");
        if path.to_string_lossy().contains("stalwart") && expected.is_file() {
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
            compared += 1;
            let want_files = json["attachments"].as_array().map(Vec::len).unwrap_or(0);
            if mail.files.len() != want_files.min(500) {
                mismatches.push(format!("{}: {} attachments, expected {want_files}", path.display(), mail.files.len()));
            }
            let want_subject = expected_subject(&json).filter(|s| !s.is_empty());
            if mail.subject != want_subject {
                mismatches.push(format!("{}: subject {:?}, expected {want_subject:?}", path.display(), mail.subject));
            }
        }
    }
    println!("corpus: {} mails, {readable} read, {unreadable} kept as unreadable; {compared} compared", all.len());
    assert!(compared >= 100, "only {compared} Stalwart mails compared");
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}
