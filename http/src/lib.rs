//! bulwark-http: the HTTP edge of a Bulwark node.
//!
//! REST under `/api/v1` over the shop's services (users, products, orders,
//! notifications, payments), reached through the node's router with the
//! request's deadline, `x-request-id` (as the correlation id) and
//! `traceparent`. Every failure is an RFC 9457 problem+json body with a
//! precise status ([`ApiError`]). The edge holds its limits: body size,
//! header read timeout, request timeout, concurrency (load shedding with
//! 503 + `Retry-After`) and open connections ([`EdgeConfig`]). Probes:
//! `/health`, `/ready`; documents: `/metrics` (Prometheus), `/openapi.json`.
//! With an admin key ([`EdgeConfig::admin_key`]) or an API key with the
//! `admin` scope, the admin API: the actor tree, kill by path, outboxes
//! (`routes/admin.rs`; 404 without any such key, 401 with a wrong one).
//! With API keys ([`EdgeConfig::api_keys`]) the REST API needs a key whose
//! scope covers the request (401, 403); a rate limit
//! ([`EdgeConfig::rate_limit`]) bounds each client (429 + `Retry-After`).
//! See `auth.rs`.
//!
//! Status mapping of the services' answers:
//!
//! | answer | status |
//! |---|---|
//! | `ShopError::NotFound` | 404 |
//! | `ShopError::Conflict` | 409 |
//! | `ShopError::Invalid`, `ShopError::Rejected` | 422 |
//! | `ShopError::Transient` | 503 `unavailable` + `Retry-After` |
//! | `ShopError::Storage` | 500, opaque body, cause logged |
//! | `CallError::Overloaded` | 503 `overloaded` + `Retry-After` (nothing done) |
//! | `CallError::Unavailable` | 503 `unavailable` + `Retry-After` (nothing done) |
//! | `CallError::Restarted` | 503 `outcome-unknown` + `Retry-After` (may have been applied) |
//! | `CallError::Timeout` (and the request's own deadline) | 504 |
//!
//! Layout:
//! - `auth.rs` — API keys, scopes and rate limits ([`ApiKeys`], [`RateLimit`]);
//! - `server.rs` — [`Server`]: accept loop, connection bound, header read
//!   timeout, graceful drain;
//! - `routes/` — the route table and middleware stack ([`router`]), one
//!   module per resource, and the probes;
//! - `middleware.rs` — request id, trace context, deadline, span, metrics;
//! - `error.rs` — [`ApiError`] and the problem body;
//! - `extract.rs` — [`Json`], [`Path`], [`Query`] with [`ApiError`]
//!   rejections, and [`RequestContext`];
//! - `money.rs` — [`Price`]: decimal JSON numbers ⇄ integer cents;
//! - `metrics.rs`, `openapi.rs`, `config.rs` ([`EdgeConfig`]).

mod auth;
mod config;
mod error;
mod extract;
mod metrics;
mod middleware;
mod money;
mod openapi;
mod routes;
mod server;
mod state;

pub use auth::{
    API_KEY_NAME_LEN_MAX, API_KEY_SECRET_LEN_MIN, ApiKey, ApiKeyError, ApiKeys, RateLimit,
    RatePeriod, Scope,
};
pub use config::{
    AdminKey, BODY_LIMIT_BYTES_DEFAULT, CONCURRENCY_LIMIT_DEFAULT, CONNECTIONS_MAX_DEFAULT,
    DRAIN_TIMEOUT_DEFAULT, EdgeConfig, HEADER_BYTES_MAX, HEADER_READ_TIMEOUT_DEFAULT,
    REQUEST_TIMEOUT_DEFAULT,
};
pub use error::{ApiError, FieldError, InternalDetail, PROBLEM_JSON, Problem, RETRY_AFTER_SECS};
pub use extract::{Json, Path, Query, RequestContext};
pub use metrics::Metrics;
pub use middleware::{REQUEST_ID, REQUEST_ID_LEN_MAX, TRACEPARENT};
pub use money::{CENTS_MAX, Price, PriceError};
pub use openapi::{ApiDoc, openapi};
pub use routes::{API_PREFIX, router, routes};
pub use server::Server;
