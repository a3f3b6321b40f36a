//! Customers: list, detail, change, identities, merge.

use axum::extract::{Path, State};
use axum::Json;
use kontor_core::{normalise_identity, Customer, CustomerId, IdentityKind};
use kontor_store::{customers::CustomerPatch, Page};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{check_len, int_param, params, path_id, Params};
use crate::auth::Caller;
use crate::error::{ApiJson, AppError};
use crate::AppState;

/// Lists customers, newest first.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers",
    params(("cursor" = Option<i64>, Query),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1..=200, default 50")),
    responses((status = 200, body = Page<Customer>)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller, q: Params) -> Result<Json<Page<Customer>>, AppError> {
    let p = params(q)?;
    let cursor = int_param(&p, "cursor")?;
    let limit = super::int_param_in(&p, "limit", 1..=200)?.unwrap_or(50);
    let mut page = state.store.list_customers(cursor, limit).await?;
    // Agents see the customers of cases they may see (a page may then hold fewer items).
    let seen = crate::auth::Visibility::for_actor(&caller.actor());
    let mut items = Vec::with_capacity(page.items.len());
    for c in std::mem::take(&mut page.items) {
        if seen.can_see_customer(&state.store, CustomerId(c.id)).await {
            items.push(c);
        }
    }
    page.items = items;
    Ok(Json(page))
}

/// One customer with identities.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    responses((status = 200, body = Customer), (status = 404, description = "No such customer")), security(("bearer" = [])))]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Customer>, AppError> {
    let id = path_id(&id, "customer")?;
    caller.ensure_customer_visible(&state, id).await?;
    Ok(Json(state.store.customer(id).await?))
}

/// Changes to a customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatchRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// Preferred language, e.g. `de` or `en`.
    #[schema(pattern = r"^[A-Za-z-]{2,8}$")]
    pub language: Option<String>,
}

/// Changes name or language.
#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    request_body = CustomerPatchRequest, responses((status = 200, body = Customer)), security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CustomerPatchRequest>,
) -> Result<Json<Customer>, AppError> {
    let id = path_id(&id, "customer")?;
    caller.ensure_customer_visible(&state, id).await?;
    if let Some(n) = &req.name {
        if n.trim().is_empty() {
            return Err(AppError::invalid("name", "must not be empty"));
        }
        check_len("name", n, 200)?;
    }
    if let Some(l) = &req.language {
        if !(2..=8).contains(&l.len()) || !l.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
            return Err(AppError::invalid("language", "must be a language tag such as de or en"));
        }
    }
    let patch = CustomerPatch {
        name: req.name.map(|n| n.trim().to_string()),
        language: req.language.map(|l| l.to_lowercase()),
    };
    Ok(Json(state.store.patch_customer(id, patch).await?))
}

/// A new identity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRequest {
    /// email, phone, external_id, whatsapp_id, telegram_id, messenger_id, instagram_id
    #[schema(value_type = IdentityKind)]
    pub kind: String,
    pub address: String,
}

/// Adds an address to a customer (409 if it belongs to another one: merge instead; the
/// answer names that customer only to callers who may see it).
#[utoipa::path(post, path = "/api/v1/customers/{id}/identities", tag = "customers", params(("id" = i64, Path)),
    request_body = IdentityRequest, responses((status = 200, body = Customer), (status = 404, description = "No such customer"),
        (status = 409, description = "Owned by another customer")),
    security(("bearer" = [])))]
pub async fn add_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<IdentityRequest>,
) -> Result<Json<Customer>, AppError> {
    let id = path_id(&id, "customer")?;
    caller.ensure_customer_visible(&state, id).await?;
    let kind = IdentityKind::parse(&req.kind).ok_or_else(|| AppError::invalid("kind", "unknown identity kind"))?;
    let address = normalise_identity(kind, &req.address, &state.config.default_region)
        .map_err(|e| AppError::invalid("address", e.to_string()))?;
    // Only callers who may see the address's owner learn which customer that is.
    Ok(Json(state.store.add_identity_as(CustomerId(id), kind, address, caller.restricted_user()).await?))
}

/// Which customer to merge into this one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    #[schema(minimum = 1)]
    pub source_id: i64,
}

/// Merges `source_id` into this customer with all identities, cases and messages. A staff
/// user who is not an admin must see both customers (else 404) and every case of them (else
/// 403).
#[utoipa::path(post, path = "/api/v1/customers/{id}/merge", tag = "customers", params(("id" = i64, Path)),
    request_body = MergeRequest, responses((status = 200, body = Customer), (status = 403, description = "A case of these customers is hidden from the caller"),
        (status = 404, description = "No such customer")), security(("bearer" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MergeRequest>,
) -> Result<Json<Customer>, AppError> {
    let id = path_id(&id, "customer")?;
    caller.ensure_customer_visible(&state, id).await?;
    // The store checks both customers and every case of them in the merge's transaction.
    let (target, source) = (CustomerId(id), CustomerId(req.source_id));
    Ok(Json(state.store.merge_customers_as(target, source, caller.restricted_user()).await?))
}
