//! Configuration: defaults, then a TOML file, then `KONTOR_*` environment variables, then
//! command-line flags (applied by the binary).

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything a Kontor node can be configured with.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory for the embedded database and local files.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://...`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Region for phone numbers written without a country code.
    pub default_region: String,
    /// Hours during which a resolved case re-opens on a new inbound message.
    pub reopen_window_hours: u64,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Name of this node in job leases and logs (default: host name and process id).
    pub node_name: Option<String>,
    /// Most write operations waiting for the writer; beyond that, writes answer 503 with
    /// `Retry-After` ("write queue full") instead of queueing without limit.
    pub write_queue_capacity: usize,
    /// Largest attachment in bytes (a `file` part of a multipart upload, or the decoded
    /// `content_base64` of a JSON one, which must also fit in `max_body_bytes`).
    pub max_attachment_bytes: usize,
    /// Largest multipart upload (the message and all its files together).
    pub max_upload_bytes: usize,
    /// Multipart uploads received at the same time on this node; more answer 503 with
    /// `Retry-After` (bounds the memory uploads can take: this × `max_upload_bytes`).
    pub max_concurrent_uploads: usize,
    /// Live event streams (`GET /api/v1/events/stream`) one staff user or API token may
    /// hold open on this node; more answer 429.
    pub max_streams_per_caller: usize,
    /// Where attachments' bytes are kept (`[blobs]`: a local directory by default, or S3).
    #[serde(skip_serializing)]
    pub blobs: kontor_vault::BlobsConfig,
    /// The master key of the blob store (`[vault]`).
    #[serde(skip_serializing)]
    pub vault: kontor_vault::VaultConfig,
    /// The generic API channel.
    pub api_channel: ApiChannelConfig,
    /// The e-mail channel (`[email]`): SMTP listener, domains, relay for replies.
    pub email: EmailConfig,
    /// Background jobs.
    pub jobs: JobsConfig,
    /// The digital assistant (`[assist]`).
    pub assist: AssistConfig,
}

/// The digital assistant: analysis of inbound messages, extraction patterns, automatic
/// answers, and the optional language model for reply drafts.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistConfig {
    /// Analyse every inbound message after ingest (language, intent, entities, sentiment).
    pub analyse: bool,
    /// Messages one analysis job takes at a time.
    pub batch: i64,
    /// Numbers to extract by pattern: name → regular expression (e.g.
    /// `customer_number = "\\bKD-\\d{6}\\b"`); the whole match is the value.
    pub patterns: std::collections::BTreeMap<String, String>,
    /// A customer gets at most one automatic answer within this many hours.
    pub auto_answer_quiet_hours: u64,
    /// The model must be at least this sure of an intent (0–1) for an automatic answer.
    pub auto_answer_min_confidence: f32,
    /// At most this many automatic answers in any hour, to all customers together (a flood of
    /// forged senders cannot make Kontor mail the world).
    pub auto_answer_max_per_hour: i64,
    /// Channels whose messages and replies are public (social posts, reviews): every reply
    /// on one waits for a second staff user's approval, and a negative message on one raises
    /// an alert. None of today's channels is public, so the default is empty.
    pub public_channels: Vec<kontor_core::Channel>,
    /// Reply drafts from a language model (`[assist.llm]`); off unless `base_url` is set.
    pub llm: LlmConfig,
}

impl Default for AssistConfig {
    fn default() -> Self {
        AssistConfig {
            analyse: true,
            batch: 64,
            patterns: Default::default(),
            auto_answer_quiet_hours: 24,
            auto_answer_min_confidence: 0.5,
            auto_answer_max_per_hour: 200,
            public_channels: Vec::new(),
            llm: LlmConfig::default(),
        }
    }
}

impl std::fmt::Debug for AssistConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistConfig")
            .field("analyse", &self.analyse)
            .field("batch", &self.batch)
            .field("patterns", &self.patterns)
            .field("auto_answer_quiet_hours", &self.auto_answer_quiet_hours)
            .field("auto_answer_min_confidence", &self.auto_answer_min_confidence)
            .field("auto_answer_max_per_hour", &self.auto_answer_max_per_hour)
            .field("public_channels", &self.public_channels)
            .field("llm", &self.llm)
            .finish()
    }
}

/// An OpenAI-compatible chat completions API for reply drafts. Nothing else depends on it.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The API's base URL (e.g. `http://127.0.0.1:8000/v1`); unset: drafts are off.
    pub base_url: Option<String>,
    /// The model name sent with each request.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Longest wait for a draft, in seconds (default 30).
    pub timeout_secs: Option<u64>,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

pub use kontor_channels::api::ApiChannelConfig;
pub use kontor_channels::email::EmailConfig;

/// How jobs are run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at the same time on this node.
    pub concurrency: usize,
    /// Attempts before a job goes to the dead letter.
    pub max_attempts: i64,
    /// Seconds a claimed job stays leased to this node.
    pub lease_secs: i64,
    /// First retry delay in milliseconds; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Milliseconds between looks for due jobs when idle.
    pub poll_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            concurrency: 8,
            max_attempts: 8,
            lease_secs: 60,
            backoff_base_ms: 1000,
            backoff_max_ms: 600_000,
            poll_ms: 1000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("kontor-data"),
            database_url: None,
            default_region: "DE".into(),
            reopen_window_hours: 168,
            max_body_bytes: 1024 * 1024,
            node_name: None,
            write_queue_capacity: 10_000,
            max_attachment_bytes: 25 * 1024 * 1024,
            max_upload_bytes: 50 * 1024 * 1024,
            max_concurrent_uploads: 4,
            max_streams_per_caller: 32,
            blobs: kontor_vault::BlobsConfig::default(),
            vault: kontor_vault::VaultConfig::default(),
            api_channel: ApiChannelConfig::default(),
            email: EmailConfig::default(),
            jobs: JobsConfig::default(),
            assist: AssistConfig::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let db = self.database_url.as_deref().map(redact_url);
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &db)
            .field("default_region", &self.default_region)
            .field("reopen_window_hours", &self.reopen_window_hours)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("node_name", &self.node_name)
            .field("write_queue_capacity", &self.write_queue_capacity)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("max_streams_per_caller", &self.max_streams_per_caller)
            .field("blobs", &self.blobs)
            .field("vault", &self.vault)
            .field("api_channel", &self.api_channel)
            .field("email", &self.email)
            .field("jobs", &self.jobs)
            .field("assist", &self.assist)
            .finish()
    }
}

/// Query parameters whose values are secrets (compared without regard to case).
const SECRET_QUERY_KEYS: &[&str] = &["password", "sslpassword", "secret", "token"];

/// Hides the secrets in a database URL: the password of `user:password@` and the values of
/// query parameters such as `?password=` (see [`SECRET_QUERY_KEYS`]), before the URL goes
/// into an error message or a log line. Used by `Config`'s `Debug` and by the binary
/// (`kontor migrate`, `serve` and `bench` output, and the "cannot open the store" error).
pub fn redact_url(url: &str) -> String {
    // The password first, up to the last `@` (a password may hold `/` or `?`; an `@` in the
    // query then hides more than needed, never less).
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    if let Some((base, query)) = out.split_once('?') {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_QUERY_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s)) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}?{}", pairs.join("&"));
    }
    out
}

const TOP_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "default_region",
    "reopen_window_hours",
    "max_body_bytes",
    "node_name",
    "write_queue_capacity",
    "max_attachment_bytes",
    "max_upload_bytes",
    "max_concurrent_uploads",
    "max_streams_per_caller",
    "blobs",
    "vault",
    "api_channel",
    "email",
    "jobs",
    "assist",
];

impl Config {
    /// The channels' sections, as the channel registry takes them.
    pub fn channels(&self) -> kontor_channels::ChannelsConfig {
        kontor_channels::ChannelsConfig {
            api: self.api_channel.clone(),
            email: self.email.clone(),
            default_region: self.default_region.clone(),
            mail_keys: None,
        }
    }

    /// Loads defaults, then `file` (if given, it must exist; else `kontor.toml` in the
    /// working directory if present), then `KONTOR_*` variables (`__` separates nested
    /// keys: `KONTOR_API_CHANNEL__WEBHOOK_URL`).
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) if !p.exists() => return Err(format!("config file {} does not exist", p.display())),
            Some(p) => fig = fig.merge(Toml::file(p)),
            None if Path::new("kontor.toml").exists() => fig = fig.merge(Toml::file("kontor.toml")),
            None => {}
        }
        fig = fig.merge(
            Env::prefixed("KONTOR_")
                .split("__")
                .filter(|k| TOP_KEYS.iter().any(|t| k == *t || k.starts_with(&format!("{t}.")))),
        );
        let cfg: Config = fig.extract().map_err(|e| format!("configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses settings that cannot work together (checked by [`Config::load`]).
    ///
    /// A delivery's webhook timeout must be well below the job lease: at most half of
    /// `jobs.lease_secs`. The worker renews a running job's lease, but a handler that may run
    /// as long as the lease would depend on every renewal arriving in time.
    pub fn validate(&self) -> Result<(), String> {
        let (lease, timeout) = (self.jobs.lease_secs, self.api_channel.timeout_secs);
        if !(1..=86_400).contains(&lease) {
            return Err(format!("configuration: jobs.lease_secs must be between 1 and 86400, not {lease}"));
        }
        if timeout == 0 || timeout.saturating_mul(2) > lease as u64 {
            return Err(format!(
                "configuration: api_channel.timeout_secs ({timeout}) must be at least 1 and at most half of \
                 jobs.lease_secs ({lease}), so that a delivery ends well before its job's lease runs out"
            ));
        }
        self.email.validate().map_err(|e| format!("configuration: {e}"))?;
        let mail_timeout = self.email.outbound.timeout_secs;
        if self.email.outbound.relay.is_some() && (mail_timeout == 0 || mail_timeout.saturating_mul(2) > lease as u64) {
            return Err(format!(
                "configuration: email.outbound.timeout_secs ({mail_timeout}) must be at least 1 and at most half of \
                 jobs.lease_secs ({lease})"
            ));
        }
        if self.write_queue_capacity == 0 {
            return Err("configuration: write_queue_capacity must be at least 1".into());
        }
        if self.assist.auto_answer_quiet_hours == 0 {
            return Err("configuration: assist.auto_answer_quiet_hours must be at least 1 (it keeps two auto-responders from answering each other)".into());
        }
        if self.assist.auto_answer_max_per_hour < 0 {
            return Err("configuration: assist.auto_answer_max_per_hour must not be negative".into());
        }
        if !(0.0..=1.0).contains(&self.assist.auto_answer_min_confidence) {
            return Err("configuration: assist.auto_answer_min_confidence must be between 0 and 1".into());
        }
        if !(1..=10_000).contains(&self.assist.batch) {
            return Err(format!("configuration: assist.batch must be between 1 and 10000, not {}", self.assist.batch));
        }
        crate::assist::check_patterns(&self.assist.patterns)
            .map_err(|e| format!("configuration: assist.patterns: {e}"))?;
        if let Some(url) = &self.assist.llm.base_url {
            crate::assist::llm::check_base_url(url).map_err(|e| format!("configuration: assist.llm.base_url: {e}"))?;
            if self.assist.llm.model.trim().is_empty() {
                return Err("configuration: assist.llm.model must be set when assist.llm.base_url is".into());
            }
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("kontor.db").display()))
    }

    /// The store settings derived from this configuration.
    pub fn store_settings(&self) -> kontor_store::StoreSettings {
        kontor_store::StoreSettings {
            reopen_window: std::time::Duration::from_secs(self.reopen_window_hours * 3600),
            default_region: self.default_region.clone(),
            job_max_attempts: self.jobs.max_attempts,
            write_queue_capacity: self.write_queue_capacity,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        for (url, shown) in [
            ("postgres://kontor:geheim@db:5432/k", "postgres://kontor:***@db:5432/k"),
            ("postgres://postgres@db/k", "postgres://postgres@db/k"),
            ("sqlite:kontor-data/kontor.db", "sqlite:kontor-data/kontor.db"),
            ("postgres://kontor@db/k?password=geheim", "postgres://kontor@db/k?password=***"),
            ("postgres://db/k?sslmode=require&PassWord=geheim", "postgres://db/k?sslmode=require&PassWord=***"),
            ("postgres://db/k?sslpassword=geheim&user=kontor", "postgres://db/k?sslpassword=***&user=kontor"),
            ("postgres://db/k?SECRET=geheim&token=geheim", "postgres://db/k?SECRET=***&token=***"),
            ("postgres://a:geheim@db/k?password=geheim2", "postgres://a:***@db/k?password=***"),
            ("postgres://db/k?application_name=password", "postgres://db/k?application_name=password"),
            ("postgres://db/k?passwords=x&password", "postgres://db/k?passwords=x&password"),
            ("postgres://u:ge?heim@db/k", "postgres://u:***@db/k"),
            ("postgres://u@db/k?password=ge@heim", "postgres://u@db/k?password=***"),
            ("postgres://u:x@db/k?password=ge@heim", "postgres://u:***@heim"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("geheim"), "{url}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn a_webhook_timeout_not_well_below_the_job_lease_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KONTOR_JOBS__LEASE_SECS", "2");
            jail.set_env("KONTOR_API_CHANNEL__TIMEOUT_SECS", "6");
            let err = Config::load(None).err().unwrap_or_default();
            assert!(err.contains("api_channel.timeout_secs") && err.contains("jobs.lease_secs"), "{err}");
            jail.set_env("KONTOR_API_CHANNEL__TIMEOUT_SECS", "2");
            assert!(Config::load(None).is_err(), "a timeout equal to the lease is refused");
            jail.set_env("KONTOR_API_CHANNEL__TIMEOUT_SECS", "1");
            assert!(Config::load(None).is_ok(), "half the lease is allowed");
            jail.set_env("KONTOR_JOBS__LEASE_SECS", "0");
            assert!(Config::load(None).unwrap_err().contains("lease_secs"));
            Ok(())
        });
        assert!(Config::default().validate().is_ok(), "the defaults are valid");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn environment_variables_override_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KONTOR_JOBS__POLL_MS", "123");
            jail.set_env("KONTOR_API_CHANNEL__WEBHOOK_URL", "http://127.0.0.1:9/hook");
            jail.set_env("KONTOR_BIN", "/not/a/config/key");
            let c = Config::load(None).map_err(figment::Error::from)?;
            assert_eq!(c.jobs.poll_ms, 123);
            assert_eq!(c.api_channel.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
            assert_eq!(c.store_settings().job_max_attempts, 8);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn the_email_section_is_read_from_the_file_and_the_environment_and_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kontor.toml",
                "[email]\nsmtp_listen = \"127.0.0.1:2525\"\ndomains = [\"support.example.de\"]\n\
                 [email.outbound]\nrelay = \"smtp://127.0.0.1:25\"\nfrom = \"Kundenservice <support@support.example.de>\"\n",
            )?;
            jail.set_env("KONTOR_EMAIL__SMTP_LISTEN", "127.0.0.1:2626");
            let c = Config::load(None).map_err(figment::Error::from)?;
            assert_eq!(c.email.smtp_listen.as_deref(), Some("127.0.0.1:2626"), "the environment wins");
            assert_eq!(c.email.domains, vec!["support.example.de"]);
            assert_eq!(c.email.max_message_bytes, 25 * 1024 * 1024);
            assert_eq!(c.channels().email.outbound.relay.as_deref(), Some("smtp://127.0.0.1:25"));
            jail.create_file("kontor.toml", "[email]\nsmtp_listen = \"127.0.0.1:2525\"\n")?;
            assert!(Config::load(None).unwrap_err().contains("email.domains"), "a listener needs domains");
            jail.create_file("kontor.toml", "[email]\nsmpt_listen = \"x\"\n")?;
            assert!(Config::load(None).unwrap_err().contains("smpt_listen"), "a misspelt key is named");
            Ok(())
        });
    }

    #[test]
    fn toml_file_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:9000\"\n[api_channel]\nwebhook_url = \"http://x\"\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.api_channel.webhook_url.as_deref(), Some("http://x"));
        assert_eq!(c.jobs.max_attempts, 8);
        std::fs::write(&p, "lisen = 1\n").unwrap();
        assert!(Config::load(Some(&p)).unwrap_err().contains("lisen"));
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
