//! The OpenAPI document, generated from the handlers' annotations.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

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

/// The body of every error answer.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape `AppError` renders
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// bad_request, unauthorized, forbidden, not_found, conflict, stale, too_large, invalid, unavailable, internal
    code: String,
    message: String,
    /// For `invalid`: `{"field": ...}`; for `stale`: the newer messages and events.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

/// Adds the error answers every operation can give.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let errors = [
            ("400", "Malformed request (e.g. JSON syntax)"),
            ("401", "No or unknown API token"),
            ("403", "The token's role may not do this"),
            ("404", "No such resource"),
            ("409", "Conflict with the current state"),
            ("413", "Body too large"),
            ("422", "A field is invalid; error.details.field names it"),
            ("503", "Database unavailable; retry"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
            for op in ops.into_iter().flatten() {
                for (code, description) in errors {
                    op.responses.responses.entry(code.to_string()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                                )
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

/// Constraints across fields that derived schemas cannot state.
struct CrossFieldRules;

impl Modify for CrossFieldRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::AllOfBuilder;
        let Some(components) = openapi.components.as_mut() else { return };
        if let Some(derived) = components.schemas.remove("InboundRequest") {
            let both = AllOfBuilder::new().item(derived).item(api::inbound::text_or_attachments()).build();
            components.schemas.insert("InboundRequest".into(), RefOr::T(both.into()));
        }
    }
}

/// Query and header parameters are text: an optional one is absent or a value, never JSON
/// `null` (which utoipa states for `Option<T>`; a client sending `?after=null` gets a 422).
struct NoNullParameters;

impl Modify for NoNullParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
            for op in ops.into_iter().flatten() {
                for param in op.parameters.iter_mut().flatten() {
                    if let Some(RefOr::T(Schema::Object(obj))) = param.schema.as_mut() {
                        if let SchemaType::Array(types) = &obj.schema_type {
                            let kept: Vec<Type> = types.iter().filter(|t| **t != Type::Null).cloned().collect();
                            if let [only] = kept.as_slice() {
                                obj.schema_type = SchemaType::Type(only.clone());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Kontor's REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kontor API", description = "Omnichannel customer communication: inbound messages, cases, replies, events, search. Every JSON string is refused with 422 if it contains a NUL character."),
    paths(
        api::inbound::inbound,
        api::cases::list, api::cases::detail, api::cases::patch, api::cases::note, api::cases::reply,
        api::customers::list, api::customers::detail, api::customers::patch, api::customers::add_identity, api::customers::merge, api::contacts::record, api::attachments::download, api::attachments::raw_source,
        api::events::list, api::events::stream, api::events::presence,
        api::inbox::merge, api::inbox::related, api::inbox::list_canned, api::inbox::create_canned,
        api::inbox::update_canned, api::inbox::delete_canned, api::inbox::get_settings, api::inbox::put_settings,
        api::inbox::members, api::inbox::add_member, api::inbox::remove_member, api::inbox::create_user,
        api::inbox::update_user, api::inbox::rename_team, api::inbox::delete_team,
        api::search::search,
        api::assist::analyze, api::assist::style, api::assist::patch_analysis, api::assist::get_intents, api::assist::put_intents,
        api::rules::list, api::rules::create, api::rules::detail, api::rules::update, api::rules::delete, api::rules::dry_run,
        api::rules::get_hours, api::rules::put_hours,
        api::approvals::list, api::approvals::approve, api::approvals::reject,
        crate::assist::llm::draft,
        api::admin::list_teams, api::admin::create_team, api::admin::list_users, api::admin::job_stats,
        api::tokens::list, api::tokens::revoke, crate::channels::status, crate::channels::channel_status,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth, &CommonErrors, &CrossFieldRules, &NoNullParameters)
)]
pub struct ApiDoc;

/// `/api/openapi.json`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
