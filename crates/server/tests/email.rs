//! The e-mail channel against real mail software: Python's `smtplib` delivers mail to Kontor's
//! SMTP listener, and `aiosmtpd` (in the suite's virtualenv, `KONTOR_PYTHON`) is the relay
//! replies go through. A mail becomes a case with its attachment; the reply leaves threaded
//! (`In-Reply-To`, `References`, `Message-ID`); the customer's answer to it lands in the same
//! case even after it was resolved; foreign recipients and oversized mail are refused; the
//! same mail twice is one message. With `dkim_key_file` the reply's signature verifies with
//! `dkimpy` (and a changed copy does not); the relay's reachability is in the channel's status
//! and on the settings page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_channel::ChannelRegistry;
use kontor_channels::email::keys::MailKeys;
use kontor_channels::email::outbound::EmailOutbound;
use kontor_channels::email::smtp::SmtpListener;
use kontor_channels::email::{EmailConfig, EmailOutboundConfig};
use kontor_testkit::server::TestServer;
use serde_json::{json, Value};

const DOMAIN: &str = "support.example.de";

/// The suite's Python with aiosmtpd, or `None` (then the test is skipped, except in CI).
fn venv_python() -> Option<PathBuf> {
    venv_python_with("aiosmtpd")
}

/// The suite's Python with `modules` (comma-separated) importable, or `None` (then the test is
/// skipped, except in CI).
fn venv_python_with(modules: &str) -> Option<PathBuf> {
    let p = std::env::var_os("KONTOR_PYTHON")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kontor-venv/bin/python")))?;
    let ok = Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(p);
    }
    assert!(
        std::env::var("CI").is_err(),
        "{modules} missing from the suite's virtualenv (scripts/test.sh installs tests/requirements.txt)"
    );
    eprintln!("skipped: {modules} not installed (scripts/test.sh installs it into $HOME/.cache/kontor-venv)");
    None
}

/// aiosmtpd writing every mail it takes into a Maildir.
struct Relay {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relay {
    fn start(python: &Path) -> Relay {
        let maildir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            // A directory that does not exist yet: aiosmtpd's Maildir creates it with its parts.
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Relay { child, port, maildir }
    }

    /// The mails received so far (raw).
    fn mails(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail").join("new");
        let mut files: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect()
    }

    async fn wait_mail(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails[n - 1].clone();
            }
            assert!(Instant::now() < deadline, "the relay got {} mails, not {n}", mails.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs a Python script (stdlib `smtplib` only) and returns what it printed.
fn python(script: &str, smtp: SocketAddr) -> String {
    let out = Command::new("python3")
        .args(["-c", script, &smtp.ip().to_string(), &smtp.port().to_string()])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Setup {
    srv: TestServer,
    smtp: SocketAddr,
    _relay: Option<Relay>,
}

async fn start(relay: Option<Relay>, max_message_bytes: usize) -> (Setup, Option<()>) {
    let url = relay.as_ref().map(|r| format!("smtp://127.0.0.1:{}", r.port));
    start_with(relay, url, None, max_message_bytes).await
}

/// A server whose replies go to `relay_url` (the `relay` started for it, or somewhere else),
/// signed with `dkim` (key file, selector) when given; with the staff users of the page tests.
async fn start_with(
    relay: Option<Relay>,
    relay_url: Option<String>,
    dkim: Option<(PathBuf, &str)>,
    max_message_bytes: usize,
) -> (Setup, Option<()>) {
    let email = EmailConfig {
        smtp_listen: Some("127.0.0.1:0".into()),
        domains: vec![DOMAIN.into()],
        max_message_bytes,
        outbound: EmailOutboundConfig {
            relay: relay_url,
            from: Some(format!("Kontor Support <support@{DOMAIN}>")),
            dkim_key_file: dkim.as_ref().map(|(file, _)| file.clone()),
            dkim_selector: dkim.as_ref().map(|(_, selector)| selector.to_string()),
            ..Default::default()
        },
        ..EmailConfig::default()
    };
    let listener: Arc<Mutex<Option<Arc<SmtpListener>>>> = Arc::default();
    let slot = listener.clone();
    let cfg = email.clone();
    let srv = TestServer::start_with(
        move |c| {
            c.email = cfg;
            c.reopen_window_hours = 0;
            c.jobs.poll_ms = 20;
            c.jobs.backoff_base_ms = 10;
            c.jobs.backoff_max_ms = 20;
        },
        move |state| {
            let mut registry = ChannelRegistry::new();
            let keys = state.vault.as_ref().map(|v| MailKeys::new(*v.derive_key(MailKeys::LABEL)));
            let l = Arc::new(SmtpListener::from_config(&email, "DE", keys.clone()).unwrap().unwrap());
            registry.add_listener(l.clone());
            if let Some(out) = EmailOutbound::from_config(&email, keys).unwrap() {
                registry.add_outbound(Arc::new(out));
            }
            *slot.lock().unwrap() = Some(l);
            state.channels = Arc::new(registry);
        },
    )
    .await
    .with_staff()
    .await;
    let l = listener.lock().unwrap().clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let smtp = loop {
        if let Some(a) = l.bound_address() {
            break a;
        }
        assert!(Instant::now() < deadline, "the SMTP listener did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (Setup { srv, smtp, _relay: relay }, Some(()))
}

/// The cases and the first case's messages, waiting until `n` messages are there.
async fn wait_messages(srv: &TestServer, case_id: Option<&Value>, n: usize) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, cases) = srv.call("GET", "/api/v1/cases", None).await;
        let id = match case_id {
            Some(id) => Some(id.clone()),
            None => cases["items"].as_array().and_then(|a| a.first()).map(|c| c["id"].clone()),
        };
        if let Some(id) = id {
            let (_, case) = srv.call("GET", &format!("/api/v1/cases/{id}"), None).await;
            let messages = case["messages"].as_array().cloned().unwrap_or_default();
            if messages.len() >= n {
                return (case, messages);
            }
        }
        assert!(Instant::now() < deadline, "no case with {n} messages");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const SEND_FIRST: &str = r#"
import smtplib, sys
from email.message import EmailMessage
from email.headerregistry import Address
m = EmailMessage()
m["From"] = Address("Jana Müller", "jana.mueller", "kunde.example")
m["To"] = "support@support.example.de"
m["Subject"] = "Lieferung fehlt – Bestellung 4711"
m["Message-ID"] = "<first-4711@kunde.example>"
m.set_content("Grüße aus Köln, die Lieferung 4711 fehlt.")
m.add_attachment(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nRechnung\n%%EOF\n", maintype="application", subtype="pdf", filename="Rechnung März.pdf")
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.send_message(m)
    s.send_message(m)  # the same mail again: one message
print("sent")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_becomes_a_case_the_reply_leaves_threaded_and_the_answer_reopens_the_same_case() {
    let Some(py) = venv_python() else { return };
    let (s, _) = start(Some(Relay::start(&py)), 25 * 1024 * 1024).await;
    let srv = &s.srv;
    assert_eq!(python(SEND_FIRST, s.smtp), "sent");

    let (case, messages) = wait_messages(srv, None, 1).await;
    let case_id = case["id"].clone();
    let first = &messages[0];
    assert_eq!(first["channel"], "email");
    assert_eq!(first["subject"], "Lieferung fehlt – Bestellung 4711");
    assert!(first["text"].as_str().unwrap().contains("Grüße aus Köln"), "{first}");
    assert_eq!(case["customer"]["name"], "Jana Müller");
    assert_eq!(case["customer"]["identities"][0]["address"], "jana.mueller@kunde.example");
    let attachment = &first["attachments"][0];
    assert_eq!(attachment["filename"], "Rechnung März.pdf");
    assert_eq!(attachment["content_type"], "application/pdf");
    let bytes = srv
        .http
        .get(srv.url(&format!("/api/v1/attachments/{}", attachment["id"])))
        .bearer_auth(&srv.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nRechnung\n%%EOF\n");
    // The raw source is kept and downloadable.
    assert_eq!(first["has_raw_source"], true);
    assert_eq!(first["auto_submitted"], false);
    let raw = srv
        .http
        .get(srv.url(&format!("/api/v1/messages/{}/raw", first["id"])))
        .bearer_auth(&srv.token)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    let raw = raw.text().await.unwrap();
    assert!(raw.contains("Message-ID: <first-4711@kunde.example>"), "{raw}");
    // Sent twice (each answered 250 only after its commit): one message.
    let (_, again) = srv.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    assert_eq!(again["messages"].as_array().unwrap().len(), 1, "the repeat was not stored again");

    // A CC that is no address is refused, naming the field.
    let (status, err) = srv
        .call(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "x", "based_on_event_id": case["last_event_id"], "cc": ["keine Adresse"] })),
        )
        .await;
    assert_eq!((status, err["error"]["details"]["field"].as_str()), (422, Some("cc")), "{err}");

    // The reply goes out as a threaded mail through the relay.
    let (status, sent) = srv
        .call(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({
                "text": "Guten Tag Frau Müller, die Lieferung ist unterwegs.",
                "based_on_event_id": case["last_event_id"],
                "cc": ["Buchhaltung@Kunde.Example"],
                "subject": "Ihre Lieferung 4711",
            })),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["channel"], "email");
    let relay = s._relay.as_ref().unwrap();
    let mail = relay.wait_mail(1).await;
    let header = |name: &str| {
        mail.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
            .map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default())
            .unwrap_or_default()
    };
    assert_eq!(header("In-Reply-To"), "<first-4711@kunde.example>");
    assert!(header("References").contains("<first-4711@kunde.example>"));
    assert!(header("To").contains("jana.mueller@kunde.example"), "{mail}");
    assert!(header("X-RcptTo").contains("jana.mueller@kunde.example"), "{mail}");
    assert!(header("X-RcptTo").contains("buchhaltung@kunde.example"), "the CC gets it too: {mail}");
    assert!(header("Cc").contains("buchhaltung@kunde.example"), "{mail}");
    assert_eq!(header("Subject"), "Re: Ihre Lieferung 4711");
    let ours = header("Message-ID");
    assert!(ours.starts_with("<kontor.") && ours.ends_with(&format!("@{DOMAIN}>")), "{ours}");
    srv.wait_delivery(&case_id, &sent["message_id"], "sent", Duration::from_secs(30)).await;

    // The envelope sender names this reply (a bounce finds it); Reply-To carries the case.
    let bounce_to = header("X-MailFrom");
    assert!(bounce_to.starts_with("bounces+") && bounce_to.ends_with(&format!("@{DOMAIN}")), "{mail}");
    assert!(header("Reply-To").contains(&format!("support+c{case_id}-")), "{mail}");

    // Admins see the channel's state: its listener, that it sends, the newest traffic.
    let (status, st) = srv.call("GET", "/api/v1/channels/email/status", None).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!((st["outbound"].as_bool(), st["last_outbound_state"].as_str()), (Some(true), Some("sent")), "{st}");
    assert_eq!((st["outbound_reachable"].as_bool(), &st["outbound_error"]), (Some(true), &Value::Null), "{st}");
    assert_eq!(st["listeners"][0]["name"], "email.smtp");
    assert_eq!(st["listeners"][0]["state"], "running");
    assert!(st["last_inbound_at"].is_string(), "{st}");
    assert_eq!(srv.call("GET", "/api/v1/channels/fax/status", None).await.0, 404);

    // Resolved; the customer answers the reply: same case, open again (the reopen window is 0).
    let (status, _) =
        srv.call("PATCH", &format!("/api/v1/cases/{case_id}"), Some(json!({ "status": "resolved" }))).await;
    assert_eq!(status, 200);
    let answer = format!(
        r#"
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "jana.mueller@kunde.example"
m["To"] = "support@support.example.de"
m["Subject"] = "Re: Lieferung fehlt"
m["Message-ID"] = "<second-4711@kunde.example>"
m["In-Reply-To"] = "{ours}"
m["References"] = "<first-4711@kunde.example> {ours}"
m.set_content("Danke, angekommen!")
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.send_message(m)
print("sent")
"#
    );
    assert_eq!(python(&answer, s.smtp), "sent");
    let (case, messages) = wait_messages(srv, Some(&case_id), 3).await;
    assert_eq!(messages[2]["text"].as_str().unwrap().trim(), "Danke, angekommen!");
    assert_eq!(case["status"], "open", "the answer re-opened the case");
    let (_, cases) = srv.call("GET", "/api/v1/cases?status=open", None).await;
    assert_eq!(cases["items"].as_array().unwrap().len(), 1, "no second case");

    // A forged bounce address is refused; a real bounce marks the reply failed with the reason.
    let bounce = format!(
        r#"
import smtplib, sys
dsn = ("From: MAILER-DAEMON@relay.example\r\nTo: {bounce_to}\r\nSubject: Undelivered Mail\r\n"
  "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
  "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
  "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n"
  "Final-Recipient: rfc822; jana.mueller@kunde.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
  "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--B--\r\n")
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.ehlo("relay.example")
    s.mail("")
    forged = s.rcpt("bounces+1.2-0000000000@{DOMAIN}")[0]
    s.rset()
    s.sendmail("", ["{bounce_to}"], dsn)
print(forged)
"#
    );
    assert_eq!(python(&bounce, s.smtp), "550");
    let failed = srv.wait_delivery(&case_id, &sent["message_id"], "failed", Duration::from_secs(10)).await;
    assert!(failed["delivery_error"].as_str().unwrap_or_default().contains("User unknown"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_source_is_kept_in_the_database_a_large_one_in_the_blob_store_both_downloadable() {
    let (s, _) = start(None, 2 * 1024 * 1024).await;
    let out = python(
        r#"
import smtplib, sys
small = "From: klein@kunde.example\r\nTo: support@support.example.de\r\nSubject: klein\r\nMessage-ID: <klein@kunde.example>\r\n\r\nKurz.\r\n"
large = "From: gross@kunde.example\r\nTo: support@support.example.de\r\nSubject: gross\r\nMessage-ID: <gross@kunde.example>\r\n\r\n" + ("Zeile mit Text.\r\n" * 20000)
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.sendmail("klein@kunde.example", ["support@support.example.de"], small)
    s.sendmail("gross@kunde.example", ["support@support.example.de"], large)
print(len(large))
"#,
        s.smtp,
    );
    let large_len: usize = out.parse().unwrap();
    assert!(large_len > 256 * 1024, "the large mail is over the inline limit");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.len() < 2 {
        assert!(Instant::now() < deadline, "the two mails did not arrive");
        let (_, cases) = s.srv.call("GET", "/api/v1/cases", None).await;
        found.clear();
        for c in cases["items"].as_array().cloned().unwrap_or_default() {
            let (_, case) = s.srv.call("GET", &format!("/api/v1/cases/{}", c["id"]), None).await;
            for m in case["messages"].as_array().cloned().unwrap_or_default() {
                found.push((m["subject"].as_str().unwrap_or_default().to_string(), m["id"].as_i64().unwrap()));
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    found.sort();
    let (gross, klein) = (found[0].1, found[1].1);
    assert!(s.srv.store.inline_source(klein).await.unwrap().is_some(), "the small source is in the database");
    assert!(s.srv.store.inline_source(gross).await.unwrap().is_none(), "the large one is not");
    for (id, len) in [(klein, 100), (gross, large_len)] {
        let raw = s
            .srv
            .http
            .get(s.srv.url(&format!("/api/v1/messages/{id}/raw")))
            .bearer_auth(&s.srv.token)
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status().as_u16(), 200);
        let bytes = raw.bytes().await.unwrap();
        assert!(
            bytes.len() >= len && bytes.windows(8).any(|w| w == b"Subject:"),
            "message {id}: {} bytes",
            bytes.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_recipients_and_oversized_mail_are_refused_with_the_right_codes() {
    let (s, _) = start(None, 4096).await;
    let out = python(
        r#"
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    code, caps = s.ehlo("check-client.example")
    size = s.esmtp_features.get("size")
    s.mail("jana@kunde.example")
    foreign = s.rcpt("jemand@example.org")[0]
    ours = s.rcpt("support@support.example.de")[0]
    s.rset()
    try:
        s.sendmail("jana@kunde.example", ["support@support.example.de"], "Subject: gross\r\n\r\n" + "x" * 8000)
        big = "accepted"
    except smtplib.SMTPSenderRefused as e:
        big = e.smtp_code
    except smtplib.SMTPDataError as e:
        big = e.smtp_code
print(size, foreign, ours, big)
"#,
        s.smtp,
    );
    // SIZE is announced; smtplib sends SIZE= with MAIL, so the oversized mail is refused there.
    assert_eq!(out, "4096 550 250 552");
    let (_, cases) = s.srv.call("GET", "/api/v1/cases", None).await;
    assert_eq!(cases["items"].as_array().unwrap().len(), 0, "nothing was stored");

    // An out-of-office answer is stored, marked as sent by a machine.
    let out = python(
        r#"
import smtplib, sys
mail = "From: urlaub@kunde.example\r\nSubject: Abwesenheitsnotiz\r\nAuto-Submitted: auto-replied\r\n\r\nIch bin bis Montag nicht da.\r\n"
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.sendmail("urlaub@kunde.example", ["support@support.example.de"], mail)
print("sent")
"#,
        s.smtp,
    );
    assert_eq!(out, "sent");
    let (_, messages) = wait_messages(&s.srv, None, 1).await;
    assert_eq!(messages[0]["auto_submitted"], true, "{}", messages[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_mail_delivered_over_smtp_is_stored_or_refused_with_a_reason() {
    let dir = std::env::var_os("KONTOR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("email");
    if !dir.is_dir() {
        eprintln!("skipped: the shared test corpus is not at {} (set KONTOR_SHARED_DATA)", dir.display());
        return;
    }
    let (s, _) = start(None, 25 * 1024 * 1024).await;
    let script = r#"
import os, smtplib, sys, json
root = sys.argv[3]
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if f.endswith((".eml", ".txt")) and "/files/" not in os.path.join(d, f))
results = {}
for p in paths:
    raw = open(p, "rb").read()
    try:
        with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10) as s:
            s.sendmail("corpus@sender.example", ["support@support.example.de"], raw)
        results[p] = [250, ""]
    except smtplib.SMTPResponseException as e:
        results[p] = [e.smtp_code, e.smtp_error.decode("utf-8", "replace")]
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = list(e.recipients.values())[0]
        results[p] = [code, msg.decode("utf-8", "replace")]
    except Exception as e:
        results[p] = [0, "error: %r" % e]
print(json.dumps(results))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.smtp.ip().to_string(), &s.smtp.port().to_string()])
        .arg(&dir)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: std::collections::BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let code = |v: &Value| v[0].as_u64().unwrap_or(0);
    let stored = results.values().filter(|v| code(v) == 250).count();
    let refused: Vec<_> = results.iter().filter(|(_, v)| code(v) >= 500).map(|(p, v)| (p, v[1].clone())).collect();
    let broken: Vec<_> = results.iter().filter(|(_, v)| code(v) < 250 || (400..500).contains(&code(v))).collect();
    println!("corpus over SMTP: {} mails, {stored} stored, {} refused: {refused:?}", results.len(), refused.len());
    assert!(results.len() > 100);
    assert!(broken.is_empty(), "no hang, no dropped connection, no temporary failure: {broken:?}");
    assert_eq!(s.srv.call("GET", "/healthz", None).await.0, 200);
}

/// dkimpy's verdicts on a mail file: as received, with its subject changed, with its body
/// changed. The DNS answer is given for `<selector>._domainkey.support.example.de` only.
const DKIM_VERIFY: &str = r#"
import re, sys, dkim
raw = open(sys.argv[1], "rb").read()
name = (sys.argv[2] + "._domainkey.support.example.de.").encode()
record = b"v=DKIM1; k=rsa; p=" + sys.argv[3].encode()
def dns(n, timeout=5):
    return record if n == name else None
subject = re.sub(rb"(?m)^Subject:.*$", b"Subject: Ihre Rechnung", raw, count=1)
body = raw.rstrip(b"\r\n") + b"\nP.S. Nachgetragen.\n"
assert subject != raw and body != raw, "the copies differ"
print(dkim.verify(raw, dnsfunc=dns), dkim.verify(subject, dnsfunc=dns), dkim.verify(body, dnsfunc=dns))
"#;

/// `openssl` in `dir`; what it printed.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_dkim_signed_so_that_dkimpy_verifies_it_and_the_relay_shows_as_reachable() {
    let Some(py) = venv_python_with("aiosmtpd, dkim") else { return };
    // A new RSA key; its public half as the DNS record's `p=` (base64 DER).
    let keys = tempfile::tempdir().unwrap();
    openssl(keys.path(), &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "dkim.pem"]);
    let public = openssl(keys.path(), &["pkey", "-in", "dkim.pem", "-pubout"]);
    let p: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
    let relay = Relay::start(&py);
    let url = format!("smtp://127.0.0.1:{}", relay.port);
    let (s, _) =
        start_with(Some(relay), Some(url), Some((keys.path().join("dkim.pem"), "kontor2026")), 25 * 1024 * 1024).await;
    let srv = &s.srv;
    assert_eq!(python(SEND_FIRST, s.smtp), "sent");
    let (case, _) = wait_messages(srv, None, 1).await;
    let (status, sent) = srv
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", case["id"]),
            Some(json!({
                "text": "Guten Tag Frau Müller, die Lieferung ist unterwegs.",
                "based_on_event_id": case["last_event_id"],
                "cc": ["buchhaltung@kunde.example"],
            })),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let relay = s._relay.as_ref().unwrap();
    let mail = relay.wait_mail(1).await;
    let signature = mail.split("\n").find(|l| l.starts_with("DKIM-Signature:")).unwrap_or_default();
    assert!(signature.contains("a=rsa-sha256; s=kontor2026; d=support.example.de; c=relaxed/relaxed"), "{mail}");

    // The relay's copy, verified as a receiving server would; changed copies fail.
    let dir = relay.maildir.path().join("mail").join("new");
    let file = std::fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
    let out = Command::new(&py).args(["-c", DKIM_VERIFY]).arg(&file).args(["kontor2026", &p]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False False", "{mail}");
    // Another selector's record (or none) does not verify it either.
    let out = Command::new(&py).args(["-c", DKIM_VERIFY]).arg(&file).args(["other", &p]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "False False False");

    // Admins see that the relay answers: in the API and on the settings page (both languages).
    let (status, st) = srv.call("GET", "/api/v1/channels/email/status", None).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!((st["outbound"].as_bool(), st["outbound_reachable"].as_bool()), (Some(true), Some(true)), "{st}");
    assert_eq!(st["outbound_error"], Value::Null, "{st}");
    let (anna, _) = srv.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (_, page) = srv.page(&anna, "/settings").await;
    assert!(
        page.contains(r#"data-reachable="true"><span class="listener l-running">erreichbar</span></span>"#),
        "{page}"
    );
    let en = settings_in_english(srv, &anna).await;
    assert!(en.contains(r#"<span class="listener l-running">reachable</span>"#), "{en}");
}

/// The settings page as a signed-in user whose browser asks for English.
async fn settings_in_english(srv: &TestServer, session: &str) -> String {
    srv.with_session(session, reqwest::Method::GET, "/settings")
        .header(reqwest::header::ACCEPT_LANGUAGE, "en-GB")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_nobody_answers_at_is_shown_as_not_reachable_with_the_reason_but_no_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("smtp://kontor:Relay-Geheimnis-7@127.0.0.1:{closed}");
    let (s, _) = start_with(None, Some(url), None, 25 * 1024 * 1024).await;
    let srv = &s.srv;
    let started = Instant::now();
    let (status, st) = srv.call("GET", "/api/v1/channels/email/status", None).await;
    assert_eq!(status, 200, "{st}");
    assert!(started.elapsed() < Duration::from_secs(6), "the status never waits long: {:?}", started.elapsed());
    assert_eq!((st["outbound"].as_bool(), st["outbound_reachable"].as_bool()), (Some(true), Some(false)), "{st}");
    assert_eq!(st["outbound_error"], format!("connection refused: 127.0.0.1:{closed}"), "{st}");
    assert!(!st.to_string().contains("Geheimnis"), "{st}");
    // The OpenAPI document states both fields.
    let (_, doc) = srv.call("GET", "/api/openapi.json", None).await;
    let fields = &doc["components"]["schemas"]["ChannelStatus"]["properties"];
    assert!(fields["outbound_reachable"].is_object() && fields["outbound_error"].is_object(), "{fields}");

    let (anna, _) = srv.sign_in("anna@example.de", "geheim123").await.unwrap();
    let (_, page) = srv.page(&anna, "/settings").await;
    assert!(
        page.contains(&format!(
            r#"<span class="listener l-backoff">nicht erreichbar</span>: <small class="error-text">Verbindung abgelehnt: 127.0.0.1:{closed}</small>"#
        )),
        "{page}"
    );
    let en = settings_in_english(srv, &anna).await;
    assert!(
        en.contains(&format!(
            r#"<span class="listener l-backoff">not reachable</span>: <small class="error-text">connection refused: 127.0.0.1:{closed}</small>"#
        )),
        "{en}"
    );
    assert!(!page.contains("Geheimnis") && !en.contains("Geheimnis"), "no password on the page");
}
