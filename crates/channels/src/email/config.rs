//! Configuration of the e-mail channel (section `[email]`, with `[email.outbound]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How Kontor receives and sends e-mail. Receiving is on when `smtp_listen` is set; sending
/// when `outbound.relay` and `outbound.from` are.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// Address the SMTP listener binds (`serve --smtp-listen`, `KONTOR_EMAIL__SMTP_LISTEN`).
    pub smtp_listen: Option<String>,
    /// The domains Kontor accepts mail for (`RCPT TO` elsewhere gets 550).
    pub domains: Vec<String>,
    /// The name the listener greets with and says in `EHLO` (default: the first domain).
    pub hostname: Option<String>,
    /// Largest message accepted (announced as `SIZE`, enforced with 552).
    pub max_message_bytes: usize,
    /// PEM certificate chain for `STARTTLS` (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `STARTTLS`.
    pub tls_key: Option<PathBuf>,
    /// SMTP sessions at once on this node.
    pub max_sessions: usize,
    /// SMTP sessions at once from one client address.
    pub max_sessions_per_ip: usize,
    /// Seconds a session may wait between two commands.
    pub idle_timeout_secs: u64,
    /// Seconds a whole `DATA` transfer may take (stops slow senders).
    pub data_timeout_secs: u64,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Sending (`[email.outbound]`).
    pub outbound: EmailOutboundConfig,
    /// Mailboxes Kontor reads over IMAP (`[[email.imap]]`).
    pub imap: Vec<ImapAccount>,
}

/// One IMAP mailbox Kontor imports mail from (`[[email.imap]]`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapAccount {
    /// A short name (a-z, 0-9, `-`, `_`): the listener is `email.imap.<name>`.
    pub name: String,
    /// `imaps://user:password@host:993/INBOX`, or `imap://…` (STARTTLS, required). User and
    /// password percent-encoded where they hold `@`, `:` or `/`; the folder defaults to INBOX.
    pub url: String,
    /// Folder imported mail is moved to (created when missing); without it, imported mail is
    /// marked as read and stays.
    #[serde(default)]
    pub move_to: Option<String>,
    /// Seconds between two looks at the folder when the server has no IDLE; with IDLE, the
    /// longest one IDLE waits before looking anyway.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// PEM file of certificates to trust beside the public roots (a company's own CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_poll_secs() -> u64 {
    60
}

impl std::fmt::Debug for ImapAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapAccount")
            .field("name", &self.name)
            .field("url", &hide_password(&self.url))
            .field("move_to", &self.move_to)
            .field("poll_secs", &self.poll_secs)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Where replies on e-mail cases are sent.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailOutboundConfig {
    /// `smtp://host:port` (STARTTLS when offered) or `smtps://host:port`, with optional
    /// `user:password@`.
    pub relay: Option<String>,
    /// The sender: `support@example.de` or `Kontor Support <support@example.de>`.
    pub from: Option<String>,
    /// Seconds one delivery may take.
    pub timeout_secs: u64,
    /// PEM private key (RSA, PKCS#1 or PKCS#8; or Ed25519, PKCS#8) every outbound mail is
    /// DKIM-signed with, for the domain of `from` (with `dkim_selector`).
    pub dkim_key_file: Option<PathBuf>,
    /// The DKIM selector: the public key is published at `<selector>._domainkey.<domain>`.
    pub dkim_selector: Option<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_listen: None,
            domains: Vec::new(),
            hostname: None,
            max_message_bytes: 25 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            max_sessions: 256,
            max_sessions_per_ip: 10,
            idle_timeout_secs: 300,
            data_timeout_secs: 600,
            max_recipients: 50,
            outbound: EmailOutboundConfig::default(),
            imap: Vec::new(),
        }
    }
}

impl Default for EmailOutboundConfig {
    fn default() -> Self {
        EmailOutboundConfig { relay: None, from: None, timeout_secs: 30, dkim_key_file: None, dkim_selector: None }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_listen", &self.smtp_listen)
            .field("domains", &self.domains)
            .field("hostname", &self.hostname)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("max_sessions", &self.max_sessions)
            .field("max_sessions_per_ip", &self.max_sessions_per_ip)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("data_timeout_secs", &self.data_timeout_secs)
            .field("max_recipients", &self.max_recipients)
            .field("outbound", &self.outbound)
            .field("imap", &self.imap)
            .finish()
    }
}

impl std::fmt::Debug for EmailOutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailOutboundConfig")
            .field("relay", &self.relay.as_deref().map(hide_password))
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .field("dkim_key_file", &self.dkim_key_file)
            .field("dkim_selector", &self.dkim_selector)
            .finish()
    }
}

/// `smtp://user:***@host` for a relay URL with a password.
pub fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

impl EmailOutboundConfig {
    /// The DKIM signer of outbound mail, or `None` when signing is not configured; an error
    /// when only one of `dkim_key_file` and `dkim_selector` is set, when there is no `from`
    /// (whose domain signs), or when the key file cannot be read or used (naming the file).
    pub fn dkim(&self) -> Result<Option<super::dkim::DkimSigning>, String> {
        let (file, selector) = match (&self.dkim_key_file, &self.dkim_selector) {
            (None, None) => return Ok(None),
            (Some(file), Some(selector)) => (file, selector),
            (Some(_), None) => {
                return Err("email.outbound.dkim_selector must be set when email.outbound.dkim_key_file is".into())
            }
            (None, Some(_)) => {
                return Err("email.outbound.dkim_key_file must be set when email.outbound.dkim_selector is".into())
            }
        };
        super::dkim::check_selector(selector)?;
        let from = self.from.as_deref().ok_or_else(|| {
            "email.outbound.from must be set when email.outbound.dkim_key_file is (its domain signs)".to_string()
        })?;
        let sender = super::outbound::Sender::parse(from)?;
        super::dkim::DkimSigning::load(file, &sender.domain().to_ascii_lowercase(), selector).map(Some)
    }
}

impl EmailConfig {
    /// The domains, lower-cased and without a trailing dot.
    pub fn normalised_domains(&self) -> Vec<String> {
        self.domains.iter().map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()).collect()
    }

    /// The name the listener uses for itself.
    pub fn host_name(&self) -> String {
        self.hostname
            .clone()
            .or_else(|| self.normalised_domains().into_iter().next())
            .unwrap_or_else(|| "kontor".into())
    }

    /// The domain of Kontor's own Message-IDs, bounce addresses and case tokens: that of
    /// `email.outbound.from`, else the host name.
    pub fn reply_domain(&self) -> String {
        self.outbound
            .from
            .as_deref()
            .and_then(|f| super::outbound::Sender::parse(f).ok())
            .map(|s| s.domain().to_ascii_lowercase())
            .unwrap_or_else(|| self.host_name())
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.smtp_listen.is_some() && self.domains.is_empty() {
            return Err("email.domains must name at least one domain when email.smtp_listen is set".into());
        }
        for d in self.normalised_domains() {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(format!("email.domains: {d:?} is not a domain name"));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("email.tls_cert and email.tls_key must be set together".into());
        }
        if self.max_message_bytes < 1024 {
            return Err("email.max_message_bytes must be at least 1024".into());
        }
        if self.max_sessions == 0 || self.max_sessions_per_ip == 0 || self.max_recipients == 0 {
            return Err("email.max_sessions, max_sessions_per_ip and max_recipients must be at least 1".into());
        }
        if let Some(relay) = &self.outbound.relay {
            super::outbound::Relay::parse(relay)?;
            if self.outbound.from.is_none() {
                return Err("email.outbound.from must be set when email.outbound.relay is".into());
            }
        }
        if let Some(from) = &self.outbound.from {
            super::outbound::Sender::parse(from)?;
        }
        // The key is read now, so that a node with a key it cannot use refuses to start
        // rather than failing at its first mail.
        self.outbound.dkim()?;
        let mut names = std::collections::BTreeSet::new();
        for account in &self.imap {
            let n = &account.name;
            let ok = !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!("email.imap: name {n:?} must be 1 to 64 of a-z, 0-9, '-' and '_'"));
            }
            if !names.insert(n.clone()) {
                return Err(format!("email.imap: the name {n:?} is used twice"));
            }
            super::imap::ImapUrl::parse(&account.url).map_err(|e| format!("email.imap {n}: {e}"))?;
            if account.move_to.as_deref().is_some_and(|f| f.trim().is_empty() || f.len() > 200) {
                return Err(format!("email.imap {n}: move_to must name a folder"));
            }
            let folder = super::imap::ImapUrl::parse(&account.url).map(|u| u.folder).unwrap_or_default();
            if account.move_to.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(&folder)) {
                return Err(format!("email.imap {n}: move_to must be another folder than the one read ({folder})"));
            }
            if !(1..=3600).contains(&account.poll_secs) {
                return Err(format!("email.imap {n}: poll_secs must be between 1 and 3600"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_key_named() {
        let listen = |domains: &[&str]| EmailConfig {
            smtp_listen: Some("127.0.0.1:2525".into()),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..EmailConfig::default()
        };
        assert!(listen(&["support.example.de"]).validate().is_ok());
        assert!(listen(&[]).validate().unwrap_err().contains("email.domains"));
        assert!(listen(&["bad domain"]).validate().unwrap_err().contains("not a domain"));
        let tls = EmailConfig { tls_cert: Some("c.pem".into()), ..listen(&["a.de"]) };
        assert!(tls.validate().unwrap_err().contains("tls_key"));
        let relay = EmailConfig {
            outbound: EmailOutboundConfig { relay: Some("smtp://127.0.0.1:25".into()), ..Default::default() },
            ..EmailConfig::default()
        };
        assert!(relay.validate().unwrap_err().contains("outbound.from"));
        assert_eq!(listen(&["Support.Example.DE."]).normalised_domains(), vec!["support.example.de"]);
    }

    #[test]
    fn imap_accounts_need_a_unique_name_and_a_usable_url() {
        let with = |accounts: Vec<(&str, &str)>| EmailConfig {
            imap: accounts
                .into_iter()
                .map(|(name, url)| ImapAccount {
                    name: name.into(),
                    url: url.into(),
                    move_to: None,
                    poll_secs: 60,
                    ca_file: None,
                })
                .collect(),
            ..EmailConfig::default()
        };
        assert!(with(vec![("support", "imaps://u:p@mail.example/INBOX")]).validate().is_ok());
        let twice = with(vec![("a", "imaps://u:p@h/"), ("a", "imaps://u:p@h/X")]);
        assert!(twice.validate().unwrap_err().contains("used twice"));
        assert!(with(vec![("Bad Name", "imaps://u:p@h/")]).validate().unwrap_err().contains("name"));
        assert!(with(vec![("a", "http://u:p@h/")]).validate().unwrap_err().contains("imap"));
        assert!(with(vec![("a", "imaps://h/")]).validate().unwrap_err().contains("user"));
        let mut same = with(vec![("a", "imaps://u:p@h/INBOX")]);
        same.imap[0].move_to = Some("inbox".into());
        assert!(same.validate().unwrap_err().contains("another folder"));
        let shown = format!("{:?}", with(vec![("a", "imaps://kontor:geheim@h/")]));
        assert!(!shown.contains("geheim"), "{shown}");
    }

    #[test]
    fn dkim_needs_key_and_selector_together_and_a_key_file_it_can_use() {
        let with = |file: Option<&str>, selector: Option<&str>| EmailConfig {
            outbound: EmailOutboundConfig {
                relay: Some("smtp://127.0.0.1:25".into()),
                from: Some("Kontor Support <support@support.example.de>".into()),
                dkim_key_file: file.map(PathBuf::from),
                dkim_selector: selector.map(String::from),
                ..Default::default()
            },
            ..EmailConfig::default()
        };
        assert!(with(None, None).validate().is_ok());
        let err = with(Some("/etc/kontor/dkim.pem"), None).validate().unwrap_err();
        assert!(err.contains("email.outbound.dkim_selector must be set"), "{err}");
        let err = with(None, Some("kontor")).validate().unwrap_err();
        assert!(err.contains("email.outbound.dkim_key_file must be set"), "{err}");
        let err = with(Some("/nonexistent/dkim.pem"), Some("kontor")).validate().unwrap_err();
        assert!(err.contains("email.outbound.dkim_key_file /nonexistent/dkim.pem: cannot be read"), "{err}");
        let garbage = std::env::temp_dir().join(format!("kontor-dkim-test-{}.pem", std::process::id()));
        std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let err = with(garbage.to_str(), Some("kontor")).validate().unwrap_err();
        let _ = std::fs::remove_file(&garbage);
        assert!(err.contains(&format!("email.outbound.dkim_key_file {}: ", garbage.display())), "{err}");
        let err = with(Some("/etc/kontor/dkim.pem"), Some("kein selector")).validate().unwrap_err();
        assert!(err.contains("email.outbound.dkim_selector"), "{err}");
    }

    #[test]
    fn a_relay_password_is_not_shown() {
        let c = EmailConfig {
            outbound: EmailOutboundConfig {
                relay: Some("smtps://kontor:geheim@mail.example:465".into()),
                ..Default::default()
            },
            ..EmailConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("geheim") && shown.contains("kontor:***@mail.example"), "{shown}");
    }
}
