//! The IMAP poller against a real dovecot (`kontor_testkit::dovecot`): mail is imported in
//! order, marked read (or moved) only after the sink took it, never twice across a restart,
//! and mail arriving while the poller waits comes in through `IDLE` (the poll interval in
//! these tests is far longer than any test runs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_channel::{
    DeliveryReport, InboundMessage, InboundReceipt, InboundSink, Listener, ListenerContext, SinkError,
};
use kontor_channels::email::config::ImapAccount;
use kontor_channels::email::imap::pollers;
use kontor_channels::email::EmailConfig;
use kontor_testkit::dovecot::Dovecot;
use tokio_util::sync::CancellationToken;

/// Takes every message (counting each hand-over, duplicates included) and keeps cursors.
#[derive(Default)]
struct CountingSink {
    taken: Mutex<Vec<InboundMessage>>,
    cursors: Mutex<HashMap<String, String>>,
    /// While set, every message is refused as temporarily impossible.
    down: Mutex<bool>,
}

#[async_trait::async_trait]
impl InboundSink for CountingSink {
    async fn accept(&self, m: InboundMessage) -> Result<InboundReceipt, SinkError> {
        if *self.down.lock().unwrap() {
            return Err(SinkError::Temporary("database away".into()));
        }
        let mut taken = self.taken.lock().unwrap();
        taken.push(m);
        let id = taken.len() as i64;
        Ok(InboundReceipt { message_id: id, case_id: 1, customer_id: 1, event_id: id, created: true })
    }
    async fn report(&self, _: DeliveryReport) -> Result<bool, SinkError> {
        Ok(false)
    }
    async fn cursor(&self, name: &str) -> Result<Option<String>, SinkError> {
        Ok(self.cursors.lock().unwrap().get(name).cloned())
    }
    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), SinkError> {
        self.cursors.lock().unwrap().insert(name.into(), value.into());
        Ok(())
    }
}

impl CountingSink {
    fn subjects(&self) -> Vec<String> {
        self.taken.lock().unwrap().iter().map(|m| m.subject.clone().unwrap_or_default()).collect()
    }
}

fn mail(n: u32, extra: &str) -> Vec<u8> {
    format!(
        "From: Kunde {n} <kunde{n}@kunde.example>\r\nTo: support@support.example.de\r\nSubject: Anliegen {n}\r\n\
         Message-ID: <imap-{n}@kunde.example>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\nHallo, Anliegen {n}.\r\n"
    )
    .into_bytes()
}

fn config(accounts: Vec<ImapAccount>) -> EmailConfig {
    EmailConfig { domains: vec!["support.example.de".into()], imap: accounts, ..EmailConfig::default() }
}

fn account(name: &str, url: String, move_to: Option<&str>, dovecot: &Dovecot) -> ImapAccount {
    ImapAccount {
        name: name.into(),
        url,
        move_to: move_to.map(str::to_string),
        poll_secs: 3600,
        ca_file: Some(dovecot.cert()),
    }
}

/// Runs the poller until the returned token is cancelled; the handle gives its result.
fn run(
    config: &EmailConfig,
    sink: Arc<CountingSink>,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), String>>) {
    let poller = pollers(config, "DE", None).unwrap().pop().unwrap();
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext::detached(sink, shutdown.clone());
    (shutdown, tokio::spawn(async move { poller.run(ctx).await }))
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool, dovecot: &Dovecot) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not happen; dovecot log:\n{}", dovecot.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_imported_once_in_order_marked_read_after_commit_and_idle_brings_new_mail() {
    let Some(dovecot) = Dovecot::start(&[("kunde", "geheim")]) else { return };
    for n in 1..=3 {
        dovecot.deliver("kunde", "INBOX", &format!("{n}.mail"), &mail(n, ""));
    }
    let cfg = config(vec![account("support", dovecot.imaps_url("kunde", "geheim", "INBOX"), None, &dovecot)]);
    let sink = Arc::new(CountingSink::default());

    // The database is away: nothing is taken, nothing is marked, the poller gives up for now.
    *sink.down.lock().unwrap() = true;
    let (_, handle) = run(&cfg, sink.clone());
    let err = tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("not stored for now"), "{err}");
    assert!(dovecot.mails("kunde", "INBOX").iter().all(|(_, seen)| !seen), "nothing marked read");
    *sink.down.lock().unwrap() = false;

    let (shutdown, handle) = run(&cfg, sink.clone());
    wait_for(
        "three mails taken and marked read",
        || sink.taken.lock().unwrap().len() == 3 && dovecot.mails("kunde", "INBOX").iter().all(|(_, seen)| *seen),
        &dovecot,
    )
    .await;
    assert_eq!(sink.subjects(), ["Anliegen 1", "Anliegen 2", "Anliegen 3"], "in the order they arrived");
    {
        let taken = sink.taken.lock().unwrap();
        assert_eq!(taken[0].provider_message_id.as_deref(), Some("imap-1@kunde.example"));
        assert_eq!(taken[0].from_address, "kunde1@kunde.example");
        assert!(taken[0].raw_source.is_some(), "the raw source goes along");
    }

    // While the poller waits in IDLE (it would not poll for an hour), a new mail arrives.
    dovecot.deliver("kunde", "INBOX", "4.mail", &mail(4, ""));
    wait_for("the fourth mail taken through IDLE", || sink.taken.lock().unwrap().len() == 4, &dovecot).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();

    // A restart goes on from the cursor: the next mail is the only one taken.
    dovecot.deliver("kunde", "INBOX", "5.mail", &mail(5, ""));
    let (shutdown, handle) = run(&cfg, sink.clone());
    wait_for("the fifth mail taken after the restart", || sink.taken.lock().unwrap().len() >= 5, &dovecot).await;
    assert_eq!(
        sink.subjects(),
        ["Anliegen 1", "Anliegen 2", "Anliegen 3", "Anliegen 4", "Anliegen 5"],
        "nothing imported twice across the restart"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_move_to_imported_mail_leaves_the_folder_over_starttls() {
    let Some(dovecot) = Dovecot::start(&[("team", "p@ss/wort")]) else { return };
    dovecot.deliver("team", "INBOX", "1.mail", &mail(1, "X-Autoreply: yes\r\n"));
    dovecot.deliver("team", "INBOX", "2.mail", &mail(2, ""));
    // imap:// with STARTTLS, and a password that needs percent-encoding in the URL.
    let url = dovecot.imap_url("team", "p%40ss%2Fwort", "INBOX");
    let cfg = config(vec![account("team", url, Some("Erledigt"), &dovecot)]);
    let sink = Arc::new(CountingSink::default());
    let (shutdown, handle) = run(&cfg, sink.clone());
    wait_for(
        "both mails moved to the archive",
        || dovecot.mails("team", "INBOX").is_empty() && dovecot.mails("team", "Erledigt").len() == 2,
        &dovecot,
    )
    .await;
    {
        let taken = sink.taken.lock().unwrap();
        assert_eq!(taken.len(), 2);
        assert!(taken[0].auto_submitted && !taken[1].auto_submitted, "X-Autoreply marks an automatic answer");
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_mail_stays_in_the_folder_and_later_mail_still_comes_in() {
    let Some(dovecot) = Dovecot::start(&[("kunde", "geheim")]) else { return };
    dovecot.deliver("kunde", "INBOX", "1.mail", &mail(1, ""));
    let big = format!("X-Padding: {}\r\n", "x".repeat(900));
    dovecot.deliver("kunde", "INBOX", "2.mail", &mail(2, &big));
    dovecot.deliver("kunde", "INBOX", "3.mail", &mail(3, ""));
    let mut cfg = config(vec![account("klein", dovecot.imaps_url("kunde", "geheim", "INBOX"), None, &dovecot)]);
    cfg.max_message_bytes = 1024;
    let sink = Arc::new(CountingSink::default());
    let (shutdown, handle) = run(&cfg, sink.clone());
    wait_for(
        "the two small mails taken and marked read",
        || {
            sink.taken.lock().unwrap().len() == 2
                && dovecot.mails("kunde", "INBOX").iter().filter(|(_, seen)| *seen).count() == 2
        },
        &dovecot,
    )
    .await;
    assert_eq!(sink.subjects(), ["Anliegen 1", "Anliegen 3"], "the large one is not taken, the next one is");
    assert_eq!(dovecot.mails("kunde", "INBOX").len(), 3, "the large one stays, unread, for a person");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_kontors_own_reply_in_the_mailbox_is_not_taken_as_a_customers_mail() {
    use kontor_channels::email::keys::MailKeys;
    let Some(dovecot) = Dovecot::start(&[("kunde", "geheim")]) else { return };
    let keys = MailKeys::new([7; 32]);
    let own = format!(
        "From: Kontor Support <support@support.example.de>\r\nTo: kunde1@kunde.example\r\nSubject: Re: Anliegen 1\r\n\
         Message-ID: <kontor.3.42.{}@support.example.de>\r\n\r\nIhre Antwort.\r\n",
        keys.message_id_mac(3, 42)
    );
    dovecot.deliver("kunde", "INBOX", "1.mail", own.as_bytes());
    // The same shape with a wrong MAC is somebody's mail like any other.
    dovecot.deliver("kunde", "INBOX", "2.mail", &mail(2, ""));
    let forged = own
        .replace(&keys.message_id_mac(3, 42), "0000000000")
        .replace("Subject: Re: Anliegen 1", "Subject: Anliegen 3");
    dovecot.deliver("kunde", "INBOX", "3.mail", forged.as_bytes());
    let cfg = config(vec![account("eigen", dovecot.imaps_url("kunde", "geheim", "INBOX"), None, &dovecot)]);
    let poller = pollers(&cfg, "DE", Some(&keys)).unwrap().pop().unwrap();
    let sink = Arc::new(CountingSink::default());
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext::detached(sink.clone(), shutdown.clone());
    let handle = tokio::spawn(async move { poller.run(ctx).await });
    wait_for("all three marked read", || dovecot.mails("kunde", "INBOX").iter().all(|(_, seen)| *seen), &dovecot).await;
    assert_eq!(sink.subjects(), ["Anliegen 2", "Anliegen 3"], "Kontor's own reply is not a customer's mail");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_untrusted_certificate_is_an_error_with_the_reason() {
    let Some(dovecot) = Dovecot::start(&[("kunde", "geheim")]) else { return };
    let sink = Arc::new(CountingSink::default());
    let cfg = config(vec![account("a", dovecot.imaps_url("kunde", "falsch", "INBOX"), None, &dovecot)]);
    let (_, handle) = run(&cfg, sink.clone());
    let err = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("login as kunde"), "{err}");
    assert!(!err.contains("falsch"), "the password is not in the error: {err}");

    let mut untrusted = account("b", dovecot.imaps_url("kunde", "geheim", "INBOX"), None, &dovecot);
    untrusted.ca_file = None;
    let (_, handle) = run(&config(vec![untrusted]), sink.clone());
    let err = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("TLS"), "a self-signed certificate is not trusted without ca_file: {err}");
    assert!(sink.taken.lock().unwrap().is_empty());
}
