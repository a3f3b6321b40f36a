//! The inbound SMTP listener (`email.smtp_listen`), run by the channel supervisor. Commands
//! are parsed by `smtp-proto` (no hand-written parser); each session is a small state
//! machine over any byte stream, so the same code serves plain TCP and STARTTLS.
//!
//! The rule that matters: `250` after `DATA` only once the message is committed (the sink
//! answers after the commit); a database that is away answers `451` (try again), a mail
//! that will never be taken `554`. Recipients outside `email.domains` get `550`; a message
//! over `email.max_message_bytes` (announced as `SIZE`) gets `552`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kontor_channel::{Listener, ListenerContext, SinkError};
use kontor_core::Channel;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{
    EhloResponse, Request, Response, EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8,
    EXT_START_TLS,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::config::EmailConfig;
use super::inbound::{deliver, Delivered, Envelope};
use super::keys::{MailKeys, Token};

/// Protocol errors a session may make before it is closed.
const MAX_ERRORS: usize = 10;
/// The longest a connection may last.
const MAX_SESSION: Duration = Duration::from_secs(3600);
/// Bytes of mail being received or processed at once on this node, all sessions together
/// (in 64 KiB units): a session whose mail would go beyond waits. Bounds memory however many
/// clients send large mail at once.
const DATA_BUDGET_UNITS: u32 = 4096; // 256 MiB
const DATA_UNIT: usize = 64 * 1024;

/// What a session needs to know, shared by all sessions.
pub struct SmtpSettings {
    pub listen: String,
    pub domains: Vec<String>,
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub max_recipients: usize,
    pub default_region: String,
    /// The domain of Kontor's own Message-IDs.
    pub reply_domain: String,
    /// Bounce addresses and case tokens are read only with the key.
    pub keys: Option<MailKeys>,
    /// The node's budget of mail bytes in flight (see [`DATA_BUDGET_UNITS`]).
    pub data_budget: Arc<Semaphore>,
}

/// The SMTP listener.
pub struct SmtpListener {
    settings: Arc<SmtpSettings>,
    tls: Option<TlsAcceptor>,
    /// The address it listens on once bound (the port, when `:0` was configured).
    bound: Mutex<Option<SocketAddr>>,
}

impl SmtpListener {
    /// A listener for the configuration (`None` when `email.smtp_listen` is not set).
    pub fn from_config(
        config: &EmailConfig,
        default_region: &str,
        keys: Option<MailKeys>,
    ) -> Result<Option<SmtpListener>, String> {
        let Some(listen) = &config.smtp_listen else { return Ok(None) };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            _ => None,
        };
        Ok(Some(SmtpListener {
            settings: Arc::new(SmtpSettings {
                listen: listen.clone(),
                domains: config.normalised_domains(),
                hostname: config.host_name(),
                max_message_bytes: config.max_message_bytes,
                max_sessions: config.max_sessions,
                max_sessions_per_ip: config.max_sessions_per_ip,
                idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
                data_timeout: Duration::from_secs(config.data_timeout_secs.max(1)),
                max_recipients: config.max_recipients,
                default_region: default_region.to_string(),
                reply_domain: config.reply_domain(),
                keys,
                data_budget: Arc::new(Semaphore::new(DATA_BUDGET_UNITS as usize)),
            }),
            tls,
            bound: Mutex::new(None),
        }))
    }

    /// The address the listener is bound to, once it is running.
    pub fn bound_address(&self) -> Option<SocketAddr> {
        self.bound.lock().ok().and_then(|b| *b)
    }
}

/// Sessions per client address.
#[derive(Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct IpSlot {
    map: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn take(&self, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot { map: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.0.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Listener for SmtpListener {
    fn name(&self) -> String {
        "email.smtp".into()
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn run(&self, ctx: ListenerContext) -> Result<(), String> {
        let listener = TcpListener::bind(&self.settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", self.settings.listen))?;
        let local = listener.local_addr().map_err(|e| format!("cannot listen on {}: {e}", self.settings.listen))?;
        if let Ok(mut b) = self.bound.lock() {
            *b = Some(local);
        }
        tracing::info!(listen = %local, "SMTP listener ready.");
        ctx.mark_running();
        let sessions = Arc::new(Semaphore::new(self.settings.max_sessions.max(1)));
        let per_ip = PerIp::default();
        let tracker = TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        ctx.record_error(format!("accept: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Replies are small and each waits for the client's next command: sent at once,
            // not held back by Nagle's algorithm until the client's delayed ACK (40 ms).
            let _ = tcp.set_nodelay(true);
            let (settings, tls, ctx) = (self.settings.clone(), self.tls.clone(), ctx.clone());
            let permit = sessions.clone().try_acquire_owned().ok();
            let slot = per_ip.take(peer.ip(), settings.max_sessions_per_ip);
            tracker.spawn(async move {
                let mut tcp = tcp;
                let (Some(_permit), Some(_slot)) = (permit, slot) else {
                    let _ = tcp.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
                    return;
                };
                // However it is used, a connection ends after an hour: a client cannot keep a
                // slot forever (slow writes, endless NOOPs).
                let _ =
                    tokio::time::timeout(MAX_SESSION, serve_connection(tcp, peer, &settings, tls.as_ref(), &ctx)).await;
            });
        }
        // Sessions between commands answer 421 and close; one in the middle of a message
        // finishes it (the supervisor gives it a grace period).
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

/// One connection: a plain session, and a TLS one after `STARTTLS`.
async fn serve_connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    settings: &SmtpSettings,
    tls: Option<&TlsAcceptor>,
    ctx: &ListenerContext,
) {
    let banner = format!("220 {} ESMTP Kontor\r\n", settings.hostname);
    if tcp.write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    match run_session(&mut tcp, peer, settings, tls.is_some(), false, ctx).await {
        Outcome::StartTls => {
            let Some(acceptor) = tls else { return };
            match tokio::time::timeout(settings.idle_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(mut stream)) => {
                    let _ = run_session(&mut stream, peer, settings, false, true, ctx).await;
                    let _ = stream.shutdown().await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out."),
            }
        }
        Outcome::Closed => {
            let _ = tcp.shutdown().await;
        }
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client asked for TLS and got `220`: upgrade the connection, then start over.
    StartTls,
    /// Done (QUIT, timeout, too many errors, shutdown, connection lost).
    Closed,
}

/// The envelope of the message being received.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
    tokens: Vec<Token>,
}

/// Runs one SMTP session over `stream` (the banner was sent).
pub async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    settings: &SmtpSettings,
    tls_available: bool,
    on_tls: bool,
    ctx: &ListenerContext,
) -> Outcome {
    let mut rx = RequestReceiver::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut helo: Option<String> = None;
    let mut tx = Transaction::default();
    let mut errors = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Commands already received are answered before the next read (pipelining).
        if pending.is_empty() {
            if !out.is_empty() && (stream.write_all(&out).await.is_err() || stream.flush().await.is_err()) {
                return Outcome::Closed;
            }
            out.clear();
            let read = tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    let _ = stream.write_all(b"421 4.3.2 Service shutting down, try again later\r\n").await;
                    return Outcome::Closed;
                }
                r = tokio::time::timeout(settings.idle_timeout, stream.read(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Outcome::Closed,
                Ok(Ok(n)) => pending.extend_from_slice(&buf[..n]),
                Err(_) => {
                    let _ = stream.write_all(b"421 4.4.2 Idle timeout, closing connection\r\n").await;
                    return Outcome::Closed;
                }
            }
        }
        let mut it = pending.iter();
        let parsed = rx.ingest(&mut it).map(|r| r.into_owned());
        let consumed = pending.len() - it.as_slice().len();
        pending.drain(..consumed);
        let request = match parsed {
            Ok(r) => r,
            Err(smtp_proto::Error::NeedsMoreData { .. }) => continue,
            Err(e) => {
                errors += 1;
                let (code, e1, e2, text) = match e {
                    smtp_proto::Error::UnknownCommand => (500, 5, 2, "Unknown command".to_string()),
                    smtp_proto::Error::ResponseTooLong => (500, 5, 4, "Line too long".to_string()),
                    smtp_proto::Error::InvalidSenderAddress => (501, 1, 7, "Invalid sender address".to_string()),
                    smtp_proto::Error::InvalidRecipientAddress => (501, 1, 3, "Invalid recipient address".to_string()),
                    smtp_proto::Error::UnsupportedParameter { param } => {
                        (504, 5, 4, format!("Parameter {param} is not supported"))
                    }
                    other => (501, 5, 4, format!("Syntax error: {other:?}")),
                };
                reply(&mut out, code, (5, e1, e2), &text);
                if errors >= MAX_ERRORS {
                    reply(&mut out, 421, (4, 7, 0), "Too many errors, closing connection");
                    let _ = stream.write_all(&out).await;
                    return Outcome::Closed;
                }
                continue;
            }
        };
        match request {
            Request::Ehlo { host } => {
                helo = Some(host);
                tx = Transaction::default();
                let mut ehlo = EhloResponse::new(settings.hostname.as_str());
                ehlo.capabilities =
                    EXT_PIPELINING | EXT_SIZE | EXT_8BIT_MIME | EXT_SMTP_UTF8 | EXT_ENHANCED_STATUS_CODES;
                if tls_available && !on_tls {
                    ehlo.capabilities |= EXT_START_TLS;
                }
                ehlo.size = settings.max_message_bytes;
                let _ = ehlo.write(&mut out);
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                helo = Some(host);
                tx = Transaction::default();
                out.extend_from_slice(format!("250 {}\r\n", settings.hostname).as_bytes());
            }
            Request::StartTls if tls_available && !on_tls => {
                reply(&mut out, 220, (2, 0, 0), "Ready to start TLS");
                if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                    return Outcome::Closed;
                }
                // Anything the client sent after STARTTLS in the clear is dropped (a command
                // injected before the handshake must not run inside TLS).
                return Outcome::StartTls;
            }
            Request::StartTls => reply(&mut out, 502, (5, 5, 1), "STARTTLS is not available"),
            Request::Mail { from } => {
                if helo.is_none() {
                    reply(&mut out, 503, (5, 5, 1), "Say EHLO first");
                } else if tx.from.is_some() {
                    reply(&mut out, 503, (5, 5, 1), "Sender already given");
                } else if from.size > settings.max_message_bytes {
                    reply(&mut out, 552, (5, 3, 4), "Message too large");
                } else {
                    tx.from = Some(from.address);
                    reply(&mut out, 250, (2, 1, 0), "Sender OK");
                }
            }
            Request::Rcpt { to } => {
                if tx.from.is_none() {
                    reply(&mut out, 503, (5, 5, 1), "Sender first (MAIL FROM)");
                } else if tx.to.len() >= settings.max_recipients {
                    reply(&mut out, 452, (4, 5, 3), "Too many recipients");
                } else {
                    let domain = to.address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase());
                    let local = to.address.rsplit_once('@').map(|(l, _)| l).unwrap_or("");
                    let token = match &settings.keys {
                        Some(k) => k.read(local),
                        None => Ok(None),
                    };
                    match domain {
                        // A bounce address or case token with a wrong MAC: forged, refused
                        // (and never bounced back to its claimed sender).
                        Some(d) if settings.domains.contains(&d) && token.is_err() => {
                            // Guessing a MAC costs the session: it counts as an error.
                            errors += 1;
                            reply(&mut out, 550, (5, 1, 1), "No such address here");
                            if errors >= MAX_ERRORS {
                                reply(&mut out, 421, (4, 7, 0), "Too many errors, closing connection");
                                let _ = stream.write_all(&out).await;
                                return Outcome::Closed;
                            }
                        }
                        Some(d) if settings.domains.contains(&d) => {
                            if let Ok(Some(t)) = token {
                                tx.tokens.push(t);
                            }
                            if !tx.to.iter().any(|t| t.eq_ignore_ascii_case(&to.address)) {
                                tx.to.push(to.address);
                            }
                            reply(&mut out, 250, (2, 1, 5), "Recipient OK");
                        }
                        Some(d) => reply(
                            &mut out,
                            550,
                            (5, 1, 2),
                            &format!("Mail for {d} is not accepted here (relaying denied)"),
                        ),
                        None => reply(&mut out, 550, (5, 1, 3), "A recipient needs a domain"),
                    }
                }
            }
            Request::Data => {
                if tx.from.is_none() || tx.to.is_empty() {
                    reply(&mut out, 554, (5, 5, 1), "No valid recipients");
                    continue;
                }
                reply(&mut out, 354, (2, 0, 0), "Start mail input; end with <CRLF>.<CRLF>");
                if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                    return Outcome::Closed;
                }
                out.clear();
                let (mail, too_large, _budget) = match receive_data(stream, &mut pending, &mut buf, settings).await {
                    Some(r) => r,
                    None => return Outcome::Closed,
                };
                let envelope = Envelope {
                    mail_from: tx.from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut tx.to),
                    helo: helo.clone().unwrap_or_default(),
                    peer: peer.ip(),
                    tokens: std::mem::take(&mut tx.tokens),
                    reply_domain: settings.reply_domain.clone(),
                    keys: settings.keys.clone(),
                };
                if too_large {
                    reply(&mut out, 552, (5, 3, 4), "Message too large");
                    continue;
                }
                match store(mail, envelope, settings, ctx).await {
                    // One answer whatever became of it (stored, a repeat, a bounce, a copy of
                    // Kontor's own mail): a client learns nothing, and no internal ids.
                    Ok(what) => {
                        tracing::debug!(%peer, outcome = %what, "Mail taken.");
                        reply(&mut out, 250, (2, 0, 0), "Message accepted")
                    }
                    // The reason is logged, not told to an anonymous client.
                    Err(SinkError::Temporary(m)) => {
                        tracing::warn!(%peer, reason = %m, "Mail not stored for now (451).");
                        ctx.record_error(format!("451: {m}"));
                        reply(&mut out, 451, (4, 3, 0), "Temporary local problem, try again later")
                    }
                    Err(SinkError::Rejected(m)) => {
                        tracing::info!(%peer, reason = %m, "Mail refused (554).");
                        reply(&mut out, 554, (5, 6, 0), "Message refused")
                    }
                }
            }
            Request::Bdat { chunk_size, .. } => {
                // CHUNKING is not offered; skip the chunk so it is not read as commands.
                let mut skip = DummyDataReceiver::new_bdat(chunk_size);
                loop {
                    let mut it = pending.iter();
                    let done = skip.ingest(&mut it);
                    let consumed = pending.len() - it.as_slice().len();
                    pending.drain(..consumed);
                    if done {
                        break;
                    }
                    match tokio::time::timeout(settings.data_timeout, stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        _ => return Outcome::Closed,
                    }
                }
                reply(&mut out, 503, (5, 5, 1), "BDAT is not supported; use DATA");
            }
            Request::Rset => {
                tx = Transaction::default();
                reply(&mut out, 250, (2, 0, 0), "OK");
            }
            Request::Noop { .. } => reply(&mut out, 250, (2, 0, 0), "OK"),
            Request::Quit => {
                reply(&mut out, 221, (2, 0, 0), "Bye");
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return Outcome::Closed;
            }
            Request::Vrfy { .. } => reply(&mut out, 252, (2, 5, 2), "Cannot verify the user, but will accept mail"),
            Request::Auth { .. } => reply(&mut out, 503, (5, 5, 1), "Authentication is not needed here"),
            _ => reply(&mut out, 502, (5, 5, 1), "Command not implemented"),
        }
    }
}

/// Reads the message after `354`: returns the bytes (dot-unstuffed), whether it was over
/// the limit (then the rest was read and dropped), and its share of the node's data budget
/// (held until the mail is stored); `None` when the connection ended or the budget stayed
/// exhausted past the data timeout.
async fn receive_data<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
    buf: &mut [u8],
    settings: &SmtpSettings,
) -> Option<(Vec<u8>, bool, Option<tokio::sync::OwnedSemaphorePermit>)> {
    let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut held = 0usize;
    let deadline = tokio::time::Instant::now() + settings.data_timeout;
    let mut data = DataReceiver::new();
    let mut mail = Vec::new();
    // smtp-proto 0.2.5 only recognises the end mark and dot-stuffing after a line break it
    // has seen; the message starts on a fresh line, so give it one.
    data.ingest(&mut b"\r\n".iter(), &mut mail);
    mail.clear();
    let mut discard: Option<DummyDataReceiver> = None;
    loop {
        let mut it = pending.iter();
        let done = match discard.as_mut() {
            Some(d) => d.ingest(&mut it),
            None => data.ingest(&mut it, &mut mail),
        };
        let consumed = pending.len() - it.as_slice().len();
        pending.drain(..consumed);
        let over = discard.is_some() || mail.len() > settings.max_message_bytes;
        if done {
            return Some((if over { Vec::new() } else { mail }, over, budget));
        }
        // Hold budget for what is buffered before reading more (waits while other sessions
        // hold it all).
        let needed = (mail.len() / DATA_UNIT + 1).min(DATA_BUDGET_UNITS as usize);
        if needed > held {
            let more = (needed - held) as u32;
            let permit = tokio::time::timeout_at(deadline, settings.data_budget.clone().acquire_many_owned(more))
                .await
                .ok()?
                .ok()?;
            match budget.as_mut() {
                Some(b) => b.merge(permit),
                None => budget = Some(permit),
            }
            held = needed;
        }
        if discard.is_none() && over {
            discard = Some(DummyDataReceiver::new_data(&data));
            mail = Vec::new();
        }
        match tokio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Parses and stores one received mail; resolves after the commit.
async fn store(
    raw: Vec<u8>,
    envelope: Envelope,
    settings: &SmtpSettings,
    ctx: &ListenerContext,
) -> Result<String, SinkError> {
    let delivered =
        deliver(bytes::Bytes::from(raw), envelope, settings.default_region.clone(), ctx.sink.as_ref()).await?;
    ctx.record_activity();
    Ok(match delivered {
        Delivered::Message(receipt) => format!("message {}", receipt.message_id),
        // Taken (250) whether or not it matched, so nobody learns anything from the answer.
        Delivered::Bounce { applied: true } => "bounce recorded".into(),
        Delivered::Bounce { applied: false } => "bounce noted".into(),
        Delivered::Own => "own mail noted".into(),
    })
}

fn reply(out: &mut Vec<u8>, code: u16, status: (u8, u8, u8), text: &str) {
    let _ = Response::new(code, status.0, status.1, status.2, text).write(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontor_channel::{InboundMessage, InboundReceipt, InboundSink};
    use tokio_util::sync::CancellationToken;

    /// A sink that answers as told and keeps what it took.
    struct FakeSink {
        answer: Result<(), SinkError>,
        taken: Mutex<Vec<InboundMessage>>,
    }

    #[async_trait::async_trait]
    impl InboundSink for FakeSink {
        async fn accept(&self, m: InboundMessage) -> Result<InboundReceipt, SinkError> {
            self.answer.clone()?;
            self.taken.lock().unwrap().push(m);
            Ok(InboundReceipt { message_id: 1, case_id: 1, customer_id: 1, event_id: 1, created: true })
        }
        async fn report(&self, _: kontor_channel::DeliveryReport) -> Result<bool, SinkError> {
            self.answer.clone().map(|_| true)
        }
        async fn cursor(&self, _: &str) -> Result<Option<String>, SinkError> {
            Ok(None)
        }
        async fn save_cursor(&self, _: &str, _: &str) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn settings() -> SmtpSettings {
        SmtpSettings {
            listen: "127.0.0.1:0".into(),
            domains: vec!["support.example.de".into()],
            hostname: "support.example.de".into(),
            max_message_bytes: 4096,
            max_sessions: 4,
            max_sessions_per_ip: 2,
            idle_timeout: Duration::from_secs(5),
            data_timeout: Duration::from_secs(5),
            max_recipients: 3,
            default_region: "DE".into(),
            reply_domain: "support.example.de".into(),
            keys: None,
            data_budget: Arc::new(Semaphore::new(DATA_BUDGET_UNITS as usize)),
        }
    }

    /// Runs a session on `input` (sent at once, pipelined) and returns the replies.
    async fn converse(input: &str, answer: Result<(), SinkError>) -> (String, Vec<InboundMessage>) {
        let sink = Arc::new(FakeSink { answer, taken: Mutex::default() });
        let ctx = ListenerContext::detached(sink.clone(), CancellationToken::new());
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(input.as_bytes()).await.unwrap();
        let s = settings();
        let outcome = run_session(&mut server, "127.0.0.1:1".parse().unwrap(), &s, false, false, &ctx).await;
        assert_eq!(outcome, Outcome::Closed);
        drop(server);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        let taken = sink.taken.lock().unwrap().clone();
        (out, taken)
    }

    const MAIL: &str =
        "EHLO c.example\r\nMAIL FROM:<jana@kunde.example>\r\nRCPT TO:<support@support.example.de>\r\nDATA\r\n\
From: jana@kunde.example\r\nSubject: Test\r\n\r\n..Punkt am Anfang\r\n.\r\nQUIT\r\n";

    fn codes(out: &str) -> Vec<&str> {
        out.lines().filter(|l| l.len() >= 4 && &l[3..4] == " ").map(|l| &l[..3]).collect()
    }

    #[tokio::test]
    async fn a_pipelined_mail_is_answered_250_only_after_the_sink_took_it() {
        let (out, taken) = converse(MAIL, Ok(())).await;
        assert_eq!(codes(&out), vec!["250", "250", "250", "354", "250", "221"], "{out}");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].text, ".Punkt am Anfang", "dot-stuffing is undone");
        assert!(out.contains("SIZE 4096") && out.contains("PIPELINING") && !out.contains("STARTTLS"), "{out}");
    }

    #[tokio::test]
    async fn a_store_that_is_away_gets_451_and_a_refused_mail_554_never_250() {
        let (out, _) = converse(MAIL, Err(SinkError::Temporary("database away".into()))).await;
        assert_eq!(codes(&out), vec!["250", "250", "250", "354", "451", "221"], "{out}");
        let (out, _) = converse(MAIL, Err(SinkError::Rejected("no".into()))).await;
        assert_eq!(codes(&out), vec!["250", "250", "250", "354", "554", "221"], "{out}");
    }

    #[tokio::test]
    async fn commands_out_of_order_and_a_message_over_the_limit_are_refused() {
        let big = "x".repeat(5000);
        let input = format!(
            "MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<support@support.example.de>\r\nDATA\r\n\
MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<support@support.example.de>\r\nDATA\r\n{big}\r\n.\r\nQUIT\r\n"
        );
        let (out, taken) = converse(&input, Ok(())).await;
        assert_eq!(codes(&out), vec!["503", "250", "503", "554", "250", "550", "250", "354", "552", "221"], "{out}");
        assert!(taken.is_empty());
    }

    #[test]
    fn the_first_line_of_a_message_may_start_with_a_dot() {
        // smtp-proto 0.2.5 misses the end mark and dot-stuffing on the first line unless it
        // was given a line break first (see `receive_data`).
        let mut data = DataReceiver::new();
        let mut mail = Vec::new();
        data.ingest(&mut b"\r\n".iter(), &mut mail);
        mail.clear();
        assert!(data.ingest(&mut b"..x\r\n.\r\n".iter(), &mut mail));
        assert_eq!(mail, b".x\r\n");
    }
}
