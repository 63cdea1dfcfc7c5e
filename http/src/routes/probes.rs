//! `/health`, `/ready`, `/metrics`, `/openapi.json`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulwark_runtime::ServiceStatus;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::extract::Json;
use crate::openapi::ApiDoc;
use crate::routes::cluster::{MemberBody, members};
use crate::state::AppState;

/// The liveness answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// Always `ok`.
    status: &'static str,
}

/// The readiness answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ReadyBody {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// The node's name.
    node: String,
    /// Every local service and its status.
    services: Vec<ServiceBody>,
    /// The node's health checks beside its actors (one per store:
    /// `store users`), each `ok` or `failed` with the reason.
    checks: Vec<CheckBody>,
    /// The cluster's members as this node sees them (this node alone
    /// outside a cluster).
    members: Vec<MemberBody>,
}

/// One service's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ServiceBody {
    /// The service's name (a shard's: `users#1`).
    name: String,
    /// `up`, `starting` or `down`.
    status: &'static str,
}

/// One health check's outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CheckBody {
    /// The check's name (`store orders`).
    name: String,
    /// `ok` or `failed`.
    status: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "Alive", body = HealthBody)))]
pub(crate) async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// Readiness: every local service is up and every health check passes (a
/// store whose sync failed refuses every write until the process restarts,
/// so it fails its check; a cluster member started with seeds fails
/// `cluster joined` until it has reached one). The body also lists the
/// cluster's members and their state; an unreachable member does not make
/// this node unready (it still serves everything that does not need that
/// member, and those requests answer 503 on their own).
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses(
        (status = 200, description = "Every service is up", body = ReadyBody),
        (status = 503, description = "Some service is not up or some check failed", body = ReadyBody),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let services: Vec<ServiceBody> = state
        .node
        .router()
        .services()
        .into_iter()
        .map(|(name, status)| ServiceBody {
            name: name.to_string(),
            status: match status {
                ServiceStatus::Up => "up",
                ServiceStatus::Starting => "starting",
                ServiceStatus::Down => "down",
            },
        })
        .collect();
    let checks: Vec<CheckBody> = state
        .node
        .health()
        .into_iter()
        .map(|check| CheckBody {
            name: check.name,
            status: if check.failure.is_some() {
                "failed"
            } else {
                "ok"
            },
            detail: check.failure,
        })
        .collect();
    let ready = !services.is_empty()
        && services.iter().all(|s| s.status == "up")
        && checks.iter().all(|c| c.detail.is_none());
    let body = ReadyBody {
        status: if ready { "ready" } else { "not_ready" },
        node: state.node.name().to_owned(),
        services,
        checks,
        members: members(&state.node),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(&state.node),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
