//! Reply drafts from a language model over an OpenAI-compatible chat completions API
//! (`POST {base_url}/chat/completions`).
//!
//! Optional and isolated: off unless `assist.llm.base_url` is set, and nothing else in Kontor
//! calls it — only `POST /api/v1/cases/{id}/draft`. The API key is sent as a bearer token and
//! never appears in a log line or an error.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use kontor_core::{Direction, Message};
use kontor_store::cases::CaseDetail;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::config::LlmConfig;
use crate::error::AppError;
use crate::AppState;

/// Longest wait for a draft when `assist.llm.timeout_secs` is not set.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Largest answer read from the model's API, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Messages of the conversation sent with the prompt (the newest ones).
const CONVERSATION_MESSAGES: usize = 10;
/// Longest message text sent, in characters (longer ones are cut).
const MESSAGE_CHARS: usize = 4000;
/// Characters of an error answer's body quoted in the error.
const BODY_EXCERPT_CHARS: usize = 300;

/// What the model is told it does.
pub const SYSTEM_PROMPT: &str = "\
You draft replies for a customer-service agent. The agent reads your draft, edits it if needed \
and sends it to the customer; you never talk to the customer yourself.

Rules:
- Write in the customer's language: German if the customer wrote German, English if English. \
In German address the customer with \"Sie\".
- Be polite, warm and clear; write modern, plain language as people speak today. Avoid \
bureaucratic and outdated phrases (e.g. \"Bezug nehmend auf\", \"wir dürfen Ihnen mitteilen\", \
\"anbei erhalten Sie\", \"for your kind attention\", \"please be advised\") and needless passive voice.
- Answer what the customer actually asked, in short paragraphs.
- Never invent facts: no amounts, dates, deadlines, contract or order details, names or promises \
that are not in the conversation. Where the agent must fill something in, write a placeholder \
in square brackets, e.g. [Datum] or [date].
- Output only the reply text (greeting, body, closing), no subject line, no notes to the agent.";

/// Why the language model gave no draft. The messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// No answer within the configured time.
    #[error("the language model did not answer within {0} s")]
    Timeout(u64),
    /// The request could not be sent or the answer not be read.
    #[error("cannot reach the language model: {0}")]
    Transport(String),
    /// The API answered with a status other than 2xx.
    #[error("the language model's API answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("the language model's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer is not JSON.
    #[error("the language model's answer is not JSON: {0}")]
    NotJson(String),
    /// The answer has no text at `choices[0].message.content`.
    #[error("the language model's answer has no text at choices[0].message.content")]
    NoContent,
}

/// A client of an OpenAI-compatible chat completions API.
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    api_key: Option<String>,
    timeout_secs: u64,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// One HTTP client for all drafts (connections are reused); it follows no redirects, so the
/// bearer token goes only to the configured host.
fn shared_http() -> Result<reqwest::Client, String> {
    static HTTP: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))
    })
    .clone()
}

/// `{base_url}/chat/completions`, whether or not the base URL ends with a slash.
pub fn completions_url(base_url: &str) -> Result<reqwest::Url, String> {
    check_base_url(base_url)?;
    let mut url = reqwest::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|_| format!("{base_url:?} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["chat", "completions"]);
    Ok(url)
}

impl LlmClient {
    /// The client the configuration describes; `None` when drafts are off (no `base_url`).
    pub fn from_config(config: &LlmConfig) -> Option<Result<LlmClient, String>> {
        let base_url = config.base_url.as_deref()?;
        Some((|| {
            Ok(LlmClient {
                http: shared_http()?,
                endpoint: completions_url(base_url)?,
                model: config.model.clone(),
                api_key: config.api_key.clone().filter(|k| !k.is_empty()),
                timeout_secs: config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1),
            })
        })())
    }

    /// The model name sent with each request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks the model for one answer to a system prompt and a user message; returns its text.
    pub async fn complete(&self, system: &str, user: &str) -> Result<String, LlmError> {
        let limit = Duration::from_secs(self.timeout_secs);
        match tokio::time::timeout(limit, self.exchange(system, user, limit)).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout(self.timeout_secs)),
        }
    }

    async fn exchange(&self, system: &str, user: &str, limit: Duration) -> Result<String, LlmError> {
        let body = json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": user },
            ],
            "temperature": 0.3,
        });
        let mut request = self.http.post(self.endpoint.clone()).timeout(limit).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let bytes = read_limited(response, MAX_RESPONSE_BYTES).await.map_err(|e| match e {
            ReadError::TooLarge => LlmError::TooLarge(MAX_RESPONSE_BYTES),
            ReadError::Transport(e) => self.transport(e),
        })?;
        if !status.is_success() {
            return Err(LlmError::Status { status: status.as_u16(), body: self.excerpt(&bytes) });
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::NotJson(format!("{e}; the answer begins: {}", self.excerpt(&bytes))))?;
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(LlmError::NoContent)?;
        Ok(content.to_string())
    }

    fn transport(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            return LlmError::Timeout(self.timeout_secs);
        }
        // The URL is left out (it could carry credentials); the causes say what failed.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        LlmError::Transport(self.redact(&text))
    }

    /// A short, single-line quote of an answer's body, with the API key blanked out.
    fn excerpt(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut cut: String = flat.chars().take(BODY_EXCERPT_CHARS).collect();
        if flat.chars().count() > BODY_EXCERPT_CHARS {
            cut.push('…');
        }
        if cut.is_empty() {
            cut = "(empty body)".into();
        }
        self.redact(&cut)
    }

    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if key.len() >= 4 => text.replace(key.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads a body of at most `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if bytes.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Cuts a text to `max` characters, marking the cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{} […]", &text[..at]),
        None => text.to_string(),
    }
}

fn direction_label(m: &Message) -> &'static str {
    match m.direction {
        Direction::In => "Customer (inbound)",
        Direction::Out => "Agent (outbound)",
    }
}

/// The user message of the prompt: the case's conversation (the newest
/// [`CONVERSATION_MESSAGES`] messages the customer saw or wrote, oldest first, each cut to
/// [`MESSAGE_CHARS`] characters) and what the assistant found in the last inbound message.
/// `None` if the case has no such message.
pub fn conversation_prompt(detail: &CaseDetail) -> Option<String> {
    let visible: Vec<&Message> = detail.messages.iter().filter(|m| !m.internal && !m.text.trim().is_empty()).collect();
    if visible.is_empty() {
        return None;
    }
    let shown = &visible[visible.len().saturating_sub(CONVERSATION_MESSAGES)..];
    let mut out = String::new();
    if let Some(subject) = detail.case.subject.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push_str(&format!("Subject of the case: {}\n", cut(subject.trim(), 300)));
    }
    if let Some(name) = detail.customer.name.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push_str(&format!("Customer's name: {}\n", cut(name.trim(), 200)));
    }
    if visible.len() > shown.len() {
        out.push_str(&format!("The conversation has {} messages; the newest {} follow.\n", visible.len(), shown.len()));
    }
    out.push_str("\nConversation, oldest first:\n");
    for (i, m) in shown.iter().enumerate() {
        let when: String = m.created_at.to_string().chars().take(16).collect::<String>().replace('T', " ");
        out.push_str(&format!(
            "\n--- Message {} · {} · via {} · {} UTC ---\n{}\n",
            i + 1,
            direction_label(m),
            m.channel,
            when,
            cut(m.text.trim(), MESSAGE_CHARS)
        ));
    }
    let last_in = detail.messages.iter().rev().find(|m| m.direction == Direction::In && !m.internal);
    let language = last_in.and_then(|m| m.analysis.as_ref()).and_then(|a| a.language.clone());
    if let Some(a) = last_in.and_then(|m| m.analysis.as_ref()) {
        out.push_str(&format!(
            "\nAnalysis of the customer's last message: language {}, intent {} (confidence {:.2}), sentiment {}.\n",
            a.language.as_deref().unwrap_or("unknown"),
            a.intent,
            a.intent_confidence,
            a.sentiment
        ));
    }
    let language = language.or_else(|| detail.customer.language.clone());
    let instruction = match language.as_deref() {
        Some("de") => "Draft the agent's reply to the customer's last message, in German.",
        Some("en") => "Draft the agent's reply to the customer's last message, in English.",
        _ => "Draft the agent's reply to the customer's last message, in the customer's language (German or English).",
    };
    out.push('\n');
    out.push_str(instruction);
    Some(out)
}

/// A reply draft.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftResponse {
    /// The suggested reply; the agent reviews it before sending.
    pub draft: String,
    /// The model that wrote it (as configured).
    pub model: String,
}

/// Drafts a reply to the case's last customer message with the configured language model
/// (an OpenAI-compatible API). Nothing is stored or sent; the agent edits and sends it.
#[utoipa::path(post, path = "/api/v1/cases/{id}/draft", tag = "assist", params(("id" = i64, Path)),
    responses((status = 200, body = DraftResponse), (status = 404, description = "No such case"),
        (status = 409, description = "Reply drafts are off (assist.llm.base_url is not set) or the case has no message to answer"),
        (status = 503, description = "The language model failed, answered badly or not in time")),
    security(("bearer" = [])))]
pub async fn draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DraftResponse>, AppError> {
    let id = crate::api::path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    let client = match LlmClient::from_config(&state.config.assist.llm) {
        None => return Err(AppError::Conflict("reply drafts are off (assist.llm.base_url is not set)".into())),
        Some(Ok(client)) => client,
        Some(Err(e)) => return Err(AppError::Internal(format!("the language model client: {e}"))),
    };
    let detail = state.store.case_detail(id).await?;
    let prompt =
        conversation_prompt(&detail).ok_or_else(|| AppError::Conflict("the case has no message to answer".into()))?;
    match client.complete(SYSTEM_PROMPT, &prompt).await {
        Ok(draft) => Ok(Json(DraftResponse { draft, model: client.model().to_string() })),
        Err(error) => {
            tracing::warn!(%error, case_id = id, "No reply draft from the language model.");
            Err(AppError::Busy(format!("no reply draft: {error}")))
        }
    }
}

/// Checks a configured base URL: `http` or `https`, with a host.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} must be an http or https URL with a host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_joined_to_the_base_url() {
        for (base, want) in [
            ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions"),
            ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"),
            ("https://api.example.com", "https://api.example.com/chat/completions"),
            ("https://api.example.com/", "https://api.example.com/chat/completions"),
            (
                "https://example.com/openai/v1?api-version=2",
                "https://example.com/openai/v1/chat/completions?api-version=2",
            ),
        ] {
            assert_eq!(completions_url(base).unwrap().as_str(), want, "{base}");
        }
        for bad in ["ftp://example.com/v1", "not a url", "mailto:a@example.com"] {
            assert!(completions_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts_are_cut_on_character_boundaries() {
        assert_eq!(cut("Grüße", 10), "Grüße");
        assert_eq!(cut("Grüße", 3), "Grü […]");
    }
}
