//! The JSON REST API under `/api/v1`.

pub mod admin;
pub mod approvals;
pub mod assist;
pub mod attachments;
pub mod cases;
pub mod contacts;
pub mod customers;
pub mod events;
pub mod inbound;
pub mod inbox;
pub mod rules;
pub mod search;
pub mod tokens;

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::error::AppError;
use crate::AppState;

/// Every API route.
pub fn routes() -> Router<AppState> {
    Router::new()
        // Checks its own limits: max_body_bytes for JSON, max_attachment_bytes per file part.
        .route("/api/v1/inbound", post(inbound::inbound).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/api/v1/cases", get(cases::list))
        .route("/api/v1/cases/{id}", get(cases::detail).patch(cases::patch))
        .route("/api/v1/cases/{id}/notes", post(cases::note))
        .route("/api/v1/cases/{id}/replies", post(cases::reply))
        .route("/api/v1/cases/{id}/presence", post(events::presence))
        .route("/api/v1/customers", get(customers::list))
        .route("/api/v1/customers/{id}", get(customers::detail).patch(customers::patch))
        .route("/api/v1/customers/{id}/identities", post(customers::add_identity))
        .route("/api/v1/customers/{id}/merge", post(customers::merge))
        .route("/api/v1/customers/{id}/contacts", post(contacts::record))
        .route("/api/v1/attachments/{id}", get(attachments::download))
        .route("/api/v1/messages/{id}/raw", get(attachments::raw_source))
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/stream", get(events::stream))
        .route("/api/v1/search", get(search::search))
        .route("/api/v1/assist/analyze", post(assist::analyze))
        .route("/api/v1/assist/style", post(assist::style))
        .route("/api/v1/cases/{id}/draft", post(crate::assist::llm::draft))
        .route("/api/v1/messages/{id}/analysis", axum::routing::patch(assist::patch_analysis))
        .route("/api/v1/assist/intents", get(assist::get_intents).put(assist::put_intents))
        .route("/api/v1/assist/business-hours", get(rules::get_hours).put(rules::put_hours))
        .route("/api/v1/rules", get(rules::list).post(rules::create))
        .route("/api/v1/rules/{id}", get(rules::detail).put(rules::update).delete(rules::delete))
        .route("/api/v1/rules/{id}/dry-run", post(rules::dry_run))
        .route("/api/v1/approvals", get(approvals::list))
        .route("/api/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/api/v1/approvals/{id}/reject", post(approvals::reject))
        .route("/api/v1/cases/{id}/merge", post(inbox::merge))
        .route("/api/v1/cases/{id}/related", get(inbox::related))
        .route("/api/v1/canned", get(inbox::list_canned).post(inbox::create_canned))
        .route("/api/v1/canned/{id}", axum::routing::put(inbox::update_canned).delete(inbox::delete_canned))
        .route("/api/v1/settings", get(inbox::get_settings).put(inbox::put_settings))
        .route("/api/v1/teams", get(admin::list_teams).post(admin::create_team))
        .route("/api/v1/teams/{id}", axum::routing::patch(inbox::rename_team).delete(inbox::delete_team))
        .route("/api/v1/teams/{id}/members", get(inbox::members).post(inbox::add_member))
        .route("/api/v1/teams/{id}/members/{user_id}", delete(inbox::remove_member))
        .route("/api/v1/users", get(admin::list_users).post(inbox::create_user))
        .route("/api/v1/users/{id}", axum::routing::patch(inbox::update_user))
        .route("/api/v1/jobs", get(admin::job_stats))
        .route("/api/v1/tokens", get(tokens::list))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
}

/// Query parameters as a map; a query that cannot be decoded is a 400.
pub type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Unwraps query parameters.
pub fn params(q: Params) -> Result<HashMap<String, String>, AppError> {
    q.map(|Query(m)| m).map_err(|e| AppError::BadRequest(format!("query string: {e}")))
}

/// An id from the path: anything that is not an id of ours cannot exist (404).
pub fn path_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| AppError::NotFound(format!("{what} {raw} not found")))
}

/// An optional integer query parameter (422 naming it if it is not one).
pub fn int_param(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, AppError> {
    match p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| AppError::invalid(name, "must be an integer")),
    }
}

/// An optional integer query parameter that must lie in `range` (422 naming it and the
/// range if it does not).
pub fn int_param_in(
    p: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, AppError> {
    match int_param(p, name)? {
        Some(v) if !range.contains(&v) => {
            Err(AppError::invalid(name, format!("must be between {} and {}", range.start(), range.end())))
        }
        v => Ok(v),
    }
}

/// A text field that must hold something other than whitespace, up to `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    check_len(field, value, max)
}

/// Checks the length of a text field.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.chars().count() > max {
        return Err(AppError::invalid(field, format!("must be at most {max} characters")));
    }
    Ok(())
}
