//! Sending replies as e-mail through a relay (`email.outbound.relay`): a normal, correctly
//! threaded mail (`Message-ID`, `In-Reply-To`, `References`), composed with `mail-builder`
//! and sent with `mail-send` (STARTTLS when the relay offers it, implicit TLS for `smtps://`).

use std::sync::Arc;
use std::time::Duration;

use kontor_channel::{Outbound, OutboundMessage, SendError, SendReceipt};
use kontor_core::{Channel, IdentityKind};
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::MessageBuilder;
use mail_send::smtp::message::Parameters;
use mail_send::SmtpClientBuilder;
use tokio_rustls::TlsConnector;

use super::config::EmailConfig;
use super::keys::MailKeys;

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
            tls: client_tls()?,
        }))
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

/// A TLS client with the Mozilla roots built in (nothing is read at run time).
fn client_tls() -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
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
        let body = self.compose(m, to)?;
        let mut recipients = vec![to];
        recipients.extend(m.cc.iter().map(String::as_str));
        self.deliver(&self.envelope_from(m), &recipients, &body).await.map_err(send_error)?;
        Ok(SendReceipt { provider_message_id: Some(self.message_id(m)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontor_channel::{Recipient, RecipientAddress};

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
