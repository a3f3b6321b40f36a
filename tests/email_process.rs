//! The e-mail channel in the real `kontor serve` process: every mail answered `250` survives
//! a SIGKILL in the middle of concurrent SMTP delivery, exactly once; and mail fetched over
//! IMAP from a real dovecot is one message with its SMTP copy and is imported once across a
//! restart.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, received_by_provider_id, within, Api, Deployment, Node};
use mail_send::smtp::message::Parameters;

const CLIENTS: usize = 12;
/// The kill comes once this many mails were answered 250 (or after [`MAX_BURST`]).
const KILL_AFTER: usize = 200;
const MAX_BURST: Duration = Duration::from_secs(20);

fn write_config(dep: &Deployment, toml: &str) -> String {
    let path = dep.dir.path().join("email.toml");
    std::fs::write(&path, toml).expect("config file");
    path.display().to_string()
}

async fn wait_port(port: u16, node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "no SMTP listener on {port}:\n{}", node.log_tail(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mail(c: usize, n: usize) -> (String, String, Vec<u8>) {
    let from = format!("crash{c}-{}@kunde.example", n % 3);
    let id = format!("crash-{c}-{n}@kunde.example");
    let raw = format!(
        "From: {from}\r\nTo: support@support.example.de\r\nSubject: Anliegen {c}-{n}\r\nMessage-ID: <{id}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nGuten Tag, Anliegen {c}-{n}.\r\n"
    );
    (from, id, raw.into_bytes())
}

fn smtp_client(port: u16) -> mail_send::SmtpClientBuilder<String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    mail_send::SmtpClientBuilder::new_with_tls_connector(
        "127.0.0.1".to_string(),
        port,
        tokio_rustls::TlsConnector::from(Arc::new(config)),
    )
    .helo_host("crash-client.example")
    .timeout(Duration::from_secs(30))
}

/// What one SMTP client saw: the Message-IDs answered `250`, and anything that went wrong
/// before the kill.
#[derive(Default)]
struct ClientReport {
    acked: Vec<String>,
    problems: Vec<String>,
    sent: usize,
}

async fn client(
    port: u16,
    c: usize,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let mut conn = match smtp_client(port).connect_plain().await {
        Ok(conn) => conn,
        Err(e) => {
            report.problems.push(format!("client {c} could not connect: {e}"));
            return report;
        }
    };
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let (from, id, raw) = mail(c, n);
        n += 1;
        report.sent += 1;
        let sent = async {
            conn.mail_from(&from, &Parameters::new()).await?;
            conn.rcpt_to("support@support.example.de", &Parameters::new()).await?;
            conn.data(&raw).await
        }
        .await;
        match sent {
            Ok(_) => {
                report.acked.push(id);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) if killed.load(Ordering::SeqCst) => break,
            Err(e) => {
                report.problems.push(format!("{id}: not taken before the kill: {e}"));
                break;
            }
        }
    }
    report
}

async fn sigkill_during_smtp_delivery(dep: &Deployment) {
    let token = dep.token();
    let port = free_port();
    let config = write_config(
        dep,
        &format!("[email]\nsmtp_listen = \"127.0.0.1:{port}\"\ndomains = [\"support.example.de\"]\nmax_sessions_per_ip = 64\n"),
    );
    let mut first = dep.start_node("before-crash", &[("KONTOR_CONFIG", &config)]).await;
    wait_port(port, &first).await;

    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> =
        (0..CLIENTS).map(|c| tokio::spawn(client(port, c, killed.clone(), stop.clone(), count.clone()))).collect();
    // Mails are in flight on every session when the kill comes.
    let started = Instant::now();
    while count.load(Ordering::SeqCst) < KILL_AFTER && started.elapsed() < MAX_BURST {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.store(true, Ordering::SeqCst);
    first.kill();
    stop.store(true, Ordering::SeqCst);

    let mut acked: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut sent = 0;
    for c in clients {
        let r = within(Duration::from_secs(60), "an SMTP client", c).await.expect("client task");
        sent += r.sent;
        problems.extend(r.problems);
        acked.extend(r.acked);
    }
    assert!(
        problems.is_empty(),
        "{} problems before the kill, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(acked.len() >= KILL_AFTER, "only {} of {sent} mails were answered 250 in {MAX_BURST:?}", acked.len());

    let second = dep.start_node("after-crash", &[("KONTOR_CONFIG", &config)]).await;
    let api = Api::new(&second, &token);
    let received = received_by_provider_id(&api.all_events().await);
    let twice: Vec<_> = received.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "mails stored more than once: {:?}", &twice[..twice.len().min(5)]);
    let missing: Vec<_> = acked.iter().filter(|id| !received.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} mails answered 250 are missing after the crash, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );

    // Sending every acknowledged mail again (a client that did not see the 250 would) stores
    // nothing new.
    wait_port(port, &second).await;
    let mut conn = smtp_client(port).connect_plain().await.expect("connect after the restart");
    for id in acked.iter().take(50) {
        // "crash-{c}-{n}@kunde.example"
        let mut parts = id.trim_start_matches("crash-").split(['-', '@']);
        let c: usize = parts.next().and_then(|p| p.parse().ok()).expect("client number");
        let n: usize = parts.next().and_then(|p| p.parse().ok()).expect("mail number");
        let (from, _, raw) = mail(c, n);
        conn.mail_from(&from, &Parameters::new()).await.expect("MAIL FROM");
        conn.rcpt_to("support@support.example.de", &Parameters::new()).await.expect("RCPT TO");
        conn.data(&raw).await.expect("a repeat is answered 250");
    }
    let again = received_by_provider_id(&api.all_events().await);
    assert_eq!(again.len(), received.len(), "a repeated mail is the same message");
    eprintln!(
        "{sent} mails sent, {} answered 250, {} stored in all (some in flight at the kill)",
        acked.len(),
        received.keys().filter(|k| k.starts_with("crash-")).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_mail_answered_250_survives_sigkill_exactly_once() {
    let dep = Deployment::sqlite();
    within(Duration::from_secs(240), "the SMTP crash test", sigkill_during_smtp_delivery(&dep)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_mail_answered_250_survives_sigkill_exactly_once_on_postgres() {
    let Some(dep) = Deployment::postgres().await else { return };
    within(Duration::from_secs(240), "the SMTP crash test on PostgreSQL", sigkill_during_smtp_delivery(&dep)).await;
}

fn plain_mail(id: &str, from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@support.example.de\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nGuten Tag, {subject}.\r\n"
    )
    .into_bytes()
}

async fn wait_received(
    api: &Api,
    ids: &[&str],
    node: &Node,
    dovecot_log: impl Fn() -> String,
) -> HashMap<String, Vec<i64>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = received_by_provider_id(&api.all_events().await);
        if ids.iter().all(|id| received.contains_key(*id)) {
            return received;
        }
        assert!(
            Instant::now() < deadline,
            "not all of {ids:?} arrived: {:?}\nnode:\n{}\ndovecot:\n{}",
            received.keys().collect::<Vec<_>>(),
            node.log_tail(30),
            dovecot_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_mail_is_one_message_with_its_smtp_copy_and_imported_once_across_a_restart() {
    let Some(dovecot) = kontor_testkit::dovecot::Dovecot::start(&[("support", "geheim")]) else { return };
    let dep = Deployment::sqlite();
    let token = dep.token();
    let port = free_port();
    let ca: &Path = &dovecot.cert();
    let config = write_config(
        &dep,
        &format!(
            "[email]\nsmtp_listen = \"127.0.0.1:{port}\"\ndomains = [\"support.example.de\"]\n\n\
             [[email.imap]]\nname = \"support\"\nurl = \"{}\"\nca_file = \"{}\"\npoll_secs = 3600\n",
            dovecot.imaps_url("support", "geheim", "INBOX"),
            ca.display()
        ),
    );
    // The same mail reaches Kontor twice: over SMTP, and as a copy in the IMAP mailbox.
    let both = plain_mail("beide@kunde.example", "jana@kunde.example", "Zweimal zugestellt");
    dovecot.deliver("support", "INBOX", "1.mail", &both);
    dovecot.deliver(
        "support",
        "INBOX",
        "2.mail",
        &plain_mail("nur-imap@kunde.example", "max@kunde.example", "Nur IMAP"),
    );
    let mut node = dep.start_node("first", &[("KONTOR_CONFIG", &config)]).await;
    wait_port(port, &node).await;
    let mut smtp = smtp_client(port).connect_plain().await.expect("connect");
    smtp.mail_from("jana@kunde.example", &Parameters::new()).await.expect("MAIL FROM");
    smtp.rcpt_to("support@support.example.de", &Parameters::new()).await.expect("RCPT TO");
    smtp.data(&both).await.expect("250");
    let api = Api::new(&node, &token);
    let received =
        wait_received(&api, &["beide@kunde.example", "nur-imap@kunde.example"], &node, || dovecot.log()).await;
    assert_eq!(received["beide@kunde.example"].len(), 1, "the SMTP and the IMAP copy are one message");
    let (status, health) = api.get("/api/v1/channels/email/status").await.expect("status");
    assert_eq!(status, 200, "{health}");
    let listeners = health["listeners"].as_array().cloned().unwrap_or_default();
    assert!(
        listeners.iter().any(|l| l["name"] == "email.imap.support" && l["state"] == "running"),
        "the IMAP mailbox is shown running: {health}"
    );

    // Killed without warning; a new mail arrives meanwhile; after the restart only it is new.
    node.kill();
    dovecot.deliver(
        "support",
        "INBOX",
        "3.mail",
        &plain_mail("danach@kunde.example", "eva@kunde.example", "Nach dem Neustart"),
    );
    let second = dep.start_node("second", &[("KONTOR_CONFIG", &config)]).await;
    let api = Api::new(&second, &token);
    let received = wait_received(
        &api,
        &["beide@kunde.example", "nur-imap@kunde.example", "danach@kunde.example"],
        &second,
        || dovecot.log(),
    )
    .await;
    for (id, ids) in &received {
        assert_eq!(ids.len(), 1, "{id} stored {} times", ids.len());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dovecot.mails("support", "INBOX").iter().all(|(_, seen)| *seen) {
        assert!(Instant::now() < deadline, "imported mail is marked read: {:?}", dovecot.mails("support", "INBOX"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
