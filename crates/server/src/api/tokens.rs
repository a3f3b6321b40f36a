//! API tokens (admin): list them and revoke them. Tokens are created with
//! `kontor token create`; a secret is shown only then and never listed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kontor_store::staff::ApiToken;

use super::path_id;
use crate::auth::Caller;
use crate::error::AppError;
use crate::AppState;

/// Every API token, revoked ones included (admin); never the secret or its hash.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses((status = 200, body = Vec<ApiToken>), (status = 403, description = "Admins only")),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ApiToken>>, AppError> {
    caller.require_admin()?;
    Ok(Json(state.store.list_tokens().await?))
}

/// Revokes an API token (admin): it stops working at once on every node, and event
/// streams opened with it end. Revoking a revoked token again changes nothing.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked"), (status = 403, description = "Admins only"),
        (status = 404, description = "No such token")),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    let token = state.store.revoke_token(path_id(&id, "token")?).await?;
    // This node forgets it before answering; the others learn from the `token.revoked` event.
    state.tokens.evict(token.id);
    Ok(StatusCode::NO_CONTENT)
}
