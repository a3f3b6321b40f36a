//! The SMTP listener's STARTTLS (`email.tls_cert` / `email.tls_key`) with a real client:
//! Python's `smtplib` sees `STARTTLS` offered, upgrades, verifies the certificate against the
//! test CA, and delivers a mail that the sink takes; after the upgrade `STARTTLS` is no longer
//! offered. Without the settings it is not offered at all.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_channel::{
    DeliveryReport, InboundMessage, InboundReceipt, InboundSink, Listener, ListenerContext, SinkError,
};
use kontor_channels::email::smtp::SmtpListener;
use kontor_channels::email::EmailConfig;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Keep(Mutex<Vec<InboundMessage>>);

#[async_trait::async_trait]
impl InboundSink for Keep {
    async fn accept(&self, m: InboundMessage) -> Result<InboundReceipt, SinkError> {
        self.0.lock().unwrap().push(m);
        Ok(InboundReceipt { message_id: 1, case_id: 1, customer_id: 1, event_id: 1, created: true })
    }
    async fn report(&self, _: DeliveryReport) -> Result<bool, SinkError> {
        Ok(false)
    }
    async fn cursor(&self, _: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    async fn save_cursor(&self, _: &str, _: &str) -> Result<(), SinkError> {
        Ok(())
    }
}

const CLIENT: &str = r#"
import smtplib, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP(host, port, timeout=30) as s:
    s.ehlo("tls-client.example")
    offered = s.has_extn("starttls")
    if ca == "-":
        print(offered)
        sys.exit(0)
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.ehlo("tls-client.example")
    again = s.has_extn("starttls")
    s.sendmail("jana@kunde.example", ["support@support.example.de"],
               "From: jana@kunde.example\r\nSubject: verschluesselt\r\nMessage-ID: <tls-1@kunde.example>\r\n\r\nHallo\r\n")
    print(offered, again, s.sock.version())
"#;

async fn start(config: EmailConfig, sink: Arc<Keep>) -> (Arc<SmtpListener>, CancellationToken, std::net::SocketAddr) {
    let listener = Arc::new(SmtpListener::from_config(&config, "DE", None).unwrap().unwrap());
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext::detached(sink, shutdown.clone());
    let l = listener.clone();
    tokio::spawn(async move { l.run(ctx).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Some(a) = listener.bound_address() {
            break a;
        }
        assert!(Instant::now() < deadline, "the listener did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (listener, shutdown, addr)
}

fn client(addr: std::net::SocketAddr, ca: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", CLIENT, &addr.ip().to_string(), &addr.port().to_string(), ca])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "the client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_offered_with_a_certificate_and_a_mail_arrives_over_it() {
    let dir = tempfile::tempdir().unwrap();
    kontor_testkit::dovecot::make_certificate(dir.path());
    let config = EmailConfig {
        smtp_listen: Some("127.0.0.1:0".into()),
        domains: vec!["support.example.de".into()],
        tls_cert: Some(dir.path().join("cert.pem")),
        tls_key: Some(dir.path().join("key.pem")),
        ..EmailConfig::default()
    };
    let sink = Arc::new(Keep::default());
    let (_l, shutdown, addr) = start(config, sink.clone()).await;
    let ca = dir.path().join("ca.pem").display().to_string();
    let out = tokio::task::spawn_blocking(move || client(addr, &ca)).await.unwrap();
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("True"), "STARTTLS offered: {out}");
    assert_eq!(words.next(), Some("False"), "not offered again on TLS: {out}");
    assert!(words.next().is_some_and(|v| v.starts_with("TLSv1.")), "{out}");
    let taken = sink.0.lock().unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].subject.as_deref(), Some("verschluesselt"));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_starttls_is_not_offered() {
    let config = EmailConfig {
        smtp_listen: Some("127.0.0.1:0".into()),
        domains: vec!["support.example.de".into()],
        ..EmailConfig::default()
    };
    let (_l, shutdown, addr) = start(config, Arc::new(Keep::default())).await;
    let out = tokio::task::spawn_blocking(move || client(addr, "-")).await.unwrap();
    assert_eq!(out, "False");
    shutdown.cancel();
}
