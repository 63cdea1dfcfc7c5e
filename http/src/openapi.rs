//! The OpenAPI document, generated from the handlers' annotations. A test
//! checks that its paths are exactly the router's routes.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};
use crate::routes;

/// The API's OpenAPI 3.1 document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Bulwark shop API", description = "Users, products, orders, payments and notifications over the Bulwark runtime. Errors are RFC 9457 problem+json."),
    paths(
        routes::users::create, routes::users::list, routes::users::get,
        routes::users::update, routes::users::delete,
        routes::products::create, routes::products::list, routes::products::get,
        routes::products::update, routes::products::delete,
        routes::orders::place, routes::orders::list, routes::orders::get,
        routes::orders::cancel, routes::orders::events,
        routes::notifications::list,
        routes::payments::get, routes::payments::ledger,
        routes::admin::actors, routes::admin::kill, routes::admin::outboxes,
        routes::probes::health, routes::probes::ready, routes::probes::metrics,
        routes::probes::openapi,
        routes::cluster::get,
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "users"), (name = "products"), (name = "orders"),
        (name = "notifications"), (name = "payments"), (name = "probes"),
        (name = "cluster"), (name = "admin"),
    ),
    modifiers(&AdminKeyScheme)
)]
pub struct ApiDoc;

/// Declares the admin API's bearer key (`admin_key`).
#[derive(Debug)]
struct AdminKeyScheme;

impl Modify for AdminKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin key (`--admin-key` / `BULWARK_ADMIN_KEY`); without one configured the admin routes answer 404",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
