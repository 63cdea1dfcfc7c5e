//! `/admin/...`: the actor tree of this node, killing an actor by path (for
//! chaos tests), and the services' outboxes.
//!
//! The admin API exists only when an admin key
//! ([`crate::EdgeConfig::admin_key`]) or an API key with the `admin` scope
//! is configured; otherwise its routes answer 404 exactly like routes that
//! do not exist. Every request must carry such a key as
//! `Authorization: Bearer <key>` (compared in constant time); a missing or
//! wrong key is a 401, an API key without the `admin` scope a 403. Like the
//! probes, the admin routes are never shed nor rate limited: a chaos run's
//! nemesis must reach an overloaded node.
//!
//! Actor paths contain `/` (`orders/entry`), which an axum path parameter
//! cannot match in the middle of a route, so the kill route takes the path
//! as a query parameter: `POST /admin/actors/kill?path=orders/entry`.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bulwark_actors::{
    Orders, OrdersRequest, OrdersResponse, Products, ProductsRequest, ProductsResponse,
    UsersRequest, UsersResponse, call_users,
};
use bulwark_runtime::{ActorInfo, ActorState, ChildKind, KillError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::unexpected;
use crate::auth::{Scope, bearer, refuse_admin};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, RequestContext};
use crate::state::AppState;

/// Rejects a request to an admin route unless it carries the configured
/// key; answers as if the route did not exist when no key is configured.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers(), request.uri().path()) {
        Ok(()) => next.run(request).await,
        Err(error @ ApiError::RouteNotFound { .. }) => error.into_response(),
        Err(refusal) => refuse_admin(&state, &request, refusal).into_response(),
    }
}

fn authorize(state: &AppState, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    let config = &state.config;
    let admin_keys = config.api_keys.iter().any(|key| key.allows(Scope::Admin));
    if config.admin_key.is_none() && !admin_keys {
        return Err(ApiError::RouteNotFound {
            path: path.to_owned(),
        });
    }
    let Some(presented) = bearer(headers) else {
        return Err(ApiError::Unauthorized {
            detail: "the admin API needs `Authorization: Bearer <admin key>`".to_owned(),
        });
    };
    if config
        .admin_key
        .as_ref()
        .is_some_and(|key| key.matches(presented))
    {
        return Ok(());
    }
    match config.api_keys.find(presented) {
        Some(key) if key.allows(Scope::Admin) => Ok(()),
        Some(key) => Err(ApiError::Forbidden {
            detail: format!("API key {} lacks the admin scope", key.name()),
        }),
        None => Err(ApiError::Unauthorized {
            detail: "wrong admin key".to_owned(),
        }),
    }
}

/// The actor tree of one node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ActorsBody {
    /// The node's name.
    node: String,
    /// Every supervised actor on this node, sorted by path.
    actors: Vec<ActorBody>,
}

/// One supervised actor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ActorBody {
    /// Its path: `orders` (the service's root supervisor), `orders/entry`.
    path: String,
    /// The service it belongs to (the path's first segment).
    service: String,
    /// `worker` or `supervisor`.
    kind: &'static str,
    /// `running`, `restarting` or `down`.
    state: &'static str,
    /// How many times it was restarted since the node started.
    restarts: u32,
    /// Calls sent to the service and not yet answered; only on a
    /// service's entry actor, the one that takes its calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<usize>,
}

impl ActorBody {
    fn new(state: &AppState, info: ActorInfo) -> Self {
        let service = info.service().to_owned();
        let in_flight = if info.path == format!("{service}/entry") {
            state
                .node
                .router()
                .load(&service)
                .map(|load| load.in_flight)
        } else {
            None
        };
        Self {
            kind: match info.kind {
                ChildKind::Worker => "worker",
                ChildKind::Supervisor => "supervisor",
            },
            state: match info.state {
                ActorState::Running => "running",
                ActorState::Restarting => "restarting",
                ActorState::Down => "down",
            },
            restarts: info.restarts,
            path: info.path,
            service,
            in_flight,
        }
    }
}

/// Every supervised actor on this node.
#[utoipa::path(
    get, path = "/admin/actors", tag = "admin",
    security(("admin_key" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The actor tree", body = ActorsBody),
        (status = 401, description = "Missing or wrong admin key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key without the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No admin key is configured", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn actors(State(state): State<AppState>) -> Json<ActorsBody> {
    let actors = state
        .node
        .actors()
        .into_iter()
        .map(|info| ActorBody::new(&state, info))
        .collect();
    Json(ActorsBody {
        node: state.node.name().to_owned(),
        actors,
    })
}

/// `POST /admin/actors/kill?path=`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct KillQuery {
    /// The actor's path, e.g. `orders/entry` (required).
    #[param(required = true)]
    path: Option<String>,
}

/// Kill one actor, as Erlang's `exit(Pid, kill)`: its supervisor sees an
/// abnormal exit and restarts it per its strategy (the listing then shows
/// one more restart), or escalates past its restart intensity.
#[utoipa::path(
    post, path = "/admin/actors/kill", tag = "admin",
    security(("admin_key" = []), ("api_key" = [])),
    params(KillQuery),
    responses(
        (status = 200, description = "Killed; the body is the actor as it was just before", body = ActorBody),
        (status = 401, description = "Missing or wrong admin key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key without the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No actor has that path, or no admin key is configured", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The actor is restarting or down", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing path", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn kill(
    State(state): State<AppState>,
    Query(query): Query<KillQuery>,
) -> Result<Json<ActorBody>, ApiError> {
    let path = query
        .path
        .ok_or_else(|| ApiError::invalid("path", "is required"))?;
    let before = state.node.actor(&path);
    state.node.kill(&path).map_err(|error| match error {
        KillError::NotFound { path } => ApiError::NotFound {
            detail: format!("no actor at path `{path}`"),
        },
        KillError::NotRunning { path } => ApiError::Conflict {
            detail: format!("actor `{path}` is not running"),
        },
        other => ApiError::Internal {
            detail: other.to_string(),
        },
    })?;
    let before = before.ok_or_else(|| ApiError::NotFound {
        detail: format!("no actor at path `{path}`"),
    })?;
    Ok(Json(ActorBody::new(&state, before)))
}

/// The outboxes of the services that publish events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OutboxesBody {
    /// One entry per service with an outbox: users, products, orders.
    outboxes: Vec<OutboxBody>,
}

/// One service's outbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OutboxBody {
    /// The service.
    service: &'static str,
    /// Events written and not yet acknowledged by every subscriber; 0 once
    /// the outbox is drained.
    pending: u64,
}

/// How many events wait in each service's outbox, wherever in the cluster
/// the service runs.
#[utoipa::path(
    get, path = "/admin/outboxes", tag = "admin",
    security(("admin_key" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Pending events per outbox", body = OutboxesBody),
        (status = 401, description = "Missing or wrong admin key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key without the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No admin key is configured", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn outboxes(
    State(state): State<AppState>,
    context: RequestContext,
) -> Result<Json<OutboxesBody>, ApiError> {
    let router = state.node.router();
    let (users, products, orders) = futures::join!(
        call_users(
            router,
            state.config.users_shards,
            context.call_context(),
            UsersRequest::PendingEvents
        ),
        router.call_with::<Products>(context.call_context(), ProductsRequest::PendingEvents),
        router.call_with::<Orders>(context.call_context(), OrdersRequest::PendingEvents),
    );
    let UsersResponse::PendingEvents(users) = users? else {
        return Err(unexpected("users", "PendingEvents"));
    };
    let ProductsResponse::PendingEvents(products) = products? else {
        return Err(unexpected("products", "PendingEvents"));
    };
    let OrdersResponse::PendingEvents(orders) = orders? else {
        return Err(unexpected("orders", "PendingEvents"));
    };
    Ok(Json(OutboxesBody {
        outboxes: vec![
            OutboxBody {
                service: "users",
                pending: users,
            },
            OutboxBody {
                service: "products",
                pending: products,
            },
            OutboxBody {
                service: "orders",
                pending: orders,
            },
        ],
    }))
}
