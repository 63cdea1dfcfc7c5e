//! The OpenAPI document, generated from the handlers' annotations. A test
//! checks that its paths are exactly the router's routes.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
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
    modifiers(&AdminKeyScheme, &ApiKeyScheme, &EdgeAnswers)
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
                        "The admin key (`--admin-key` / `BULWARK_ADMIN_KEY`); an API key with the `admin` scope works too. With neither configured the admin routes answer 404",
                    ))
                    .build(),
            ),
        );
    }
}

/// Declares the REST API's bearer key (`api_key`) and, on every operation
/// under `/api/v1`, that key and the answers of the edge's gate: 401, 403
/// and 429 (`auth.rs`).
#[derive(Debug)]
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`--api-keys` / `BULWARK_API_KEYS`) whose scope covers the request: `read` for GET, `write` for the rest. Without any key configured the API is open.",
                    ))
                    .build(),
            ),
        );
        let gate = [
            (
                "401",
                "Missing or unknown API key (only when API keys are configured)",
            ),
            ("403", "The API key lacks the scope the method needs"),
            (
                "429",
                "The client is over its rate limit; `Retry-After` says when to retry",
            ),
        ];
        for_each_api_operation(openapi, |operation| guard(operation, &gate));
    }
}

/// The answers the edge itself may give to any API request, whatever the
/// handler: added to every `/api/v1` operation that does not list them.
#[derive(Debug)]
struct EdgeAnswers;

impl Modify for EdgeAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let any = [
            (
                "400",
                "Malformed request: a path parameter that is not a positive integer, malformed JSON or a body that is not a JSON object, an HTTP/1.1 request without Host",
            ),
            (
                "503",
                "Overloaded (past the concurrency limit) or a service is unavailable; `Retry-After` says when to retry",
            ),
            ("504", "The request did not complete within its deadline"),
        ];
        let with_body = [
            ("413", "The body (sent or declared) is over the body limit"),
            ("415", "The body is not `Content-Type: application/json`"),
        ];
        for_each_api_operation(openapi, |operation| {
            add_answers(operation, &any);
            if operation.request_body.is_some() {
                add_answers(operation, &with_body);
            }
        });
    }
}

/// Calls `f` with every operation under `/api/v1`.
fn for_each_api_operation(
    openapi: &mut utoipa::openapi::OpenApi,
    mut f: impl FnMut(&mut Operation),
) {
    for (path, item) in &mut openapi.paths.paths {
        if !path.starts_with(crate::API_PREFIX) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            f(operation);
        }
    }
}

/// Adds problem+json answers to `operation` for the statuses it does not
/// list yet.
fn add_answers(operation: &mut Operation, answers: &[(&str, &str)]) {
    for (status, description) in answers {
        let response = ResponseBuilder::new()
            .description(*description)
            .content(
                crate::PROBLEM_JSON,
                Content::new(Some(Ref::from_schema_name("Problem"))),
            )
            .build();
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert(RefOr::T(response));
    }
}

/// Adds the API key and the gate's answers to `operation`.
fn guard(operation: &mut Operation, gate: &[(&str, &str)]) {
    operation
        .security
        .get_or_insert_with(Vec::new)
        .push(SecurityRequirement::new("api_key", Vec::<String>::new()));
    add_answers(operation, gate);
}

/// The document.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
