//! The OpenAPI document, generated from the handlers' annotations.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::AppState;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Kontor's REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kontor API", description = "Omnichannel customer communication: inbound messages, cases, replies, events, search."),
    paths(
        api::inbound::inbound,
        api::cases::list, api::cases::detail, api::cases::patch, api::cases::note, api::cases::reply,
        api::customers::list, api::customers::detail, api::customers::patch, api::customers::add_identity, api::customers::merge,
        api::events::list, api::events::stream,
        api::search::search,
        api::admin::list_teams, api::admin::create_team, api::admin::list_users, api::admin::job_stats,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `/api/openapi.json`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
