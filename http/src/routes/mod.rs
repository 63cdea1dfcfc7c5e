//! The route table, the middleware stack, and what handlers share: paging,
//! ids, ETags, and the mapping of service errors to [`ApiError`]s.

pub(crate) mod admin;
pub(crate) mod cluster;
pub(crate) mod notifications;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod probes;
pub(crate) mod products;
pub(crate) mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use bulwark_actors::{PAGE_SIZE_DEFAULT, PageRequest, ShopError};
use bulwark_runtime::{CallError, Node, UnavailableReason};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Limiter, guard_api};
use crate::config::EdgeConfig;
use crate::error::ApiError;
use crate::extract::Json;
use crate::metrics::Metrics;
use crate::middleware::{ShedLayer, around_request};
use crate::state::{AppState, AppStateInner};

/// Where the REST API lives.
pub const API_PREFIX: &str = "/api/v1";

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
        }
    }

    fn method(self) -> Method {
        match self {
            Self::Get => Method::GET,
            Self::Post => Method::POST,
            Self::Put => Method::PUT,
            Self::Delete => Method::DELETE,
        }
    }
}

/// A router under construction that remembers every route it was given,
/// so the route list ([`routes`]) is the router's own, not a copy of it.
struct Table {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Table {
    fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.routes.push((verb.method(), path));
        self
    }
}

/// The REST API, which goes through the load shedder.
fn api_table() -> Table {
    Table::new()
        .add(Verb::Post, "/api/v1/users", users::create)
        .add(Verb::Get, "/api/v1/users", users::list)
        .add(Verb::Get, "/api/v1/users/{id}", users::get)
        .add(Verb::Put, "/api/v1/users/{id}", users::update)
        .add(Verb::Delete, "/api/v1/users/{id}", users::delete)
        .add(Verb::Post, "/api/v1/products", products::create)
        .add(Verb::Get, "/api/v1/products", products::list)
        .add(Verb::Get, "/api/v1/products/{id}", products::get)
        .add(Verb::Put, "/api/v1/products/{id}", products::update)
        .add(Verb::Delete, "/api/v1/products/{id}", products::delete)
        .add(Verb::Post, "/api/v1/orders", orders::place)
        .add(Verb::Get, "/api/v1/orders", orders::list)
        .add(Verb::Get, "/api/v1/orders/{id}", orders::get)
        .add(Verb::Post, "/api/v1/orders/{id}/cancel", orders::cancel)
        .add(Verb::Get, "/api/v1/orders/{id}/events", orders::events)
        .add(Verb::Get, "/api/v1/notifications", notifications::list)
        .add(Verb::Get, "/api/v1/payments", payments::get)
        .add(Verb::Get, "/api/v1/payments/ledger", payments::ledger)
}

/// The admin API: never shed (a chaos run's nemesis must reach a busy
/// node), and behind [`admin::require_admin`].
fn admin_table() -> Table {
    Table::new()
        .add(Verb::Get, "/admin/actors", admin::actors)
        .add(Verb::Post, "/admin/actors/kill", admin::kill)
        .add(Verb::Get, "/admin/outboxes", admin::outboxes)
}

/// Probes and documents: never shed, so an overloaded node still answers
/// its liveness probe and is not restarted for being busy; open to every
/// client, as orchestrators and scrapers carry no API key.
fn probe_table() -> Table {
    Table::new()
        .add(Verb::Get, "/health", probes::health)
        .add(Verb::Get, "/ready", probes::ready)
        .add(Verb::Get, "/metrics", probes::metrics)
        .add(Verb::Get, "/openapi.json", probes::openapi)
}

/// The cluster's view: never shed (an operator looks at it when the node
/// is busy), but part of the API, so behind its key and rate limit.
fn cluster_table() -> Table {
    Table::new().add(Verb::Get, "/api/v1/cluster", cluster::get)
}

/// Every route the router serves: method and path template.
#[must_use]
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut all = api_table().routes;
    all.extend(probe_table().routes);
    all.extend(cluster_table().routes);
    all.extend(admin_table().routes);
    all
}

/// The edge's router with its whole middleware stack, ready to serve (or
/// to call with `tower::ServiceExt::oneshot` in tests).
pub fn router(node: Node, config: EdgeConfig) -> Router {
    let state = AppState::new(AppStateInner {
        node,
        limiter: config.rate_limit.map(|limit| Arc::new(Limiter::new(limit))),
        config: Arc::new(config),
        metrics: Arc::new(Metrics::default()),
    });
    // Without keys or a rate limit the guard would admit everything: leave
    // it out of the request path.
    let guarded = !state.config.api_keys.is_empty() || state.limiter.is_some();
    let guard = |routes: Router<AppState>| {
        if guarded {
            routes.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard_api,
            ))
        } else {
            routes
        }
    };
    let shedding = ShedLayer::new(state.config.concurrency_limit);
    // The guard is outside the shedder: a request refused for its key or
    // its rate never takes a concurrency slot.
    guard(api_table().router.layer(shedding))
        .merge(guard(cluster_table().router))
        .merge(probe_table().router)
        .merge(
            admin_table()
                .router
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    admin::require_admin,
                )),
        )
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            around_request,
        ))
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().to_owned(),
    }
}

/// An id in a path (`/users/{id}`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct IdParam {
    pub(crate) id: u64,
}

impl IdParam {
    /// The id; zero names nothing (ids start at 1), so it is a 404.
    pub(crate) fn get(self, entity: &str) -> Result<u64, ApiError> {
        if self.id == 0 {
            return Err(ApiError::NotFound {
                detail: format!("{entity} 0 not found: ids start at 1"),
            });
        }
        Ok(self.id)
    }
}

/// `?page=&page_size=` of list endpoints.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub(crate) page: Option<u32>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) page_size: Option<u32>,
}

impl PageQuery {
    /// The page asked for, bounds checked.
    pub(crate) fn request(self) -> Result<PageRequest, ApiError> {
        PageRequest {
            page: self.page.unwrap_or(1),
            page_size: self.page_size.unwrap_or(PAGE_SIZE_DEFAULT),
        }
        .validate()
        .map_err(shop_error)
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct PageBody<T> {
    /// This page's items.
    pub(crate) items: Vec<T>,
    /// Items in the whole list.
    pub(crate) total: u64,
    /// This page's number (1-based).
    pub(crate) page: u32,
    /// The page size asked for.
    pub(crate) page_size: u32,
}

impl<T> PageBody<T> {
    pub(crate) fn from_page<U>(page: bulwark_actors::Page<U>, f: impl FnMut(U) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(f).collect(),
            total: page.total,
            page: page.page,
            page_size: page.page_size,
        }
    }
}

/// The strong ETag of a resource's version.
fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak comparison, as
/// RFC 9110 asks for this header.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(wanted) = etag.to_str().ok() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == wanted)
}

/// A single resource: 200 with its ETag, or 304 when the client has it.
pub(crate) fn single<T: Serialize>(headers: &HeaderMap, version: u64, body: T) -> Response {
    let tag = etag(version);
    if not_modified(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    ([(header::ETAG, tag)], Json(body)).into_response()
}

/// A changed resource: 200 with its new ETag.
pub(crate) fn changed<T: Serialize>(version: u64, body: T) -> Response {
    ([(header::ETAG, etag(version))], Json(body)).into_response()
}

/// A created resource: 201 with `Location` and its ETag.
pub(crate) fn created<T: Serialize>(location: &str, version: u64, body: T) -> Response {
    let location =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static(API_PREFIX));
    (
        StatusCode::CREATED,
        [(header::LOCATION, location), (header::ETAG, etag(version))],
        Json(body),
    )
        .into_response()
}

/// A service answered with a response its API does not give to that
/// request: a bug on one side, reported as a 500.
pub(crate) fn unexpected(service: &str, request: &str) -> ApiError {
    ApiError::Internal {
        detail: format!("`{service}` answered {request} with an unexpected response"),
    }
}

/// The status of a domain error.
pub(crate) fn shop_error(error: ShopError) -> ApiError {
    match error {
        ShopError::NotFound { entity, id } => ApiError::NotFound {
            detail: format!("{entity} {id} not found"),
        },
        ShopError::Conflict { reason } => ApiError::Conflict { detail: reason },
        ShopError::Invalid { field, reason } => ApiError::Invalid {
            field: api_field_name(&field),
            reason,
        },
        ShopError::Rejected { reason } => ApiError::Rejected { reason },
        ShopError::Transient { reason } => ApiError::Unavailable { detail: reason },
        ShopError::Storage { message } => ApiError::Internal { detail: message },
        other => ApiError::Internal {
            detail: other.to_string(),
        },
    }
}

/// The services count money in cents (`price_cents`); the API names the
/// same fields without the unit (`price`), in currency units.
fn api_field_name(field: &str) -> String {
    field.replace("_cents", "")
}

impl From<CallError<ShopError>> for ApiError {
    fn from(error: CallError<ShopError>) -> Self {
        match error {
            CallError::Service { error, .. } => shop_error(error),
            CallError::Timeout { service } => ApiError::Timeout {
                detail: format!(
                    "`{service}` did not answer before the request's deadline; \
                     the request may have been applied"
                ),
            },
            CallError::Overloaded { service, bound } => ApiError::Overloaded {
                detail: format!("`{service}` is at its {bound} bound; nothing was done"),
            },
            CallError::Restarted { service } => ApiError::OutcomeUnknown {
                detail: format!(
                    "`{service}` restarted before answering; the request may have been \
                     applied (retry an order with the same Idempotency-Key)"
                ),
            },
            CallError::Unavailable { service, reason } => match reason {
                UnavailableReason::NotRegistered => ApiError::Unavailable {
                    detail: format!(
                        "no reachable node runs `{service}` (not on this node, and no \
                         cluster member has announced it)"
                    ),
                },
                reason => ApiError::Unavailable {
                    detail: format!("`{service}` is unavailable: {reason}"),
                },
            },
            other => ApiError::Internal {
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use bulwark_runtime::OverloadedBound;

    use super::*;

    #[test]
    fn call_errors_map_to_their_statuses() {
        let service = "users";
        let cases: [(CallError<ShopError>, u16); 11] = [
            (CallError::Timeout { service }, 504),
            (
                CallError::Unavailable {
                    service,
                    reason: UnavailableReason::Unreachable,
                },
                503,
            ),
            (
                CallError::Unavailable {
                    service,
                    reason: UnavailableReason::NotRegistered,
                },
                503,
            ),
            (
                CallError::Overloaded {
                    service,
                    bound: OverloadedBound::Mailbox,
                },
                503,
            ),
            (CallError::Restarted { service }, 503),
            (
                CallError::Unavailable {
                    service,
                    reason: UnavailableReason::Down,
                },
                503,
            ),
            (
                CallError::Service {
                    service,
                    error: ShopError::NotFound {
                        entity: "user".to_owned(),
                        id: 3,
                    },
                },
                404,
            ),
            (
                CallError::Service {
                    service,
                    error: ShopError::Conflict {
                        reason: "username taken".to_owned(),
                    },
                },
                409,
            ),
            (
                CallError::Service {
                    service,
                    error: ShopError::Rejected {
                        reason: "out of stock".to_owned(),
                    },
                },
                422,
            ),
            (
                CallError::Service {
                    service,
                    error: ShopError::Transient {
                        reason: "provider".to_owned(),
                    },
                },
                503,
            ),
            (
                CallError::Service {
                    service,
                    error: ShopError::Storage {
                        message: "io".to_owned(),
                    },
                },
                500,
            ),
        ];
        for (error, status) in cases {
            let text = format!("{error:?}");
            assert_eq!(ApiError::from(error).status().as_u16(), status, "{text}");
        }
    }

    #[test]
    fn a_503_says_whether_the_request_may_have_been_applied() {
        let service = "orders";
        let kind = |error: CallError<ShopError>| ApiError::from(error).kind();
        assert_eq!(kind(CallError::Restarted { service }), "outcome-unknown");
        for reason in [
            UnavailableReason::Down,
            UnavailableReason::Unreachable,
            UnavailableReason::NotRegistered,
            UnavailableReason::ShuttingDown,
            UnavailableReason::CircuitOpen,
        ] {
            assert_eq!(
                kind(CallError::Unavailable { service, reason }),
                "unavailable"
            );
        }
        let open = ApiError::from(CallError::<ShopError>::Unavailable {
            service,
            reason: UnavailableReason::CircuitOpen,
        });
        assert_eq!(open.status().as_u16(), 503);
        assert_eq!(
            kind(CallError::Overloaded {
                service,
                bound: OverloadedBound::InFlight
            }),
            "overloaded"
        );
    }

    #[test]
    fn cents_fields_are_named_as_the_api_names_them() {
        assert_eq!(api_field_name("items[0].price_cents"), "items[0].price");
        assert_eq!(api_field_name("username"), "username");
    }

    #[test]
    fn if_none_match_matches_strong_weak_lists_and_star() {
        let tag = etag(7);
        assert_eq!(tag, "\"7\"");
        for (value, matches) in [
            ("\"7\"", true),
            ("W/\"7\"", true),
            ("\"1\", \"7\"", true),
            ("*", true),
            ("\"8\"", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
            assert_eq!(not_modified(&headers, &tag), matches, "{value}");
        }
    }
}
