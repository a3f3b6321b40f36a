//! Reading a received mail (no I/O): sender, subject, text and HTML, the ids it refers to,
//! whether a machine sent it, and its files. Built on `mail-parser`, which knows the
//! charsets and RFC 2047/2231 encodings; a mail it cannot read at all is still kept (as
//! unreadable, with its raw source), never dropped.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};

/// A file found in a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What Kontor takes from a mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMail {
    /// `Message-ID`, without the angle brackets.
    pub message_id: Option<String>,
    /// The `From` address as written (normalised by the caller).
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub subject: Option<String>,
    /// The text (derived from the HTML when the mail has only HTML).
    pub text: String,
    /// The HTML part, if the mail has a real one.
    pub html: Option<String>,
    /// The ids this mail answers: `In-Reply-To` first, then `References` newest first,
    /// without angle brackets and without repeats.
    pub refers_to: Vec<String>,
    /// Sent by a machine (auto-reply, out-of-office, list or bulk mail): never answered
    /// automatically.
    pub auto_submitted: bool,
    pub files: Vec<MailFile>,
    /// The addresses in `To` and `Cc` (lower-cased, at most 50 each).
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// False when the mail could not be read at all (it is kept as it came).
    pub readable: bool,
}

/// The text a mail that cannot be read is stored with.
pub const UNREADABLE_TEXT: &str =
    "(Diese E-Mail konnte nicht gelesen werden; die Originalquelle ist gespeichert. / This e-mail could not be read; its original source is kept.)";

/// Files taken from one mail at most (the rest are left in the raw source).
const MAX_FILES: usize = 500;

/// Subjects that mark an automatic answer (compared case-insensitively at the start).
const AUTO_SUBJECTS: &[&str] = &[
    "automatische antwort",
    "abwesenheitsnotiz",
    "out of office",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "réponse automatique",
];

/// Runs a mail-parser step, turning a panic in it into `None`. (mail-parser 0.11.9 panics on
/// some damaged multipart mails — "Invalid part ID", found by `tests/mime_props.rs`; such a
/// mail is kept as unreadable, with its source.)
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!("The mail parser failed while reading {what}; the mail is kept as it came.");
            None
        }
    }
}

/// Reads a mail.
pub fn parse(raw: &[u8]) -> ParsedMail {
    guarded("a mail", || parse_unguarded(raw))
        .unwrap_or_else(|| ParsedMail { text: UNREADABLE_TEXT.to_string(), ..ParsedMail::default() })
}

fn parse_unguarded(raw: &[u8]) -> ParsedMail {
    let Some(m) = MessageParser::default().parse(raw) else {
        return ParsedMail { text: UNREADABLE_TEXT.to_string(), ..ParsedMail::default() };
    };
    // Without a single header a mail has (no sender, subject, id or date), the bytes were
    // not a mail the parser could make sense of.
    let known = ["From", "Subject", "Message-ID", "Date", "To", "Content-Type"];
    if !known.iter().any(|h| m.header_raw(*h).is_some()) {
        return ParsedMail { text: UNREADABLE_TEXT.to_string(), ..ParsedMail::default() };
    }
    let from = m.from().and_then(|a| a.first());
    let subject = m.subject().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let html = m
        .html_part(0)
        .filter(|p| matches!(p.body, PartType::Html(_)))
        .and_then(|p| p.text_contents())
        .map(str::to_string);
    let text = m.body_text(0).map(|t| t.trim_end().to_string()).unwrap_or_default();
    let mut refers_to = Vec::new();
    let mut add = |ids: Vec<String>| {
        for id in ids {
            if !id.is_empty() && !refers_to.contains(&id) {
                refers_to.push(id);
            }
        }
    };
    add(ids(m.in_reply_to()));
    add(ids(m.references()).into_iter().rev().collect());
    let files = m
        .attachments()
        .take(MAX_FILES)
        .enumerate()
        .map(|(n, part)| {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let filename = part
                .attachment_name()
                .map(str::to_string)
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("attachment-{}{}", n + 1, extension_for(&content_type)));
            MailFile { filename, content_type, bytes: part.contents().to_vec() }
        })
        .collect();
    ParsedMail {
        message_id: m.message_id().and_then(clean_id),
        from_address: from.and_then(|a| a.address()).map(|a| a.trim().to_string()),
        from_name: from.and_then(|a| a.name()).map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
        auto_submitted: is_auto_submitted(&m, subject.as_deref()),
        subject,
        text,
        html,
        refers_to,
        files,
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        readable: true,
    }
}

/// The addresses of an address header, normalised as customer addresses are (so no control,
/// invisible or bidi characters), without repeats, at most 50; others are left out.
fn addresses(header: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in header.into_iter().flat_map(|h| h.iter()) {
        let Some(address) = a.address() else { continue };
        let Ok(address) = kontor_core::normalise_identity(kontor_core::IdentityKind::Email, address, "DE") else {
            continue;
        };
        if address.len() <= 254 && out.len() < 50 && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

/// The addresses a mail names as its recipients (`Delivered-To`, `X-Original-To`, `To`,
/// `Cc`; at most 50), lower-cased: for mail fetched over IMAP, which has no envelope, this is
/// where bounce addresses and case tokens are found.
pub fn header_recipients(raw: &[u8]) -> Vec<String> {
    guarded("recipients", || header_recipients_unguarded(raw)).unwrap_or_default()
}

fn header_recipients_unguarded(raw: &[u8]) -> Vec<String> {
    let Some(m) = MessageParser::default().parse_headers(raw) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        let a = a.trim().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase();
        if !a.is_empty() && a.len() <= 254 && out.len() < 50 && !out.contains(&a) {
            out.push(a);
        }
    };
    for name in ["Delivered-To", "X-Original-To"] {
        if let Some(v) = m.header_raw(name) {
            add(v);
        }
    }
    for list in [m.to(), m.cc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(address) = a.address() {
                add(address);
            }
        }
    }
    out
}

/// The reason of a delivery status notification that reports a failure (RFC 3464:
/// `multipart/report; report-type=delivery-status` with a recipient whose `Action` is
/// `failed` or whose `Status` is 5.x.x): the status and the diagnostic text. `None` for any
/// other mail (a delay notice, an auto-reply, a person's mail).
pub fn delivery_failure(raw: &[u8]) -> Option<String> {
    guarded("a delivery report", || delivery_failure_unguarded(raw)).flatten()
}

fn delivery_failure_unguarded(raw: &[u8]) -> Option<String> {
    let m = MessageParser::default().parse(raw)?;
    let ct = m.content_type()?;
    let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && ct.attribute("report-type").is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"));
    if !is_report {
        return None;
    }
    let status_part = m.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    let body = String::from_utf8_lossy(status_part.contents()).replace("\r\n", "\n");
    // Per-recipient groups follow the per-message group, separated by blank lines.
    for group in body.split("\n\n").skip(1) {
        let field = |name: &str| {
            let mut value: Option<String> = None;
            for line in group.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(v) = value.as_mut() {
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                    continue;
                }
                if value.is_some() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.trim().eq_ignore_ascii_case(name) {
                        value = Some(v.trim().to_string());
                    }
                }
            }
            value
        };
        let action = field("Action").unwrap_or_default().to_ascii_lowercase();
        let status = field("Status").unwrap_or_default();
        if action == "failed" || status.starts_with('5') {
            let diagnostic = field("Diagnostic-Code")
                .map(|d| d.split_once(';').map(|(_, t)| t.trim().to_string()).unwrap_or(d))
                .unwrap_or_else(|| "delivery failed".into());
            return Some(if status.is_empty() { diagnostic } else { format!("{status} {diagnostic}") });
        }
    }
    None
}

/// The ids of an `In-Reply-To` or `References` header (only well-formed ones, see
/// [`clean_id`]), at most 50.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let all: Vec<String> = match v {
        HeaderValue::Text(t) => t.split_whitespace().filter_map(clean_id).collect(),
        HeaderValue::TextList(l) => {
            l.iter().flat_map(|t| t.split_whitespace().filter_map(clean_id).collect::<Vec<_>>()).collect()
        }
        _ => Vec::new(),
    };
    all.into_iter().take(50).collect()
}

/// A message id as Kontor keeps and repeats it (in its replies' `In-Reply-To` and
/// `References`): without angle brackets, printable ASCII only, no white space, brackets or
/// quotes, at most 250 characters. Anything else is dropped: it must never carry a line
/// break (or anything else) into a header Kontor writes.
pub fn clean_id(raw: &str) -> Option<String> {
    let id = raw.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = !id.is_empty()
        && id.len() <= 250
        && id.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b'(' | b')' | b','));
    ok.then(|| id.to_string())
}

/// Whether a machine sent the mail (RFC 3834 `Auto-Submitted`, Microsoft's and others'
/// markers, list and bulk mail, out-of-office subjects).
fn is_auto_submitted(m: &mail_parser::Message<'_>, subject: Option<&str>) -> bool {
    let raw = |name: &str| m.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if raw("Auto-Submitted").is_some_and(|v| !v.is_empty() && v != "no") {
        return true;
    }
    if raw("X-Autoreply").is_some() || raw("X-Autorespond").is_some() {
        return true;
    }
    if raw("X-Auto-Response-Suppress").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if raw("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk")) {
        return true;
    }
    if raw("List-Id").is_some() || raw("List-Unsubscribe").is_some() {
        return true;
    }
    let subject = subject.unwrap_or("").to_lowercase();
    AUTO_SUBJECTS.iter().any(|s| subject.starts_with(s))
}

/// A file name extension for a content type without a name.
fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "message/rfc822" => ".eml",
        "application/pdf" => ".pdf",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "text/plain" => ".txt",
        "text/html" => ".html",
        _ => ".bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_and_cc_are_read_lower_cased_without_repeats() {
        let m = parse(
            b"From: a@b.example\r\nTo: Support <Support@Support.Example.DE>, x@y.example\r\n\
              Cc: =?utf-8?q?J=C3=BCrgen?= <juergen@kunde.example>, x@y.example, undisclosed-recipients:;\r\n\r\nHallo\r\n",
        );
        assert_eq!(m.to, ["support@support.example.de", "x@y.example"]);
        assert_eq!(m.cc, ["juergen@kunde.example", "x@y.example"]);
    }

    const UTF8_MAIL: &str = "From: =?utf-8?q?Jana_M=C3=BCller?= <jana@kunde.example>\r\n\
To: support@support.example.de\r\n\
Subject: =?utf-8?q?Lieferung_fehlt_=E2=80=93_Bestellung_4711?=\r\n\
Message-ID: <abc-1@kunde.example>\r\n\
In-Reply-To: <k-9@support.example.de>\r\n\
References: <first@kunde.example> <k-9@support.example.de>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=\"utf-8\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
R3LDvMOfZSBhdXMgS8O2bG4=\r\n";

    #[test]
    fn an_encoded_mail_gives_sender_subject_text_and_the_ids_it_answers() {
        let p = parse(UTF8_MAIL.as_bytes());
        assert!(p.readable);
        assert_eq!(p.from_address.as_deref(), Some("jana@kunde.example"));
        assert_eq!(p.from_name.as_deref(), Some("Jana Müller"));
        assert_eq!(p.subject.as_deref(), Some("Lieferung fehlt – Bestellung 4711"));
        assert_eq!(p.text, "Grüße aus Köln");
        assert_eq!(p.message_id.as_deref(), Some("abc-1@kunde.example"));
        assert_eq!(p.refers_to, vec!["k-9@support.example.de", "first@kunde.example"]);
        assert!(!p.auto_submitted);
        assert!(p.html.is_none(), "a text-only mail has no HTML");
    }

    #[test]
    fn ids_that_could_break_a_header_are_dropped() {
        assert_eq!(clean_id("<abc.1@kunde.example>").as_deref(), Some("abc.1@kunde.example"));
        assert_eq!(clean_id("<x1\rBcc: victim@example.org>"), None);
        assert_eq!(clean_id("<a b@c>"), None);
        assert_eq!(clean_id(&format!("<{}@x>", "a".repeat(300))), None);
        let mail =
            "From: a@b.example\r\nMessage-ID: <ok@b.example>\r\nIn-Reply-To: <good@x> <bad\"quote@x>\r\n\r\nHallo\r\n";
        assert_eq!(parse(mail.as_bytes()).refers_to, vec!["good@x"]);
    }

    #[test]
    fn machine_mail_is_marked_auto_submitted() {
        for header in [
            "Auto-Submitted: auto-replied",
            "X-Autoreply: yes",
            "X-Auto-Response-Suppress: All",
            "Precedence: bulk",
            "List-Id: <news.example>",
            "Subject: Automatische Antwort: Ihre Anfrage",
        ] {
            let mail = format!("From: a@b.example\r\n{header}\r\n\r\nHallo\r\n");
            assert!(parse(mail.as_bytes()).auto_submitted, "{header}");
        }
        let person = "From: a@b.example\r\nAuto-Submitted: no\r\nSubject: Rechnung\r\n\r\nHallo\r\n";
        assert!(!parse(person.as_bytes()).auto_submitted);
    }

    #[test]
    fn html_only_mail_gets_text_and_files_get_names() {
        let mail = "From: a@b.example\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Z&auml;hler <b>4711</b></p>\r\n\
--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n";
        let p = parse(mail.as_bytes());
        assert!(p.text.contains("Zähler") && p.text.contains("4711"), "{}", p.text);
        assert!(p.html.as_deref().is_some_and(|h| h.contains("<b>4711</b>")));
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.files[0].filename, "Rechnung März.pdf");
        assert_eq!(p.files[0].content_type, "application/pdf");
        assert_eq!(p.files[0].bytes, b"%PDF-1.4\n");
    }

    #[test]
    fn a_bounce_report_gives_its_failure_and_a_delay_or_a_person_none() {
        let dsn = |action: &str, status: &str| {
            format!(
                "From: MAILER-DAEMON@relay.example\r\nTo: bounces+1.2-abc@support.example.de\r\nSubject: Undelivered\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n\
Final-Recipient: rfc822; nobody@kunde.example\r\nAction: {action}\r\nStatus: {status}\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@kunde.example>: Recipient address\r\n rejected: User unknown\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <kontor.1.2@support.example.de>\r\n\r\n--B--\r\n"
            )
        };
        assert_eq!(
            delivery_failure(dsn("failed", "5.1.1").as_bytes()).as_deref(),
            Some("5.1.1 550 5.1.1 <nobody@kunde.example>: Recipient address rejected: User unknown")
        );
        assert_eq!(delivery_failure(dsn("delayed", "4.4.1").as_bytes()), None, "a delay is no failure");
        assert_eq!(delivery_failure(UTF8_MAIL.as_bytes()), None);
    }

    #[test]
    fn garbage_is_kept_as_unreadable_not_dropped() {
        let p = parse(b"\x00\x01\x02 not a mail at all");
        assert!(!p.readable);
        assert_eq!(p.text, UNREADABLE_TEXT);
    }
}
