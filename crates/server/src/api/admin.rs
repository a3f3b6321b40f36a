//! Teams, staff users and the job queue.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kontor_core::{StaffUser, Team};
use kontor_store::jobs::QueueStats;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// All teams.
#[utoipa::path(get, path = "/api/v1/teams", tag = "admin", responses((status = 200, body = Vec<Team>)), security(("bearer" = [])))]
pub async fn list_teams(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<Team>>, AppError> {
    Ok(Json(state.store.list_teams().await?))
}

/// A new team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamRequest {
    pub name: String,
}

/// Creates a team (admin).
#[utoipa::path(post, path = "/api/v1/teams", tag = "admin", request_body = TeamRequest,
    responses((status = 201, body = Team), (status = 403, description = "Admins only"), (status = 409, description = "Name taken")),
    security(("bearer" = [])))]
pub async fn create_team(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TeamRequest>,
) -> Result<Response, AppError> {
    caller.require_admin()?;
    let name = req.name.trim().to_string();
    if name.is_empty() {
        return Err(AppError::invalid("name", "must not be empty"));
    }
    super::check_len("name", &name, 100)?;
    Ok((StatusCode::CREATED, Json(state.store.create_team(name).await?)).into_response())
}

/// All staff users (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", responses((status = 200, body = Vec<StaffUser>)), security(("bearer" = [])))]
pub async fn list_users(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<StaffUser>>, AppError> {
    caller.require_admin()?;
    Ok(Json(state.store.list_users().await?))
}

/// Job counts by status.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "admin", responses((status = 200, body = QueueStats)), security(("bearer" = [])))]
pub async fn job_stats(State(state): State<AppState>, _caller: Caller) -> Result<Json<QueueStats>, AppError> {
    Ok(Json(state.store.queue_stats().await?))
}
