//! The assistant's rules (`/api/v1/rules`), their dry run, and the business hours that
//! rules may ask about (`/api/v1/assist/business-hours`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kontor_assist::rules::{matches, BusinessHours, RuleInput as Input};
use kontor_core::{Rule, RuleAction, RuleConditions};
use kontor_store::rules::RuleInput;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::path_id;
use crate::assist::{business_hours, BUSINESS_HOURS};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// How many of the newest customer messages a dry run looks at.
pub const DRY_RUN_MESSAGES: i64 = 1000;

/// A rule as written by an admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Where it runs among the rules (lower first); default: last.
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub conditions: RuleConditions,
    #[schema(min_items = 1, max_items = 20)]
    pub actions: Vec<RuleAction>,
}

fn yes() -> bool {
    true
}

fn input(req: RuleRequest) -> Result<RuleInput, AppError> {
    kontor_assist::rules::validate(&req.conditions).map_err(|(field, message)| AppError::invalid(field, message))?;
    Ok(RuleInput {
        name: req.name,
        position: req.position,
        enabled: req.enabled,
        conditions: req.conditions,
        actions: req.actions,
    })
}

/// The rules, in the order they run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub items: Vec<Rule>,
}

/// Every rule, in the order they run.
#[utoipa::path(get, path = "/api/v1/rules", tag = "assist", responses((status = 200, body = RuleList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<RuleList>, AppError> {
    Ok(Json(RuleList { items: state.store.rules().await? }))
}

/// Adds a rule (admins only).
#[utoipa::path(post, path = "/api/v1/rules", tag = "assist", request_body = RuleRequest,
    responses((status = 201, body = Rule), (status = 422, description = "Invalid field")), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RuleRequest>,
) -> Result<(StatusCode, Json<Rule>), AppError> {
    caller.require_admin()?;
    Ok((StatusCode::CREATED, Json(state.store.create_rule(input(req)?).await?)))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "assist", params(("id" = i64, Path)),
    responses((status = 200, body = Rule), (status = 404, description = "No such rule")), security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Rule>, AppError> {
    Ok(Json(state.store.rule(path_id(&id, "rule")?).await?))
}

/// Replaces a rule (admins only).
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "assist", params(("id" = i64, Path)), request_body = RuleRequest,
    responses((status = 200, body = Rule), (status = 404, description = "No such rule"), (status = 422, description = "Invalid field")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RuleRequest>,
) -> Result<Json<Rule>, AppError> {
    caller.require_admin()?;
    let id = path_id(&id, "rule")?;
    Ok(Json(state.store.update_rule(id, input(req)?).await?))
}

/// Deletes a rule (admins only).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "assist", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such rule")), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state.store.delete_rule(path_id(&id, "rule")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message the rule would have acted on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunMatch {
    pub message_id: i64,
    pub case_id: i64,
    pub channel: kontor_core::Channel,
    pub intent: String,
    pub sentiment: String,
    pub received_at: kontor_core::Timestamp,
    /// What the rule would have done.
    pub actions: Vec<RuleAction>,
}

/// What a rule would have done to the newest customer messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    pub rule_id: i64,
    /// Customer messages looked at (the newest, up to 1,000).
    pub examined: usize,
    /// Of those, not analysed yet (not judged).
    pub not_analysed: usize,
    pub matched: usize,
    /// The messages it matched, newest first (up to 200 listed).
    pub matches: Vec<DryRunMatch>,
}

/// Shows what the rule would have done to the last 1,000 customer messages, changing nothing
/// (a disabled rule too: that is how one tries a rule before enabling it). Admins only: it
/// looks at every team's messages.
#[utoipa::path(post, path = "/api/v1/rules/{id}/dry-run", tag = "assist", params(("id" = i64, Path)),
    responses((status = 200, body = DryRun), (status = 404, description = "No such rule")), security(("bearer" = [])))]
pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DryRun>, AppError> {
    // It looks at every team's messages: an admin's tool.
    caller.require_admin()?;
    let _turn = state.assist.turn().await.ok_or_else(super::assist::busy)?;
    let rule = state.store.rule(path_id(&id, "rule")?).await?;
    let recent = state.store.recent_inbound(DRY_RUN_MESSAGES).await?;
    let hours = business_hours(&state).await?;
    let run = tokio::task::spawn_blocking(move || {
        let mut out =
            DryRun { rule_id: rule.id, examined: recent.len(), not_analysed: 0, matched: 0, matches: Vec::new() };
        for (m, analysis, language) in &recent {
            let Some(a) = analysis else {
                out.not_analysed += 1;
                continue;
            };
            let input = Input {
                channel: m.channel,
                subject: m.subject.as_deref(),
                text: &m.text,
                analysis: a,
                customer_language: language.as_deref(),
                at: chrono::DateTime::from_timestamp_micros(m.created_at.as_micros()).unwrap_or_default(),
            };
            if matches(&rule.conditions, &input, hours.as_ref()) {
                out.matched += 1;
                if out.matches.len() < 200 {
                    out.matches.push(DryRunMatch {
                        message_id: m.id,
                        case_id: m.case_id,
                        channel: m.channel,
                        intent: a.intent.clone(),
                        sentiment: a.sentiment.clone(),
                        received_at: m.created_at,
                        actions: rule.actions.clone(),
                    });
                }
            }
        }
        out
    })
    .await
    .map_err(|e| AppError::Internal(format!("the dry run stopped: {e}")))?;
    Ok(Json(run))
}

/// The business hours (`null` when none are set: then a business-hours condition never holds).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursSetting {
    pub business_hours: Option<BusinessHours>,
}

/// The weekly business hours rules may ask about.
#[utoipa::path(get, path = "/api/v1/assist/business-hours", tag = "assist",
    responses((status = 200, body = BusinessHoursSetting)), security(("bearer" = [])))]
pub async fn get_hours(State(state): State<AppState>, _caller: Caller) -> Result<Json<BusinessHoursSetting>, AppError> {
    Ok(Json(BusinessHoursSetting { business_hours: business_hours(&state).await? }))
}

/// Sets the weekly business hours (admins only): a time zone and per weekday (`mon` … `sun`)
/// a list of `["08:00", "18:00"]` spans.
#[utoipa::path(put, path = "/api/v1/assist/business-hours", tag = "assist", request_body = BusinessHoursSetting,
    responses((status = 200, body = BusinessHoursSetting), (status = 422, description = "Unknown time zone or weekday, or a span that ends before it starts")),
    security(("bearer" = [])))]
pub async fn put_hours(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<BusinessHoursSetting>,
) -> Result<Json<BusinessHoursSetting>, AppError> {
    caller.require_admin()?;
    let value = match &req.business_hours {
        Some(h) => {
            h.validate().map_err(|e| AppError::invalid("business_hours", e))?;
            serde_json::to_string(h).map_err(|e| AppError::Internal(e.to_string()))?
        }
        None => "null".into(),
    };
    state.store.set_setting(BUSINESS_HOURS, &value).await?;
    Ok(Json(req))
}
