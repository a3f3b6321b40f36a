//! What the agent inbox needs beyond cases: merging, related cases, canned responses,
//! settings, team members and staff users.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kontor_core::{CannedResponse, Case, CaseId, Role, StaffUser, TeamId, UserId};
use kontor_store::cases::RelatedCase;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_len, params, path_id, required_text, Params};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Which case to merge into this one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseMergeRequest {
    #[schema(minimum = 1)]
    pub source_id: i64,
}

/// Moves every message of `source_id` into this case (same customer), closes the source and
/// records `case.merged` on both.
#[utoipa::path(post, path = "/api/v1/cases/{id}/merge", tag = "cases", params(("id" = i64, Path)),
    request_body = CaseMergeRequest, responses((status = 200, body = Case)), security(("bearer" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CaseMergeRequest>,
) -> Result<Json<Case>, AppError> {
    let id = path_id(&id, "case")?;
    caller.ensure_visible(&state, id).await?;
    // The store checks both cases again in the merge's transaction.
    let (target, source) = (CaseId(id), CaseId(req.source_id));
    Ok(Json(state.store.merge_cases_as(target, source, caller.user_id, caller.restricted_user()).await?))
}

/// Other open cases of the same customer from the last 24 hours with a similar request, or
/// opened on another channel: probably the same matter.
#[utoipa::path(get, path = "/api/v1/cases/{id}/related", tag = "cases", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<RelatedCase>)), security(("bearer" = [])))]
pub async fn related(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RelatedCase>>, AppError> {
    let id = path_id(&id, "case")?;
    Ok(Json(state.app.related(&caller.actor(), id).await?))
}

/// A canned response.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: String,
    /// Typed as `::shortcut` in the composer; letters, digits, `-` and `_`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub shortcut: Option<String>,
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    pub body: String,
    /// `de`, `en`, or absent for both.
    #[schema(pattern = "^(de|en)$")]
    pub language: Option<String>,
}

fn validate_canned(req: &CannedRequest) -> Result<(), AppError> {
    required_text("title", &req.title, 200)?;
    required_text("body", &req.body, 20_000)?;
    if let Some(s) = &req.shortcut {
        if s.is_empty() || s.len() > 32 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(AppError::invalid("shortcut", "1 to 32 letters, digits, - or _"));
        }
    }
    if req.language.as_deref().is_some_and(|l| l != "de" && l != "en") {
        return Err(AppError::invalid("language", "must be de or en"));
    }
    Ok(())
}

/// Canned responses, optionally only those for a language (plus language-neutral ones).
#[utoipa::path(get, path = "/api/v1/canned", tag = "admin", params(("language" = Option<String>, Query)),
    responses((status = 200, body = Vec<CannedResponse>)), security(("bearer" = [])))]
pub async fn list_canned(
    State(state): State<AppState>,
    _caller: Caller,
    q: Params,
) -> Result<Json<Vec<CannedResponse>>, AppError> {
    let p = params(q)?;
    let language = p.get("language").map(String::as_str).filter(|l| !l.is_empty());
    Ok(Json(state.store.list_canned(language).await?))
}

/// Creates a canned response (admin).
#[utoipa::path(post, path = "/api/v1/canned", tag = "admin", request_body = CannedRequest,
    responses((status = 201, body = CannedResponse)), security(("bearer" = [])))]
pub async fn create_canned(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CannedRequest>,
) -> Result<Response, AppError> {
    caller.require_admin()?;
    validate_canned(&req)?;
    let c = state.store.create_canned(req.title.trim().into(), req.shortcut, req.body, req.language).await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

/// Replaces a canned response (admin).
#[utoipa::path(put, path = "/api/v1/canned/{id}", tag = "admin", params(("id" = i64, Path)), request_body = CannedRequest,
    responses((status = 200, body = CannedResponse)), security(("bearer" = [])))]
pub async fn update_canned(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CannedRequest>,
) -> Result<Json<CannedResponse>, AppError> {
    caller.require_admin()?;
    let id = path_id(&id, "canned response")?;
    validate_canned(&req)?;
    Ok(Json(state.store.update_canned(id, req.title.trim().into(), req.shortcut, req.body, req.language).await?))
}

/// Deletes a canned response (admin).
#[utoipa::path(delete, path = "/api/v1/canned/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete_canned(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state.store.delete_canned(path_id(&id, "canned response")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Settings of the inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxSettings {
    /// Only a case's assignee may reply (unassigned cases: anyone).
    pub reply_only_assignee: bool,
}

/// The inbox settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "admin", responses((status = 200, body = InboxSettings)), security(("bearer" = [])))]
pub async fn get_settings(State(state): State<AppState>, _caller: Caller) -> Result<Json<InboxSettings>, AppError> {
    Ok(Json(InboxSettings { reply_only_assignee: state.store.reply_only_assignee().await? }))
}

/// Changes the inbox settings (admin).
#[utoipa::path(put, path = "/api/v1/settings", tag = "admin", request_body = InboxSettings,
    responses((status = 200, body = InboxSettings)), security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<InboxSettings>,
) -> Result<Json<InboxSettings>, AppError> {
    caller.require_admin()?;
    state.store.set_reply_only_assignee(req.reply_only_assignee).await?;
    Ok(Json(req))
}

/// A team member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
}

/// The members of a team.
#[utoipa::path(get, path = "/api/v1/teams/{id}/members", tag = "admin", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<StaffUser>)), security(("bearer" = [])))]
pub async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<StaffUser>>, AppError> {
    caller.require_admin()?;
    Ok(Json(state.store.team_members(path_id(&id, "team")?).await?))
}

/// Adds a staff user to a team (admin).
#[utoipa::path(post, path = "/api/v1/teams/{id}/members", tag = "admin", params(("id" = i64, Path)), request_body = MemberRequest,
    responses((status = 204, description = "Added")), security(("bearer" = [])))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MemberRequest>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state.store.add_team_member(TeamId(path_id(&id, "team")?), UserId(req.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a staff user from a team (admin).
#[utoipa::path(delete, path = "/api/v1/teams/{id}/members/{user_id}", tag = "admin", params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 204, description = "Removed")), security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state.store.remove_team_member(TeamId(path_id(&id, "team")?), UserId(path_id(&user, "user")?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The roles a staff user can have (`ingest` is a role for API tokens only: 422).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents what the users API accepts; requests carry a `Role`
pub enum StaffRole {
    Admin,
    Agent,
}

/// A new staff user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    #[schema(format = "email")]
    pub email: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// `admin` or `agent`; the store refuses `ingest` (422).
    #[schema(value_type = StaffRole)]
    pub role: Role,
    #[schema(min_length = 8)]
    pub password: String,
}

/// Creates a staff user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = UserRequest,
    responses((status = 201, body = StaffUser)), security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UserRequest>,
) -> Result<Response, AppError> {
    caller.require_admin()?;
    check_len("name", &req.name, 200)?;
    let u = state.store.create_user(req.email, req.name, req.role, req.password).await?;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

/// Changes to a staff user; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// `admin` or `agent`; the store refuses `ingest` (422).
    #[schema(value_type = Option<StaffRole>)]
    pub role: Option<Role>,
    /// False deactivates: no sign-in, sessions end.
    pub active: Option<bool>,
}

/// Changes a staff user's name, role or activity (admin); one active admin always remains.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "admin", params(("id" = i64, Path)), request_body = UserPatch,
    responses((status = 200, body = StaffUser), (status = 409, description = "Would leave no active admin")),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UserPatch>,
) -> Result<Json<StaffUser>, AppError> {
    caller.require_admin()?;
    if let Some(n) = &req.name {
        check_len("name", n, 200)?;
    }
    Ok(Json(state.store.update_user(path_id(&id, "user")?, req.name, req.role, req.active).await?))
}

/// A team's new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// Renames a team (admin).
#[utoipa::path(patch, path = "/api/v1/teams/{id}", tag = "admin", params(("id" = i64, Path)), request_body = TeamPatch,
    responses((status = 200, body = kontor_core::Team)), security(("bearer" = [])))]
pub async fn rename_team(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TeamPatch>,
) -> Result<Json<kontor_core::Team>, AppError> {
    caller.require_admin()?;
    check_len("name", &req.name, 100)?;
    Ok(Json(state.store.rename_team(path_id(&id, "team")?, req.name).await?))
}

/// Deletes a team (admin); its cases keep going without a team.
#[utoipa::path(delete, path = "/api/v1/teams/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete_team(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state.store.delete_team(path_id(&id, "team")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
