//! The digital assistant's API: analysis and style check of any text
//! (`POST /api/v1/assist/analyze`, `POST /api/v1/assist/style`).

use axum::extract::State;
use axum::Json;
use kontor_core::MessageAnalysis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_len, required_text};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Longest text the assistant takes, in characters.
pub const MAX_TEXT_CHARS: usize = 100_000;

/// A text to analyse.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    #[schema(min_length = 1, max_length = 100000, pattern = r"\S")]
    pub text: String,
    /// A subject read with the text (as with an e-mail).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub subject: Option<String>,
}

/// Analyses a text as an inbound message would be: language, intent (with the model's next
/// best guesses), extracted data with spans in characters, and sentiment.
#[utoipa::path(post, path = "/api/v1/assist/analyze", tag = "assist", request_body = AnalyzeRequest,
    responses((status = 200, body = MessageAnalysis), (status = 422, description = "text missing, empty or too long")),
    security(("bearer" = [])))]
pub async fn analyze(
    State(state): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<AnalyzeRequest>,
) -> Result<Json<MessageAnalysis>, AppError> {
    required_text("text", &req.text, MAX_TEXT_CHARS)?;
    if let Some(s) = &req.subject {
        check_len("subject", s, 1000)?;
    }
    let analyser = state
        .assist
        .analyser(&state.store)
        .await
        .map_err(|e| AppError::Busy(format!("the intent model is not ready: {e}")))?;
    let analysis = tokio::task::spawn_blocking(move || {
        analyser.analyse(
            req.subject.as_deref(),
            &req.text,
            chrono::Utc::now().date_naive(),
            kontor_core::Timestamp::now(),
        )
    })
    .await
    .map_err(|e| AppError::Internal(format!("the analysis stopped: {e}")))?;
    Ok(Json(analysis))
}

/// A reply to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StyleRequest {
    #[schema(min_length = 1, max_length = 100000)]
    pub text: String,
    /// `de` or `en`; detected from the text when absent.
    #[serde(default)]
    pub language: Option<String>,
}

/// One thing the style check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct StyleFinding {
    /// Start and end (exclusive) in Unicode characters.
    pub start: usize,
    pub end: usize,
    /// The words found.
    pub phrase: String,
    pub reason: String,
    pub suggestion: String,
    /// `phrase`, `passive` or `long_sentence`.
    pub kind: String,
}

/// What the style check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct StyleReport {
    /// The language the text was checked in.
    pub language: String,
    pub findings: Vec<StyleFinding>,
}

/// Checks a reply for outdated or bureaucratic phrases, passive constructions and very long
/// sentences; each finding has its span, a reason and a modern suggestion.
#[utoipa::path(post, path = "/api/v1/assist/style", tag = "assist", request_body = StyleRequest,
    responses((status = 200, body = StyleReport), (status = 422, description = "text too long or language not de/en")),
    security(("bearer" = [])))]
pub async fn style(
    State(state): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<StyleRequest>,
) -> Result<Json<StyleReport>, AppError> {
    check_len("text", &req.text, MAX_TEXT_CHARS)?;
    let language = match req.language.as_deref().map(str::trim).map(str::to_ascii_lowercase) {
        Some(l) if l == "de" || l == "en" => l,
        Some(_) => return Err(AppError::invalid("language", "must be de or en")),
        None => match kontor_assist::language::detect(&req.text) {
            Some((kontor_assist::language::Language::En, _)) => "en".into(),
            _ => "de".into(),
        },
    };
    let text = req.text;
    let assist = state.assist.clone();
    let lang = language.clone();
    let found = tokio::task::spawn_blocking(move || assist.style().check(&text, &lang))
        .await
        .map_err(|e| AppError::Internal(format!("the style check stopped: {e}")))?;
    let findings = found
        .into_iter()
        .map(|f| StyleFinding {
            start: f.start,
            end: f.end,
            phrase: f.phrase,
            reason: f.reason,
            suggestion: f.suggestion,
            kind: f.kind.to_string(),
        })
        .collect();
    Ok(Json(StyleReport { language, findings }))
}
