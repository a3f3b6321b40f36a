//! `GET /api/v1/search`.

use axum::extract::State;
use axum::Json;
use kontor_store::SearchResults;

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
    Ok(Json(search_visible(&state, &caller, query, limit).await?))
}

/// A query that is a phone number (any format) searches for its E.164 digits, which is how
/// customers' numbers are stored; other queries stay as they are.
pub fn normalise_query(query: String, region: &str) -> String {
    let digits = query.chars().filter(char::is_ascii_digit).count();
    let phone_like = digits >= 6 && query.chars().all(|c| c.is_ascii_digit() || " +-/()".contains(c));
    match kontor_core::normalise_identity(kontor_core::IdentityKind::Phone, &query, region) {
        Ok(e164) if phone_like => e164.trim_start_matches('+').to_string(),
        _ => query,
    }
}

/// Most hits per list a search answers with.
pub const MAX_LIMIT: i64 = 100;

/// Search with the caller's visibility applied; asks for more hits than shown so that hidden
/// ones do not leave the page empty. `limit` is clamped to 1..=[`MAX_LIMIT`].
pub async fn search_visible(
    state: &AppState,
    caller: &Caller,
    query: String,
    limit: i64,
) -> Result<SearchResults, AppError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let fetch = if caller.restricted_user().is_some() { limit.saturating_mul(4).min(MAX_LIMIT) } else { limit };
    let mut results = visible_results(state, caller, state.store.search(query, fetch).await?).await;
    let shown = usize::try_from(limit).unwrap_or(0);
    results.messages.truncate(shown);
    results.customers.truncate(shown);
    Ok(results)
}

/// Drops message hits in cases the caller may not see.
pub async fn visible_results(state: &AppState, caller: &Caller, mut results: SearchResults) -> SearchResults {
    let seen = crate::auth::Visibility::for_caller(caller);
    let mut kept = Vec::with_capacity(results.messages.len());
    for hit in std::mem::take(&mut results.messages) {
        if seen.can_see(state, Some(hit.case_id)).await {
            kept.push(hit);
        }
    }
    results.messages = kept;
    let mut customers = Vec::with_capacity(results.customers.len());
    for hit in std::mem::take(&mut results.customers) {
        if seen.can_see_customer(state, hit.customer_id).await {
            customers.push(hit);
        }
    }
    results.customers = customers;
    results
}
