//! The REST API for integrators (SPEC §7) under `/api/v1`: JSON resources addressed the way
//! people address them (gateways by MAC, devices by code within their gateway), keyset-paged
//! lists, one JSON error shape ([`error`]), bearer tokens or the session ([`auth`]), a request
//! rate per token ([`rate`]), live events ([`events`]), and the OpenAPI 3.1 document generated
//! from the handlers themselves at `/api/v1/openapi.json`, browsable at `/api/docs`.
//!
//! Handlers use the same store views and the same validation as the pages; the API has its own
//! middleware stack (no page rendering, no form CSRF: a token is not ambient authority; a
//! session-authenticated write needs the `X-CSRF-Token` header, see [`auth`]).

pub mod alert_rules;
pub mod alerts;
pub mod auth;
pub mod body;
pub mod certificates;
pub mod channels;
pub mod consumption;
pub mod dead_letters;
pub mod devices;
pub mod error;
pub mod events;
pub mod gateways;
pub mod imports;
pub mod rate;
pub mod readings;
pub mod responses;
pub mod staff;
pub mod tenant;

use crate::AppState;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TDS API",
        version = "1",
        description = "Gateways, devices, readings, consumption, certificates, imports, dead letters \
            and live events of one tenant; with a staff token (`tds_staff_…`), the platform's tenants. Authenticate with `Authorization: Bearer tds_…` (a token \
            made on Configurações → Tokens or with `tds token create`). Lists are keyset-paged: pass \
            `next_cursor` back as `cursor`. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&Security),
    security(("bearer" = [])),
    components(schemas(error::ErrorBody, events::ReadingsEvent, events::GatewayEvent, events::AlertsEvent)),
    tags(
        (name = "tenant", description = "The token's tenant"),
        (name = "gateways", description = "Gateways, addressed by MAC"),
        (name = "devices", description = "A gateway's devices, addressed by code"),
        (name = "readings", description = "Stored readings"),
        (name = "consumption", description = "Consumption from the rollups, in the tenant's zone"),
        (name = "certificates", description = "Gateway certificates (admins)"),
        (name = "imports", description = "CSV imports, all or none"),
        (name = "dead-letters", description = "Refused messages and readings"),
        (name = "alerts", description = "Alerts raised by the rules, and acknowledging them"),
        (name = "alert-rules", description = "Alert rules, and what a rule would have raised"),
        (name = "notification-channels", description = "Where alerts are sent besides members' email (admins)"),
        (name = "events", description = "Live events (server-sent events)"),
        (name = "staff", description = "The platform's tenants, with a staff token")
    )
)]
struct ApiDoc;

/// Declares the bearer-token scheme every operation uses.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tds_ followed by 64 hex digits")
                    .description(Some("An API token; it acts with its role in its tenant."))
                    .build(),
            ),
        );
    }
}

/// Every API route with its documentation.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenant::get))
        .routes(routes!(gateways::list, gateways::create))
        .routes(routes!(gateways::show, gateways::update, gateways::decommission))
        .routes(routes!(devices::list, devices::create))
        .routes(routes!(devices::show, devices::update, devices::archive))
        .routes(routes!(readings::list))
        .routes(routes!(consumption::get))
        .routes(routes!(certificates::list))
        .routes(routes!(certificates::issue))
        .routes(routes!(certificates::sign_csr))
        .routes(routes!(certificates::revoke))
        .routes(routes!(certificates::renew))
        .routes(routes!(imports::gateways))
        .routes(routes!(imports::devices))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alert_rules::list, alert_rules::create))
        .routes(routes!(alert_rules::preview_rule))
        .routes(routes!(alert_rules::show, alert_rules::update, alert_rules::delete))
        .routes(routes!(channels::list, channels::create))
        .routes(routes!(channels::show, channels::update, channels::delete))
        .routes(routes!(channels::test))
        .routes(routes!(events::stream))
        .routes(routes!(staff::list, staff::create))
        .routes(routes!(staff::show, staff::update))
}

/// The OpenAPI document (also served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().split_for_parts().1
}

/// The API's router: the documented routes, the document, and the browser.
pub fn router() -> Router<AppState> {
    let (router, doc) = documented().split_for_parts();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let json = Arc::clone(&json);
                async move { ([(header::CONTENT_TYPE, "application/json")], json.to_string()) }
            }),
        )
        .route("/api/docs", get(docs))
}

/// The paths the API serves (for the coverage test), in the router's syntax.
pub fn paths() -> Vec<String> {
    let mut paths: Vec<String> = openapi().paths.paths.keys().cloned().collect();
    paths.push(format!("{PREFIX}/openapi.json"));
    paths
}

/// Swagger UI, from the embedded `swagger-ui-dist` package.
async fn docs() -> Response {
    let page = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TDS API</title>
<link rel="icon" href="/assets/vendor/favicon.svg">
<link rel="stylesheet" href="/assets/vendor/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/assets/vendor/swagger-ui-bundle.js"></script>
<script src="/assets/app/api-docs.js"></script>
</body>
</html>"#;
    let mut response = Html(page).into_response();
    // Swagger UI sets style attributes; nothing else is relaxed.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; \
             object-src 'none'",
        ),
    );
    response
}

/// Answers an unknown `/api/…` path (the router's fallback sends them here).
pub fn not_found() -> Response {
    error::ApiError::NotFound.into_response()
}
