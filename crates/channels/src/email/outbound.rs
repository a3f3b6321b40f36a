//! Sending replies as e-mail through a relay (`email.outbound.relay`): a normal, correctly
//! threaded mail (`Message-ID`, `In-Reply-To`, `References`), composed with `mail-builder`,
//! DKIM-signed when configured (`dkim`), and sent with `mail-send` (STARTTLS when the relay
//! offers it, implicit TLS for `smtps://`). For admins the relay is probed (greeting, EHLO,
//! TLS as the URL says, QUIT: no mail, no password) to tell whether it can be reached.

use std::time::{Duration, Instant};

use kontor_channel::{Outbound, OutboundMessage, SendError, SendReceipt};
use kontor_core::{Channel, IdentityKind};
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::MessageBuilder;
use mail_send::smtp::message::Parameters;
use mail_send::SmtpClientBuilder;
use tokio_rustls::TlsConnector;

use super::config::EmailConfig;
use super::dkim::DkimSigning;
use super::keys::MailKeys;

/// How long a probe of the relay may take in all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a probe's answer is given again before the relay is asked anew.
const PROBE_FRESH: Duration = Duration::from_secs(15);

/// The relay a node sends through.
#[derive(Clone, PartialEq, Eq)]
pub struct Relay {
    /// `smtps://`: TLS from the first byte; `smtp://`: STARTTLS when offered.
    pub implicit_tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("implicit_tls", &self.implicit_tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Relay {
    /// Reads `smtp://[user:password@]host[:port]` or `smtps://…` (percent-encoded user and
    /// password).
    pub fn parse(url: &str) -> Result<Relay, String> {
        let bad = |why: &str| format!("email.outbound.relay: {why} (expected smtp://host:port or smtps://host:port)");
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let implicit_tls = match u.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad("unknown scheme")),
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = u.port().unwrap_or(if implicit_tls { 465 } else { 25 });
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        if u.path() != "" && u.path() != "/" {
            return Err(bad("a path is not allowed"));
        }
        Ok(Relay { implicit_tls, host, port, user, password })
    }

    /// `host:port` (`[::1]:25` for an IPv6 address), as errors name the relay.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The sender of outbound mail (`email.outbound.from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub name: Option<String>,
    pub address: String,
}

impl Sender {
    /// Reads `support@example.de` or `Kontor Support <support@example.de>`.
    pub fn parse(from: &str) -> Result<Sender, String> {
        let from = from.trim();
        let (name, address) = match (from.rfind('<'), from.ends_with('>')) {
            (Some(lt), true) => {
                let name = from[..lt].trim().trim_matches('"').trim();
                (Some(name.to_string()).filter(|n| !n.is_empty()), from[lt + 1..from.len() - 1].trim())
            }
            _ => (None, from),
        };
        let address = kontor_core::normalise_identity(IdentityKind::Email, address, "DE")
            .map_err(|e| format!("email.outbound.from: {address:?} is not an e-mail address ({e})"))?;
        if name.as_deref().is_some_and(|n| n.chars().any(char::is_control)) {
            return Err("email.outbound.from: the display name holds control characters".into());
        }
        Ok(Sender { name, address })
    }

    /// The domain of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("kontor.invalid")
    }
}

/// The e-mail channel's sender.
pub struct EmailOutbound {
    keys: Option<MailKeys>,
    relay: Relay,
    sender: Sender,
    hostname: String,
    timeout: Duration,
    tls: TlsConnector,
    /// Signs every mail before it is handed to the relay (`None`: not configured).
    dkim: Option<DkimSigning>,
    /// The last probe of the relay and when it was made; held while a probe runs, so that
    /// status requests at the same time wait for one probe instead of making their own.
    probed: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl EmailOutbound {
    /// A sender for the configuration, or `None` when sending is not configured.
    pub fn from_config(config: &EmailConfig, keys: Option<MailKeys>) -> Result<Option<EmailOutbound>, String> {
        let (Some(relay), Some(from)) = (&config.outbound.relay, &config.outbound.from) else { return Ok(None) };
        let relay = Relay::parse(relay)?;
        let sender = Sender::parse(from)?;
        Ok(Some(EmailOutbound {
            keys,
            relay,
            hostname: config.hostname.clone().unwrap_or_else(|| sender.domain().to_string()),
            sender,
            timeout: Duration::from_secs(config.outbound.timeout_secs.max(1)),
            tls: super::tls::connector(None)?,
            dkim: config.outbound.dkim()?,
            probed: tokio::sync::Mutex::new(None),
        }))
    }

    /// The mail as handed to the relay: composed, then signed when DKIM is configured.
    pub fn compose_signed(&self, m: &OutboundMessage, to: &str) -> Result<Vec<u8>, SendError> {
        let mail = self.compose(m, to)?;
        match &self.dkim {
            Some(dkim) => dkim.sign(&mail).map_err(SendError::Permanent),
            None => Ok(mail),
        }
    }

    /// Whether the relay answers now: connect, greeting, `EHLO`, TLS as the relay URL says
    /// (`smtps://` from the start, else STARTTLS when offered), `QUIT`. No mail is sent and no
    /// password either; the error says why (refused, no answer in time, TLS, bad greeting)
    /// and names the relay by host and port only.
    pub async fn check_relay(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.greet_relay()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s: {}", PROBE_TIMEOUT.as_secs(), self.relay.address())),
        }
    }

    async fn greet_relay(&self) -> Result<(), String> {
        let addr = self.relay.address();
        let at = |stage: ProbeStage| {
            let addr = addr.clone();
            move |e: mail_send::Error| probe_error(stage, &addr, e)
        };
        let builder =
            SmtpClientBuilder::new_with_tls_connector(self.relay.host.clone(), self.relay.port, self.tls.clone())
                .implicit_tls(self.relay.implicit_tls)
                .helo_host(self.hostname.clone())
                .say_ehlo(false)
                .timeout(PROBE_TIMEOUT);
        if self.relay.implicit_tls {
            // TCP, TLS and the greeting.
            let mut c = builder.connect().await.map_err(at(ProbeStage::Greeting))?;
            c.ehlo(&self.hostname).await.map_err(at(ProbeStage::Ehlo))?;
            // The relay answered; how it takes QUIT does not change that.
            let _ = c.quit().await;
            return Ok(());
        }
        let mut c = builder.connect_plain().await.map_err(at(ProbeStage::Greeting))?;
        let caps = c.ehlo(&self.hostname).await.map_err(at(ProbeStage::Ehlo))?;
        if caps.has_capability(smtp_proto::EXT_START_TLS) {
            let mut c = c.start_tls(&self.tls, &self.relay.host).await.map_err(at(ProbeStage::StartTls))?;
            c.ehlo(&self.hostname).await.map_err(at(ProbeStage::Ehlo))?;
            let _ = c.quit().await;
            return Ok(());
        }
        let _ = c.quit().await;
        if self.relay.password.is_some() {
            // As `send` would refuse: a password never goes over a connection without TLS.
            return Err(format!("no STARTTLS (a password is never sent without TLS): {addr}"));
        }
        Ok(())
    }

    /// The `Message-ID` of an outbound message (without brackets). The same for every attempt,
    /// so a retry after a crash sends the same id and an answer to it finds the case.
    pub fn message_id(&self, m: &OutboundMessage) -> String {
        super::inbound::reply_message_id(self.keys.as_ref(), m.case_id, m.message_id, self.sender.domain())
    }

    /// `Reply-To`: the sender with the case token, so an answer finds its case even without
    /// `In-Reply-To` (without a key: the sender).
    fn reply_to(&self, m: &OutboundMessage) -> Address<'static> {
        let address = match &self.keys {
            Some(k) => {
                let local = self.sender.address.rsplit_once('@').map(|(l, _)| l).unwrap_or("support");
                k.case_address(local, m.case_id, self.sender.domain())
            }
            None => self.sender.address.clone(),
        };
        match &self.sender.name {
            Some(name) => (name.clone(), address).into(),
            None => address.into(),
        }
    }

    /// The envelope sender: the bounce address of this reply (without a key: the sender).
    fn envelope_from(&self, m: &OutboundMessage) -> String {
        match &self.keys {
            Some(k) => k.bounce_address(m.case_id, m.message_id, self.sender.domain()),
            None => self.sender.address.clone(),
        }
    }

    /// The mail as sent: headers and body.
    pub fn compose(&self, m: &OutboundMessage, to: &str) -> Result<Vec<u8>, SendError> {
        let from: Address<'_> = match &self.sender.name {
            Some(name) => (name.as_str(), self.sender.address.as_str()).into(),
            None => self.sender.address.as_str().into(),
        };
        let to_address: Address<'_> = match &m.to.name {
            Some(name) => (name.as_str(), to).into(),
            None => to.into(),
        };
        let subject = m.subject.clone().unwrap_or_else(|| "Ihre Anfrage / Your request".into());
        // An answer to a mail says so, once (`Re: Re: AW: …` is not added to).
        let answered = !m.thread.is_empty();
        let lower = subject.to_lowercase();
        let subject = if answered && !["re:", "aw:", "antw:", "sv:"].iter().any(|p| lower.starts_with(p)) {
            format!("Re: {subject}")
        } else {
            subject
        };
        let mut b = MessageBuilder::new()
            .from(from)
            .to(to_address)
            .subject(subject)
            .message_id(self.message_id(m))
            .reply_to(self.reply_to(m))
            .date(m.created_at.as_unix_seconds())
            .text_body(m.text.as_str());
        // Ids as received are repeated only if they are well-formed (never a line break).
        let thread: Vec<String> = m.thread.iter().filter_map(|t| super::parse::clean_id(t)).collect();
        if let Some(answered) = thread.last() {
            b = b.in_reply_to(answered.as_str());
            // The first and the last nineteen ids (RFC 5322 allows any number; relays do not).
            let refs: Vec<&str> = if thread.len() > 20 {
                std::iter::once(thread[0].as_str())
                    .chain(thread[thread.len() - 19..].iter().map(String::as_str))
                    .collect()
            } else {
                thread.iter().map(String::as_str).collect()
            };
            b = b.references(MessageId::new_list(refs.into_iter()));
        }
        if !m.cc.is_empty() {
            b = b.cc(m.cc.iter().map(|c| Address::from(c.as_str())).collect::<Vec<_>>());
        }
        if let Some(html) = &m.html {
            b = b.html_body(html.as_str());
        }
        if m.automatic {
            b = b
                .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-replied"))
                .header("X-Auto-Response-Suppress", mail_builder::headers::raw::Raw::new("All"));
        }
        for a in &m.attachments {
            b = b.attachment(a.content_type.as_str(), a.filename.as_str(), a.bytes.to_vec());
        }
        b.write_to_vec().map_err(|e| SendError::Permanent(format!("the mail cannot be composed: {e}")))
    }

    async fn deliver(&self, envelope_from: &str, recipients: &[&str], body: &[u8]) -> Result<(), mail_send::Error> {
        let builder =
            SmtpClientBuilder::new_with_tls_connector(self.relay.host.clone(), self.relay.port, self.tls.clone())
                .implicit_tls(self.relay.implicit_tls)
                .helo_host(self.hostname.clone())
                .say_ehlo(false)
                .timeout(self.timeout);
        let creds = match (&self.relay.user, &self.relay.password) {
            (Some(u), Some(p)) => Some(mail_send::Credentials::new(u.clone(), p.clone())),
            _ => None,
        };
        if self.relay.implicit_tls {
            let mut c = builder.connect().await?;
            let caps = c.ehlo(&self.hostname).await?;
            if let Some(creds) = &creds {
                c.authenticate(creds, &caps).await?;
            }
            transfer(&mut c, envelope_from, recipients, body).await?;
            return c.quit().await;
        }
        let mut c = builder.connect_plain().await?;
        let caps = c.ehlo(&self.hostname).await?;
        if caps.has_capability(smtp_proto::EXT_START_TLS) {
            let mut c = c.start_tls(&self.tls, &self.relay.host).await?;
            let caps = c.ehlo(&self.hostname).await?;
            if let Some(creds) = &creds {
                c.authenticate(creds, &caps).await?;
            }
            transfer(&mut c, envelope_from, recipients, body).await?;
            return c.quit().await;
        }
        if let Some(creds) = &creds {
            // A password never goes over a connection without TLS.
            let _ = creds;
            return Err(mail_send::Error::MissingStartTls);
        }
        transfer(&mut c, envelope_from, recipients, body).await?;
        c.quit().await
    }
}

async fn transfer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    c: &mut mail_send::SmtpClient<S>,
    from: &str,
    recipients: &[&str],
    body: &[u8],
) -> Result<(), mail_send::Error> {
    c.mail_from(from, &Parameters::new()).await?;
    for r in recipients {
        c.rcpt_to(r, &Parameters::new()).await?;
    }
    c.data(body).await.map(|_| ())
}

/// The step of a probe that failed.
#[derive(Clone, Copy)]
enum ProbeStage {
    /// Connecting (and TLS for `smtps://`) up to the greeting.
    Greeting,
    Ehlo,
    StartTls,
}

/// Why a probe failed, for admins: what happened, then the relay (never its user or password).
fn probe_error(stage: ProbeStage, addr: &str, e: mail_send::Error) -> String {
    use mail_send::Error as E;
    let step = match stage {
        ProbeStage::Greeting => "greeting",
        ProbeStage::Ehlo => "EHLO",
        ProbeStage::StartTls => "STARTTLS",
    };
    match e {
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!("connection refused: {addr}"),
        // rustls' handshake errors come wrapped in I/O errors.
        E::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            format!("TLS failed: {addr}: {io}")
        }
        E::Io(io) => format!("connection failed: {addr}: {io}"),
        E::Tls(t) => format!("TLS failed: {addr}: {t}"),
        E::InvalidTLSName => format!("TLS failed: {addr}: the host is not a valid TLS name"),
        E::Timeout => format!("no answer within {} s: {addr}", PROBE_TIMEOUT.as_secs()),
        E::UnexpectedReply(r) => {
            let what = match stage {
                ProbeStage::Greeting => "bad greeting",
                ProbeStage::Ehlo => "EHLO refused",
                ProbeStage::StartTls => "STARTTLS refused",
            };
            format!("{what}: {addr}: {} {}", r.code(), r.message().trim())
        }
        E::UnparseableReply => format!("not SMTP: {addr}"),
        other => format!("{step} failed: {addr}: {other}"),
    }
}

/// A relay's answer as a send error: 4xx and network trouble are worth retrying, 5xx not.
fn send_error(e: mail_send::Error) -> SendError {
    use mail_send::Error as E;
    match e {
        E::UnexpectedReply(r) | E::AuthenticationFailed(r) => {
            let text = format!("{} {}", r.code(), r.message().trim());
            if r.code() >= 500 {
                SendError::Permanent(text)
            } else {
                SendError::Retryable(text)
            }
        }
        E::MissingStartTls => {
            SendError::Permanent("the relay offers no STARTTLS; Kontor does not send a password without TLS".into())
        }
        E::MissingCredentials | E::InvalidTLSName | E::MissingMailFrom | E::MissingRcptTo => {
            SendError::Permanent(e.to_string())
        }
        other => SendError::Retryable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Outbound for EmailOutbound {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, m: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let to =
            m.to.address(IdentityKind::Email)
                .ok_or_else(|| SendError::Permanent("the customer has no e-mail address".into()))?;
        let body = self.compose_signed(m, to)?;
        let mut recipients = vec![to];
        recipients.extend(m.cc.iter().map(String::as_str));
        self.deliver(&self.envelope_from(m), &recipients, &body).await.map_err(send_error)?;
        Ok(SendReceipt { provider_message_id: Some(self.message_id(m)) })
    }

    /// The relay's reachability, probed at most every 15 s (a fresher answer is given again).
    async fn probe(&self) -> Option<Result<(), String>> {
        let mut last = self.probed.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < PROBE_FRESH {
                return Some(result.clone());
            }
        }
        let result = self.check_relay().await;
        if let Err(error) = &result {
            tracing::debug!(%error, "The outbound relay is not reachable.");
        }
        *last = Some((Instant::now(), result.clone()));
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontor_channel::{Recipient, RecipientAddress};
    use std::sync::Arc;

    #[test]
    fn relay_urls_are_read_with_their_defaults_and_secrets() {
        let r = Relay::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((r.implicit_tls, r.host.as_str(), r.port, r.user.clone()), (false, "127.0.0.1", 2525, None));
        let r = Relay::parse("smtps://kontor%40example.de:p%40ss@mail.example").unwrap();
        assert_eq!((r.implicit_tls, r.port), (true, 465));
        assert_eq!((r.user.as_deref(), r.password.as_deref()), (Some("kontor@example.de"), Some("p@ss")));
        assert!(!format!("{r:?}").contains("p@ss"));
        assert!(Relay::parse("http://mail.example").is_err());
        assert!(Relay::parse("smtp://").is_err());
    }

    /// A sender for `relay` (no keys, no DKIM).
    fn sender_for(relay: &str) -> EmailOutbound {
        let cfg = EmailConfig {
            outbound: super::super::config::EmailOutboundConfig {
                relay: Some(relay.into()),
                from: Some("support@support.example.de".into()),
                ..Default::default()
            },
            ..EmailConfig::default()
        };
        EmailOutbound::from_config(&cfg, None).unwrap().unwrap()
    }

    /// A relay on a local port that greets with `greeting`, answers EHLO with `ehlo` and QUIT
    /// with 221, once per connection; the commands it got.
    async fn scripted_relay(greeting: &'static str, ehlo: &'static str) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heard: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let log = heard.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(greeting.as_bytes()).await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        log.lock().unwrap().push(line.clone());
                        let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                        let answer = match verb.as_str() {
                            "EHLO" => ehlo,
                            "QUIT" => "221 bye\r\n",
                            _ => "502 not here\r\n",
                        };
                        let _ = write.write_all(answer.as_bytes()).await;
                        if verb == "QUIT" {
                            break;
                        }
                    }
                });
            }
        });
        (port, heard)
    }

    #[tokio::test]
    async fn a_probe_greets_the_relay_without_sending_and_says_why_it_cannot() {
        // A relay that answers: reachable, and it heard EHLO and QUIT only.
        let (port, heard) =
            scripted_relay("220 relay.example ESMTP\r\n", "250-relay.example\r\n250 8BITMIME\r\n").await;
        let out = sender_for(&format!("smtp://127.0.0.1:{port}"));
        assert_eq!(out.probe().await, Some(Ok(())));
        let commands: Vec<String> =
            heard.lock().unwrap().iter().map(|c| c.split(' ').next().unwrap().to_string()).collect();
        assert_eq!(commands, ["EHLO", "QUIT"], "no mail, no password");
        // Asked again within 15 s: the same answer, the relay is not asked again.
        assert_eq!(out.probe().await, Some(Ok(())));
        assert_eq!(heard.lock().unwrap().len(), 2);

        // Nobody listens.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = sender_for(&format!("smtp://127.0.0.1:{closed}")).check_relay().await.unwrap_err();
        assert_eq!(err, format!("connection refused: 127.0.0.1:{closed}"));

        // A relay that turns Kontor away, and one that refuses EHLO.
        let (port, _) = scripted_relay("554 no service for you\r\n", "250 ok\r\n").await;
        let err = sender_for(&format!("smtp://127.0.0.1:{port}")).check_relay().await.unwrap_err();
        assert_eq!(err, format!("bad greeting: 127.0.0.1:{port}: 554 no service for you"));
        let (port, _) = scripted_relay("220 relay.example\r\n", "550 go away\r\n").await;
        let err = sender_for(&format!("smtp://127.0.0.1:{port}")).check_relay().await.unwrap_err();
        assert_eq!(err, format!("EHLO refused: 127.0.0.1:{port}: 550 go away"));

        // With a password and no STARTTLS on offer: not usable, and the password is not named.
        let (port, heard) = scripted_relay("220 relay.example\r\n", "250 relay.example\r\n").await;
        let err = sender_for(&format!("smtp://kontor:Geheim-42@127.0.0.1:{port}")).check_relay().await.unwrap_err();
        assert!(err.starts_with("no STARTTLS") && !err.contains("Geheim") && !err.contains("kontor"), "{err}");
        assert!(!heard.lock().unwrap().iter().any(|c| c.starts_with("AUTH")), "no AUTH was tried");

        // smtps:// to a relay that speaks plain SMTP: the TLS handshake fails.
        let (port, _) = scripted_relay("220 relay.example\r\n", "250 ok\r\n").await;
        let err = sender_for(&format!("smtps://127.0.0.1:{port}")).check_relay().await.unwrap_err();
        assert!(err.starts_with(&format!("TLS failed: 127.0.0.1:{port}")), "{err}");
    }

    #[tokio::test]
    async fn a_relay_that_never_greets_is_reported_after_the_probe_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and says nothing.
        let _keep = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let started = Instant::now();
        let err = sender_for(&format!("smtp://127.0.0.1:{port}")).check_relay().await.unwrap_err();
        assert_eq!(err, format!("no answer within 4 s: 127.0.0.1:{port}"));
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn the_sender_may_have_a_display_name() {
        assert_eq!(
            Sender::parse("Kontor Support <Support@Support.Example.de>").unwrap(),
            Sender { name: Some("Kontor Support".into()), address: "support@support.example.de".into() }
        );
        assert_eq!(Sender::parse("a@b.example").unwrap().name, None);
        assert!(Sender::parse("kein Absender").is_err());
    }

    #[test]
    fn a_reply_is_threaded_to_the_mail_it_answers() {
        let cfg = EmailConfig {
            outbound: super::super::config::EmailOutboundConfig {
                relay: Some("smtp://127.0.0.1:25".into()),
                from: Some("Kontor Support <support@support.example.de>".into()),
                ..Default::default()
            },
            ..EmailConfig::default()
        };
        let out = EmailOutbound::from_config(&cfg, Some(MailKeys::new([1; 32]))).unwrap().unwrap();
        let m = OutboundMessage {
            message_id: 7,
            case_id: 3,
            customer_id: 1,
            channel: Channel::Email,
            to: Recipient {
                name: Some("Jana Müller".into()),
                identities: vec![RecipientAddress { kind: IdentityKind::Email, address: "jana@kunde.example".into() }],
            },
            cc: vec![],
            subject: Some("Lieferung fehlt".into()),
            text: "Guten Tag, wir kümmern uns.".into(),
            html: None,
            attachments: vec![],
            thread: vec!["first@kunde.example".into(), "second@kunde.example".into()],
            automatic: false,
            created_at: kontor_core::Timestamp::from_micros(1_700_000_000_000_000),
        };
        let raw = out.compose(&m, "jana@kunde.example").unwrap();
        let parsed = super::super::parse::parse(&raw);
        let id = parsed.message_id.unwrap_or_default();
        assert!(id.starts_with("kontor.3.7.") && id.ends_with("@support.example.de"), "{id}");
        assert_eq!(parsed.refers_to, vec!["second@kunde.example", "first@kunde.example"]);
        assert_eq!(parsed.subject.as_deref(), Some("Re: Lieferung fehlt"));
        assert_eq!(parsed.text, "Guten Tag, wir kümmern uns.");
        assert_eq!(parsed.from_address.as_deref(), Some("support@support.example.de"));
    }
}
