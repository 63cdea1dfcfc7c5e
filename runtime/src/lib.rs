//! bulwark-runtime: nodes, services, typed messages and the router.
//!
//! A [`Node`] hosts [`Service`]s. Each service is a supervision tree (from
//! `bulwark-supervisors`) whose entry actor receives [`ServiceMsg`]s. The
//! [`Router`] addresses services by type — `router.call::<Users>(request)` —
//! wraps every message in an [`Envelope`] (message id, correlation id, W3C
//! trace context, deadline, sender node) and returns a typed [`CallError`]
//! that says what happened: timeout, overloaded, restarted mid-call,
//! unavailable, or the service's own error.
//!
//! Layout:
//! - `envelope.rs` — ids, correlation, trace context, [`CallContext`];
//! - `service.rs` — the [`Service`] trait, [`ServiceMsg`], [`ServiceTree`];
//! - `router.rs` — call / cast / publish, the per-service slot;
//! - `bulkhead.rs` — the mailbox and in-flight bounds of each service;
//! - `node.rs` — [`Node`]: start, self-healing, listing, kill, shutdown;
//! - `error.rs` — every error type.

mod breaker;
mod bulkhead;
pub mod cluster;
mod envelope;
mod error;
mod node;
mod router;
mod service;

pub use breaker::{BreakerConfig, CircuitState, OPEN_FOR_DEFAULT, TIMEOUTS_TO_OPEN_DEFAULT};
pub use bulwark_supervisors::{
    ActorInfo, ActorState, Backoff, ChildContext, ChildKind, ChildSpec, KillError, Restart,
    Strategy, SupervisorSpec,
};
pub use envelope::{
    CallContext, CorrelationId, Envelope, MessageId, TraceContext, TraceParentError,
};
pub use error::{CallError, CastError, NodeError, OverloadedBound, UnavailableReason};
pub use node::{
    CLUSTER_JOINED_CHECK, HealthCheck, MetricKind, MetricSample, Node, NodeBuilder, NodeConfig,
};
pub use router::{CALL_ATTEMPTS_MAX, PublishError, Published, Router, ServiceLoad, ServiceStatus};
pub use service::{
    Call, Cast, IN_FLIGHT_MAX_DEFAULT, MAILBOX_LEN_MAX_DEFAULT, Reply, Service, ServiceConfig,
    ServiceContext, ServiceMsg, ServiceTree, Topic, TopicEvent,
};
