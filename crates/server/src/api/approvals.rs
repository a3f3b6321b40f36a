//! Four-eyes approvals of held replies (`/api/v1/approvals`).

use axum::extract::{Path, State};
use axum::Json;
use kontor_store::approvals::{Approval, Decision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_len, path_id};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Replies waiting for approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    pub items: Vec<Approval>,
}

/// Replies held for four-eyes approval in the cases the caller may see, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "assist", responses((status = 200, body = ApprovalList)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<ApprovalList>, AppError> {
    Ok(Json(ApprovalList { items: state.store.pending_approvals(caller.restricted_user()).await? }))
}

/// A decision's comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    decision: Decision,
    req: DecisionRequest,
) -> Result<Json<Approval>, AppError> {
    let id = path_id(&id, "approval")?;
    let Some(user) = caller.user_id else {
        return Err(AppError::Refused("four eyes: only a signed-in staff user can approve or reject a reply".into()));
    };
    let approval = state.store.approval(id).await?;
    caller.ensure_visible(&state, approval.case_id).await?;
    let comment = req.comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    if let Some(c) = &comment {
        check_len("comment", c, 2000)?;
    }
    if decision == Decision::Reject && comment.is_none() {
        return Err(AppError::invalid("comment", "say why the reply is rejected"));
    }
    let decided = state.store.decide_approval(id, user, decision, comment).await?;
    state.jobs_ready.notify_one();
    Ok(Json(decided))
}

/// Approves a held reply (body `{}` or with a `comment`): it is queued for delivery. Not by
/// its author.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "assist", params(("id" = i64, Path)),
    request_body = DecisionRequest,
    responses((status = 200, body = Approval), (status = 403, description = "The author, or not a staff user"),
              (status = 404, description = "No such approval"), (status = 409, description = "Already decided")),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<Approval>, AppError> {
    decide(state, caller, id, Decision::Approve, req).await
}

/// Rejects a held reply with a comment: it is never sent. Not by its author.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reject", tag = "assist", params(("id" = i64, Path)),
    request_body = DecisionRequest,
    responses((status = 200, body = Approval), (status = 403, description = "The author, or not a staff user"),
              (status = 404, description = "No such approval"), (status = 409, description = "Already decided"),
              (status = 422, description = "No comment")),
    security(("bearer" = [])))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<Approval>, AppError> {
    decide(state, caller, id, Decision::Reject, req).await
}
