//! Inbound IMAP (`[[email.imap]]`): for companies whose mail stays on their own server. One
//! poller per mailbox, run by the channel supervisor as `email.imap.<name>`: it logs in
//! (`imaps://`, or `imap://` with STARTTLS — a password never crosses the network in the
//! clear), reads the folder's new mail in UID order and waits with `IDLE` where the server
//! has it (else it looks again every `poll_secs`).
//!
//! Nothing is imported twice and nothing is lost: a mail is marked read (or moved to
//! `move_to`) only after its commit, and the cursor — the folder's UIDVALIDITY and the last
//! UID taken — is saved after that. A crash between the commit and the cursor makes the next
//! run fetch that mail again, and the Message-ID (e-mail deduplicates by it across SMTP and
//! every mailbox) makes it the same message. When the server renumbers the folder (a new
//! UIDVALIDITY), the poller reads it from the start, and again the Message-ID keeps what was
//! imported from coming in twice.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use async_imap::{Client, Session};
use futures::TryStreamExt;
use kontor_channel::{Listener, ListenerContext, SinkError};
use kontor_core::Channel;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{EmailConfig, ImapAccount};
use super::inbound::{deliver, Envelope};
use super::keys::MailKeys;
use super::parse::header_recipients;

/// The longest one IMAP step (connecting, logging in, one command) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Times in a row one mail may fail to be read before it is skipped (left in the folder).
const MAX_ATTEMPTS: u32 = 5;
/// Mails whose sizes are asked for in one command (a large folder is read in batches).
const BATCH: usize = 100;
/// The longest one IDLE lasts (RFC 2177: servers may drop an idle client after 30 minutes).
const MAX_IDLE: Duration = Duration::from_secs(25 * 60);
/// The longest error text kept (a parse error of the IMAP library may quote a whole mail).
const MAX_ERROR_CHARS: usize = 300;

/// `e` as text, cut to [`MAX_ERROR_CHARS`].
fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    /// `imaps://`: TLS from the first byte (port 993).
    Implicit,
    /// `imap://`: plain, then `STARTTLS` before the login; a server without it is refused.
    StartTls,
}

/// A parsed `[[email.imap]] url`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapUrl {
    pub tls: ImapTls,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub folder: String,
}

impl std::fmt::Debug for ImapUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

impl ImapUrl {
    /// Reads `imaps://user:password@host:993/INBOX` or `imap://…`; user, password and folder
    /// percent-decoded, the folder INBOX when the path is empty.
    pub fn parse(s: &str) -> Result<ImapUrl, String> {
        let url = url::Url::parse(s).map_err(|e| format!("the url is not a URL: {e}"))?;
        let (tls, default_port) = match url.scheme() {
            "imaps" => (ImapTls::Implicit, 993),
            "imap" => (ImapTls::StartTls, 143),
            other => return Err(format!("the url must start with imaps:// or imap://, not {other}://")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the url names no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let decode = |v: &str| percent_encoding::percent_decode_str(v).decode_utf8().map(|c| c.into_owned());
        let user = decode(url.username()).map_err(|_| "the user name is not UTF-8")?;
        let password = decode(url.password().unwrap_or("")).map_err(|_| "the password is not UTF-8")?;
        if user.is_empty() || password.is_empty() {
            return Err("the url needs a user and a password (imaps://user:password@host/INBOX)".into());
        }
        let folder = decode(url.path().trim_matches('/')).map_err(|_| "the folder is not UTF-8")?;
        let folder = if folder.is_empty() { "INBOX".to_string() } else { folder };
        if folder.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            return Err("the folder name holds a character IMAP cannot take here".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("the url may not have a query or fragment".into());
        }
        Ok(ImapUrl { tls, host, port: url.port().unwrap_or(default_port), user, password, folder })
    }
}

/// How far a folder has been read: its UIDVALIDITY and the last UID taken, saved as
/// `"<uidvalidity>:<uid>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub validity: u32,
    pub last_uid: u32,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (v, u) = s.split_once(':')?;
        Some(Cursor { validity: v.parse().ok()?, last_uid: u.parse().ok()? })
    }

    pub fn encode(&self) -> String {
        format!("{}:{}", self.validity, self.last_uid)
    }

    /// The last UID already taken from a folder whose UIDVALIDITY is now `validity`: none
    /// when the server renumbered it (or it was never read).
    pub fn resume(saved: Option<Cursor>, validity: u32) -> u32 {
        match saved {
            Some(c) if c.validity == validity => c.last_uid,
            _ => 0,
        }
    }
}

/// The byte stream under an IMAP session (TLS over TCP, boxed so that both ways of getting
/// there give the same type).
trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapIo for T {}
type Io = Box<dyn ImapIo>;

/// One `[[email.imap]]` mailbox.
pub struct ImapPoller {
    account: ImapAccount,
    url: ImapUrl,
    tls: TlsConnector,
    /// Kontor's domains (where case tokens and bounce addresses are looked for).
    domains: Vec<String>,
    reply_domain: String,
    region: String,
    keys: Option<MailKeys>,
    max_message_bytes: usize,
    /// The mail that failed to be read last, and how often in a row.
    stuck: std::sync::Mutex<(u32, u32)>,
}

fn step<T, E: std::fmt::Display>(
    what: &'static str,
    r: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {}", short(e))),
        Err(_) => Err(format!("{what}: no answer within {} s", STEP_TIMEOUT.as_secs())),
    }
}

/// Runs one IMAP step with the step timeout.
async fn within<T, E: std::fmt::Display>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    step(what, tokio::time::timeout(STEP_TIMEOUT, f).await)
}

/// The pollers for the configured mailboxes.
pub fn pollers(config: &EmailConfig, default_region: &str, keys: Option<&MailKeys>) -> Result<Vec<ImapPoller>, String> {
    let mut domains = config.normalised_domains();
    let reply_domain = config.reply_domain();
    if !domains.contains(&reply_domain) {
        domains.push(reply_domain.clone());
    }
    config
        .imap
        .iter()
        .map(|account| {
            let url = ImapUrl::parse(&account.url).map_err(|e| format!("email.imap {}: {e}", account.name))?;
            let tls = super::tls::connector(account.ca_file.as_deref())
                .map_err(|e| format!("email.imap {}: {e}", account.name))?;
            Ok(ImapPoller {
                account: account.clone(),
                url,
                tls,
                domains: domains.clone(),
                reply_domain: reply_domain.clone(),
                region: default_region.to_string(),
                keys: keys.cloned(),
                max_message_bytes: config.max_message_bytes,
                stuck: std::sync::Mutex::new((0, 0)),
            })
        })
        .collect()
}

impl ImapPoller {
    fn cursor_name(&self) -> String {
        format!("email.imap.{}", self.account.name)
    }

    /// Connects, secures the connection and logs in.
    async fn connect(&self) -> Result<Session<Io>, String> {
        let u = &self.url;
        let tcp = within("connect", TcpStream::connect((u.host.as_str(), u.port))).await?;
        let server_name =
            ServerName::try_from(u.host.clone()).map_err(|e| format!("the host name {} is not usable: {e}", u.host))?;
        let tcp = match u.tls {
            ImapTls::Implicit => tcp,
            ImapTls::StartTls => {
                let mut plain = Client::new(tcp);
                within("greeting", plain.read_response()).await?.ok_or("the server closed the connection")?;
                // Refused by a server without STARTTLS: the password never goes in the clear.
                within("STARTTLS", plain.run_command_and_check_ok("STARTTLS", None)).await?;
                plain.into_inner()
            }
        };
        let tls = within("TLS handshake", self.tls.connect(server_name, tcp)).await?;
        let mut client = Client::new(Box::new(tls) as Io);
        if u.tls == ImapTls::Implicit {
            within("greeting", client.read_response()).await?.ok_or("the server closed the connection")?;
        }
        let login = tokio::time::timeout(STEP_TIMEOUT, client.login(&u.user, &u.password)).await;
        match login {
            Ok(Ok(session)) => Ok(session),
            Ok(Err((e, _))) => Err(format!("login as {}: {}", u.user, short(e))),
            Err(_) => Err("login: no answer".into()),
        }
    }

    /// Creates the `move_to` folder when it is missing.
    async fn ensure_folder(&self, session: &mut Session<Io>, folder: &str) -> Result<(), String> {
        let exists = {
            let list = within("LIST", session.list(None, Some(folder))).await?;
            let names: Vec<_> = within("LIST", list.try_collect::<Vec<_>>()).await?;
            names.iter().any(|n| n.name() == folder)
        };
        if !exists {
            within("CREATE", session.create(folder)).await?;
        }
        Ok(())
    }

    /// Imports the folder's mail newer than the cursor, oldest first, in batches.
    async fn import_new(&self, session: &mut Session<Io>, ctx: &ListenerContext) -> Result<usize, String> {
        let name = self.cursor_name();
        let mailbox = within("SELECT", session.select(&self.url.folder)).await?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        let saved = ctx.sink.cursor(&name).await.map_err(|e| format!("cursor: {e}"))?.and_then(|c| Cursor::parse(&c));
        let mut last = Cursor::resume(saved, validity);
        if saved.is_some_and(|c| c.validity != validity) {
            tracing::info!(mailbox = %name, "The folder was renumbered (new UIDVALIDITY): reading it anew; Message-IDs keep imported mail from coming in twice.");
        }
        if mailbox.exists == 0 || mailbox.uid_next.is_some_and(|next| next <= last.saturating_add(1)) {
            return Ok(0);
        }
        let mut uids: Vec<u32> = within("SEARCH", session.uid_search(format!("UID {}:*", last.saturating_add(1))))
            .await?
            .into_iter()
            .filter(|uid| *uid > last)
            .collect();
        uids.sort_unstable();
        let mut taken = 0;
        for batch in uids.chunks(BATCH) {
            // The sizes first: a mail over the limit is not downloaded at all.
            let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let sizes: HashMap<u32, u32> = {
                let stream = within("FETCH", session.uid_fetch(&set, "(UID RFC822.SIZE)")).await?;
                let fetched: Vec<_> = within("FETCH", stream.try_collect::<Vec<_>>()).await?;
                fetched.iter().filter_map(|f| Some((f.uid?, f.size?))).collect()
            };
            for &uid in batch {
                if ctx.shutdown.is_cancelled() {
                    return Ok(taken);
                }
                // Not answered for (expunged by another client since the search, or the
                // server failed): stop here, nothing after it is taken either, and the next
                // run's search tells again what there is — until the same mail failed
                // MAX_ATTEMPTS times in a row: then it is left in the folder and reported,
                // so that one broken mail does not hold up all later ones.
                let size = match sizes.get(&uid) {
                    Some(&size) => Some(size),
                    None if self.give_up_on(uid) => None,
                    None => return Err(format!("mail UID {uid}: the server gave no size; trying again later")),
                };
                let raw = match size {
                    None => Err("the server never gave its size"),
                    Some(size) if size as usize > self.max_message_bytes => {
                        Err("it is larger than email.max_message_bytes")
                    }
                    // At most one byte more than the limit, whatever the server said the
                    // size was. No body: the mail stays and is tried again.
                    Some(_) => match self.fetch(session, uid).await? {
                        Some(raw) if raw.len() > self.max_message_bytes => {
                            Err("it is larger than email.max_message_bytes")
                        }
                        Some(raw) => Ok(raw),
                        None if self.give_up_on(uid) => Err("the server never sent its content"),
                        None => return Err(format!("mail UID {uid}: the server sent no content; trying again later")),
                    },
                };
                match raw {
                    Err(why) => {
                        let m = format!("mail UID {uid} not imported: {why}; left in the folder");
                        tracing::warn!(mailbox = %name, "{m}");
                        ctx.record_error(m);
                    }
                    Ok(raw) => match self.take(raw, ctx).await {
                        Ok(()) => {
                            // Committed: a failure to mark or move it is reported, not
                            // retried for ever (that would hold up every later mail).
                            if let Err(e) = self.after_commit(session, uid).await {
                                let m = format!("mail UID {uid} was imported but not marked or moved: {e}");
                                tracing::warn!(mailbox = %name, "{m}");
                                ctx.record_error(m);
                            }
                            taken += 1;
                        }
                        // Nothing stored, the cursor stays: the next run tries this mail again.
                        Err(SinkError::Temporary(m)) => {
                            return Err(format!("mail UID {uid} not stored for now: {}", short(m)))
                        }
                        // It will never be taken: left in the folder, unmarked, for a person.
                        Err(SinkError::Rejected(m)) => {
                            let m = format!("mail UID {uid} refused: {}; left in the folder", short(m));
                            tracing::warn!(mailbox = %name, "{m}");
                            ctx.record_error(m);
                        }
                    },
                }
                last = uid;
                ctx.sink
                    .save_cursor(&name, &Cursor { validity, last_uid: last }.encode())
                    .await
                    .map_err(|e| format!("cursor: {e}"))?;
            }
        }
        Ok(taken)
    }

    /// Counts a failed read of mail `uid`; true once it failed [`MAX_ATTEMPTS`] times in a row
    /// (then it is skipped).
    fn give_up_on(&self, uid: u32) -> bool {
        let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
        match *stuck {
            (u, ref mut n) if u == uid => *n += 1,
            _ => *stuck = (uid, 1),
        }
        stuck.1 >= MAX_ATTEMPTS
    }

    /// The mail with this UID, at most one byte more than `max_message_bytes`; `None` when the
    /// answer held no content (a `NO`, a lost connection, another client's expunge). Every
    /// response is looked at: a server may send a flags update for the same UID first.
    /// `BODY.PEEK` leaves the mail unread until it is committed.
    async fn fetch(&self, session: &mut Session<Io>, uid: u32) -> Result<Option<Vec<u8>>, String> {
        let query = format!("(UID BODY.PEEK[]<0.{}>)", self.max_message_bytes.saturating_add(1));
        let stream = within("FETCH", session.uid_fetch(uid.to_string(), query)).await?;
        let fetched: Vec<_> = within("FETCH", stream.try_collect::<Vec<_>>()).await?;
        Ok(fetched.iter().filter(|f| f.uid == Some(uid)).find_map(|f| f.body()).map(<[u8]>::to_vec))
    }

    /// Hands one mail to the sink; resolves after the commit.
    async fn take(&self, raw: Vec<u8>, ctx: &ListenerContext) -> Result<(), SinkError> {
        // No envelope over IMAP: the recipients the headers name carry the case token or
        // bounce address, if any (a forged one is simply not used).
        let tokens = match &self.keys {
            Some(keys) => header_recipients(&raw)
                .iter()
                .filter_map(|a| a.rsplit_once('@'))
                .filter(|(_, domain)| self.domains.iter().any(|d| d == domain))
                .filter_map(|(local, _)| keys.read(local).ok().flatten())
                .collect(),
            None => Vec::new(),
        };
        let envelope = Envelope {
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            helo: String::new(),
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tokens,
            reply_domain: self.reply_domain.clone(),
            keys: self.keys.clone(),
        };
        deliver(bytes::Bytes::from(raw), envelope, self.region.clone(), ctx.sink.as_ref()).await?;
        ctx.record_activity();
        Ok(())
    }

    /// After the commit: moved to `move_to`, or marked as read.
    async fn after_commit(&self, session: &mut Session<Io>, uid: u32) -> Result<(), String> {
        match &self.account.move_to {
            Some(folder) => {
                within("MOVE", session.uid_mv(uid.to_string(), folder)).await?;
            }
            None => {
                let stream = within("STORE", session.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")).await?;
                let _: Vec<_> = within("STORE", stream.try_collect::<Vec<_>>()).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Listener for ImapPoller {
    fn name(&self) -> String {
        self.cursor_name()
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn run(&self, ctx: ListenerContext) -> Result<(), String> {
        let mut session = tokio::select! {
            s = self.connect() => s?,
            _ = ctx.shutdown.cancelled() => return Ok(()),
        };
        let capabilities = within("CAPABILITY", session.capabilities()).await?;
        let idle = capabilities.has_str("IDLE");
        if let Some(folder) = &self.account.move_to {
            if !capabilities.has_str("MOVE") {
                return Err("the server has no MOVE (RFC 6851); remove move_to to mark mail as read instead".into());
            }
            self.ensure_folder(&mut session, folder).await?;
        }
        ctx.mark_running();
        let poll = Duration::from_secs(self.account.poll_secs.max(1));
        loop {
            let taken = self.import_new(&mut session, &ctx).await?;
            ctx.record_activity();
            if taken > 0 {
                tracing::info!(mailbox = %self.cursor_name(), taken, "Mail imported over IMAP.");
            }
            if ctx.shutdown.is_cancelled() {
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(());
            }
            // News the server sent during the last commands (a new mail's EXISTS) would not
            // wake an IDLE started now: look again at once instead.
            let mut news = false;
            while session.unsolicited_responses.try_recv().is_ok() {
                news = true;
            }
            if news {
                continue;
            }
            if idle {
                let mut handle = session.idle();
                within("IDLE", handle.init()).await?;
                let stopped = {
                    // Ends on news from the server, after `poll`, or at shutdown.
                    let (wait, _interrupt) = handle.wait_with_timeout(poll.min(MAX_IDLE));
                    tokio::select! {
                        r = wait => { r.map_err(|e| format!("IDLE: {e}"))?; false }
                        _ = ctx.shutdown.cancelled() => true,
                    }
                };
                if stopped {
                    return Ok(());
                }
                session = within("DONE", handle.done()).await?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = ctx.shutdown.cancelled() => {
                        let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_security_the_account_and_the_folder() {
        let u = ImapUrl::parse("imaps://support%40firma.de:ge%3Aheim@mail.firma.de/Eingang%20Kunden").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.user.as_str(), u.password.as_str(), u.folder.as_str()),
            (ImapTls::Implicit, "mail.firma.de", 993, "support@firma.de", "ge:heim", "Eingang Kunden")
        );
        let u = ImapUrl::parse("imap://u:p@127.0.0.1:1143").unwrap();
        assert_eq!((u.tls, u.port, u.folder.as_str()), (ImapTls::StartTls, 1143, "INBOX"));
        assert!(ImapUrl::parse("imaps://mail.firma.de/INBOX").unwrap_err().contains("user and a password"));
        assert!(ImapUrl::parse("pop3://u:p@h/").unwrap_err().contains("imaps://"));
        assert!(ImapUrl::parse("imaps://u:p@h/a%22b").is_err(), "a quote in the folder");
        assert!(!format!("{:?}", ImapUrl::parse("imaps://u:geheim@h/").unwrap()).contains("geheim"));
    }

    #[test]
    fn a_renumbered_folder_is_read_from_the_start() {
        let saved = Cursor::parse("1796507441:17");
        assert_eq!(saved, Some(Cursor { validity: 1796507441, last_uid: 17 }));
        assert_eq!(Cursor::resume(saved, 1796507441), 17);
        assert_eq!(Cursor::resume(saved, 5), 0, "new UIDVALIDITY: the old UIDs mean nothing");
        assert_eq!(Cursor::resume(None, 5), 0);
        assert_eq!(Cursor::parse("garbage"), None);
        assert_eq!(Cursor { validity: 9, last_uid: 3 }.encode(), "9:3");
    }
}
