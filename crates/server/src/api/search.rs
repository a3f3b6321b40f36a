//! `GET /api/v1/search`.

use axum::extract::State;
use axum::Json;
use kontor_store::search::SearchResults;

use super::{int_param_in, params, Params};
use crate::auth::Caller;
use crate::error::AppError;
use crate::AppState;

/// Ranked full-text search over messages and customers, with highlighted snippets.
#[utoipa::path(get, path = "/api/v1/search", tag = "search",
    params(("q" = String, Query, description = "words; each must match (as a prefix)", min_length = 1, max_length = 500, pattern = r"\S"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "hits per list, 1..=100, default 20")),
    responses((status = 200, body = SearchResults), (status = 422, description = "q missing or limit out of range")),
    security(("bearer" = [])))]
pub async fn search(State(state): State<AppState>, caller: Caller, q: Params) -> Result<Json<SearchResults>, AppError> {
    let p = params(q)?;
    let query = p
        .get("q")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::invalid("q", "is required"))?;
    super::check_len("q", &query, 500)?;
    // A query that is a phone number (any format) searches for its E.164 form, which is how
    // customers' numbers are stored.
    let digits = query.chars().filter(char::is_ascii_digit).count();
    let query =
        match kontor_core::normalise_identity(kontor_core::IdentityKind::Phone, &query, &state.config.default_region) {
            Ok(e164) if digits >= 6 && query.chars().all(|c| c.is_ascii_digit() || " +-/()".contains(c)) => {
                e164.trim_start_matches('+').to_string()
            }
            _ => query,
        };
    let limit = int_param_in(&p, "limit", 1..=MAX_LIMIT)?.unwrap_or(20);
    Ok(Json(state.app.search(&caller.actor(), query, limit).await?))
}

/// Most hits per list a search answers with.
pub const MAX_LIMIT: i64 = kontor_app::MAX_SEARCH_LIMIT;
