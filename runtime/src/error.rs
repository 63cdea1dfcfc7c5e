//! Typed errors of the router and the node. Each says exactly what happened.

use std::fmt;

/// Why a service could not take a message at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// No instance of the service is known to this router.
    NotRegistered,
    /// The service's root supervisor gave up; the node restarts it after a
    /// backoff.
    Down,
    /// The service was restarting and did not come back before the deadline.
    Restarting,
    /// The node is shutting down and takes no new messages.
    ShuttingDown,
    /// The node that runs the service cannot be reached (its link is
    /// closed: dead, partitioned, or restarting).
    Unreachable,
    /// The request or the answer could not cross the wire (it did not
    /// encode or decode).
    Codec,
    /// Calls to the service kept passing their deadline, so its circuit is
    /// open: calls fail fast for a while (see
    /// [`BreakerConfig`](crate::BreakerConfig)).
    CircuitOpen,
}

impl fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotRegistered => "no instance is registered",
            Self::Down => "the service is down",
            Self::Restarting => "the service did not finish restarting before the deadline",
            Self::ShuttingDown => "the node is shutting down",
            Self::Unreachable => "the node running it is unreachable",
            Self::Codec => "the message could not cross the wire",
            Self::CircuitOpen => {
                "its calls kept timing out, so they fail fast for a while (circuit open)"
            }
        })
    }
}

/// Which bound of a bulkhead turned a message away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverloadedBound {
    /// `in_flight_max`: calls sent and not yet answered.
    InFlight,
    /// `mailbox_len_max`: messages queued and not yet taken by the service.
    Mailbox,
}

impl fmt::Display for OverloadedBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InFlight => "in_flight_max",
            Self::Mailbox => "mailbox_len_max",
        })
    }
}

/// The failure of a request/reply call. `E` is the service's own domain
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The deadline passed before the reply arrived. The request may still
    /// have been applied; a late reply is dropped.
    #[error("call to `{service}` passed its deadline")]
    Timeout {
        /// The service called.
        service: &'static str,
    },
    /// The service's bulkhead is full; nothing was sent.
    #[error("`{service}` is overloaded ({bound} reached)")]
    Overloaded {
        /// The service called.
        service: &'static str,
        /// Which bound was reached.
        bound: OverloadedBound,
    },
    /// The actor handling the call stopped (crashed, was killed or
    /// restarted), or the link to the node running it was lost, before it
    /// replied. The request may have been applied.
    #[error("`{service}` stopped before replying (crashed, killed or restarted)")]
    Restarted {
        /// The service called.
        service: &'static str,
    },
    /// The service could not take the call; nothing was sent.
    #[error("`{service}` is unavailable: {reason}")]
    Unavailable {
        /// The service called.
        service: &'static str,
        /// Why.
        reason: UnavailableReason,
    },
    /// The service answered with its own domain error.
    #[error("`{service}` refused the request: {error}")]
    Service {
        /// The service called.
        service: &'static str,
        /// The domain error.
        #[source]
        error: E,
    },
}

impl<E> CallError<E> {
    /// The service the call was addressed to.
    pub fn service(&self) -> &'static str {
        match self {
            Self::Timeout { service }
            | Self::Overloaded { service, .. }
            | Self::Restarted { service }
            | Self::Unavailable { service, .. }
            | Self::Service { service, .. } => service,
        }
    }

    /// The domain error, if the service answered with one.
    pub fn into_service_error(self) -> Option<E> {
        match self {
            Self::Service { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Changes the domain error type, keeping every runtime variant.
    pub fn map_service<F>(self, f: impl FnOnce(E) -> F) -> CallError<F> {
        match self {
            Self::Timeout { service } => CallError::Timeout { service },
            Self::Overloaded { service, bound } => CallError::Overloaded { service, bound },
            Self::Restarted { service } => CallError::Restarted { service },
            Self::Unavailable { service, reason } => CallError::Unavailable { service, reason },
            Self::Service { service, error } => CallError::Service {
                service,
                error: f(error),
            },
        }
    }
}

/// Why a cast (or a topic delivery) was not enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CastError {
    /// The service's mailbox bound is reached.
    #[error("`{service}` is overloaded ({bound} reached)")]
    Overloaded {
        /// The service addressed.
        service: &'static str,
        /// Which bound was reached.
        bound: OverloadedBound,
    },
    /// The service could not take the message.
    #[error("`{service}` is unavailable: {reason}")]
    Unavailable {
        /// The service addressed.
        service: &'static str,
        /// Why.
        reason: UnavailableReason,
    },
}

/// Failures of starting a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Two services with the same name were added.
    #[error("service `{0}` is added twice")]
    DuplicateService(String),
    /// A service's tree did not name an entry actor.
    #[error("service `{0}` has no entry actor: call ServiceTree::entry")]
    NoEntry(&'static str),
    /// A service's supervision tree failed to start.
    #[error("service `{service}` failed to start")]
    ServiceStart {
        /// The service.
        service: &'static str,
        /// What ractor reported.
        #[source]
        source: ractor::SpawnErr,
    },
    /// The node could not join its cluster.
    #[error("cannot start the cluster")]
    Cluster(#[from] crate::cluster::ClusterError),
}
