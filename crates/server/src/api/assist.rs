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

/// The answer when every turn for text requests is taken.
pub fn busy() -> AppError {
    AppError::Busy("the assistant is busy; try again shortly".into())
}

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
    let _turn = state.assist.turn().await.ok_or_else(busy)?;
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
    #[schema(min_length = 1, max_length = 100000, pattern = r"\S")]
    pub text: String,
    /// `de` or `en`; detected from the text when absent.
    #[serde(default)]
    #[schema(pattern = "^(de|en)$")]
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
    required_text("text", &req.text, MAX_TEXT_CHARS)?;
    let language = match req.language.as_deref().map(str::trim).map(str::to_ascii_lowercase) {
        Some(l) if l == "de" || l == "en" => l,
        Some(_) => return Err(AppError::invalid("language", "must be de or en")),
        None => match kontor_assist::language::detect(&req.text) {
            Some((kontor_assist::language::Language::En, _)) => "en".into(),
            _ => "de".into(),
        },
    };
    let _turn = state.assist.turn().await.ok_or_else(busy)?;
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

/// An agent's word on a message's intent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisPatch {
    /// One of the assistant's intents (`GET /api/v1/assist/intents`).
    pub intent: String,
}

/// Sets or corrects the intent of an analysed customer message. The message becomes a
/// training example (a retraining job follows, and its model is used once it is stored);
/// if it is the case's first customer message, the case takes the intent too.
#[utoipa::path(patch, path = "/api/v1/messages/{id}/analysis", tag = "assist", params(("id" = i64, Path)),
    request_body = AnalysisPatch,
    responses((status = 200, body = MessageAnalysis), (status = 404, description = "No such message"),
               (status = 409, description = "Not analysed yet"), (status = 422, description = "Unknown intent, or not a customer's message")),
    security(("bearer" = [])))]
pub async fn patch_analysis(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    ApiJson(req): ApiJson<AnalysisPatch>,
) -> Result<Json<MessageAnalysis>, AppError> {
    let id = super::path_id(&id, "message")?;
    let message = state.app.message(&caller.actor(), id).await?;
    let intent = req.intent.trim().to_string();
    if !known_intents(&state).await.contains(&intent) {
        return Err(AppError::invalid("intent", "is not one of the assistant's intents (GET /api/v1/assist/intents)"));
    }
    let input = kontor_assist::analysis::model_input(message.subject.as_deref(), &message.text);
    let done = state.store.correct_intent(id, intent, input, caller.user_id.map(|u| u.get())).await?;
    state.jobs_ready.notify_one();
    Ok(Json(done.analysis))
}

/// The intents the assistant knows: the built-in taxonomy and any the model in use has.
pub async fn known_intents(state: &AppState) -> Vec<String> {
    let mut all: Vec<String> = kontor_assist::analysis::INTENTS.iter().map(|s| s.to_string()).collect();
    if let Ok(a) = state.assist.analyser(&state.store).await {
        all.extend(a.model().labels().iter().cloned());
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|i| seen.insert(i.clone()));
    all
}

/// The automation level of every intent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentSettings {
    pub intents: Vec<kontor_store::assist::IntentSetting>,
}

/// Every intent the assistant knows with its automation level (`off`, `suggest`, `auto`) and
/// the canned response mapped to it.
#[utoipa::path(get, path = "/api/v1/assist/intents", tag = "assist",
    responses((status = 200, body = IntentSettings)), security(("bearer" = [])))]
pub async fn get_intents(State(state): State<AppState>, _caller: Caller) -> Result<Json<IntentSettings>, AppError> {
    Ok(Json(IntentSettings { intents: intent_settings(&state).await? }))
}

async fn intent_settings(state: &AppState) -> Result<Vec<kontor_store::assist::IntentSetting>, AppError> {
    let stored = state.store.intent_settings().await?;
    let mut all: Vec<kontor_store::assist::IntentSetting> = known_intents(state)
        .await
        .into_iter()
        .map(|intent| {
            stored.iter().find(|s| s.intent == intent).cloned().unwrap_or(kontor_store::assist::IntentSetting {
                intent,
                level: "off".into(),
                canned_id: None,
            })
        })
        .collect();
    // Settings of intents a newer model no longer has stay visible.
    all.extend(stored.into_iter().filter(|s| !kontor_assist::analysis::INTENTS.contains(&s.intent.as_str())));
    let mut seen = std::collections::HashSet::new();
    all.retain(|s| seen.insert(s.intent.clone()));
    Ok(all)
}

/// Sets the automation level of the listed intents (admins only): `suggest` puts the canned
/// response into the composer, `auto` sends it (marked as automatic, with how to reach a
/// person, never to an auto-submitted mail, at most once per customer within
/// `assist.auto_answer_quiet_hours`).
#[utoipa::path(put, path = "/api/v1/assist/intents", tag = "assist", request_body = IntentSettings,
    responses((status = 200, body = IntentSettings), (status = 422, description = "Unknown intent or level, or a level without a canned response")),
    security(("bearer" = [])))]
pub async fn put_intents(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<IntentSettings>,
) -> Result<Json<IntentSettings>, AppError> {
    caller.require_admin()?;
    if req.intents.len() > 500 {
        return Err(AppError::invalid("intents", "at most 500"));
    }
    let known = known_intents(&state).await;
    let mut settings = req.intents;
    for s in settings.iter_mut() {
        s.intent = s.intent.trim().to_string();
        s.level = s.level.trim().to_ascii_lowercase();
        if !known.contains(&s.intent) {
            return Err(AppError::invalid("intent", format!("{:?} is not one of the assistant's intents", s.intent)));
        }
    }
    state.store.set_intent_settings(settings).await?;
    Ok(Json(IntentSettings { intents: intent_settings(&state).await? }))
}
