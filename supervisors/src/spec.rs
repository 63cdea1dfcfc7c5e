//! What a supervisor is told: its strategy, its restart intensity, an optional
//! backoff, and the specs of its children in start order.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, SpawnErr};

use crate::supervisor::SupervisorActor;
use crate::tree::{ActorPath, Tree};

/// Which children a supervisor restarts when one of them fails (OTP names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only the child that failed.
    OneForOne,
    /// Stop every other child, then restart all of them in start order.
    OneForAll,
    /// Stop the children started after the failed one, then restart the
    /// failed child and those later siblings in start order.
    RestForOne,
}

/// When a child that stopped is started again (OTP names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whatever the reason it stopped.
    Permanent,
    /// Restarted only after an abnormal exit: a panic, an `Err` from a
    /// handler, or a kill. A normal stop leaves it stopped.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Restart intensity: more than `max_restarts` restarts within `window`
/// makes the supervisor give up. It stops its remaining children and fails
/// itself, so its own parent's strategy applies (escalation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts tolerated inside one window.
    pub max_restarts: u32,
    /// The sliding window over which restarts are counted.
    pub window: Duration,
}

impl Default for Intensity {
    /// OTP's default for a supervisor: 3 restarts in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            window: Duration::from_secs(5),
        }
    }
}

/// Exponential backoff between a failure and the restart it causes.
///
/// The n-th restart inside the current intensity window waits
/// `min(initial * 2^(n-1), max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart in a window.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before the `nth` restart (1-based) within a window.
    #[must_use]
    pub fn delay(&self, nth: u32) -> Duration {
        let shift = nth.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1_u32 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// What a child's start function receives.
#[derive(Debug, Clone)]
pub struct ChildContext {
    /// The supervisor: link the child to it (`Actor::spawn_linked(.., supervisor)`).
    pub supervisor: ActorCell,
    /// The child's path in the tree, e.g. `users/entry`.
    pub path: ActorPath,
    /// How many times this child has been restarted so far.
    pub restarts: u32,
    /// The node's tree, for nested supervisors.
    pub tree: Tree,
}

type StartFn =
    dyn Fn(ChildContext) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync;

/// How to start one child, and when to restart it.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) restart: Restart,
    pub(crate) kind: ChildKind,
    pub(crate) start: Arc<StartFn>,
}

/// Whether a child is a worker or a supervisor of its own subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// An actor that does work.
    Worker,
    /// A nested supervisor.
    Supervisor,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A child started by `start`, which must spawn an actor linked to
    /// `ctx.supervisor` and return its cell.
    pub fn new<F, Fut>(name: impl Into<String>, restart: Restart, start: F) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        Self {
            name: name.into(),
            restart,
            kind: ChildKind::Worker,
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
        }
    }

    /// A worker actor; `make` builds a fresh handler and its arguments for
    /// every (re)start.
    pub fn actor<A, F>(name: impl Into<String>, restart: Restart, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        Self::new(name, restart, move |ctx: ChildContext| {
            let (handler, args) = make();
            async move {
                let (actor, _join) = A::spawn_linked(None, handler, args, ctx.supervisor).await?;
                Ok(actor.get_cell())
            }
        })
    }

    /// A nested supervisor running `spec` as this child.
    #[must_use]
    pub fn supervisor(name: impl Into<String>, restart: Restart, spec: SupervisorSpec) -> Self {
        let mut child = Self::new(name, restart, move |ctx: ChildContext| {
            let spec = spec.clone();
            async move {
                let (actor, _join) =
                    SupervisorActor::spawn_linked(ctx.path, spec, ctx.tree, ctx.supervisor).await?;
                Ok(actor.get_cell())
            }
        });
        child.kind = ChildKind::Supervisor;
        child
    }

    /// The child's name (the last segment of its path).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's restart policy.
    #[must_use]
    pub fn restart(&self) -> Restart {
        self.restart
    }
}

/// A supervisor's whole configuration.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    /// Which siblings restart with a failed child.
    pub strategy: Strategy,
    /// How many restarts before the supervisor gives up.
    pub intensity: Intensity,
    /// Optional delay before each restart.
    pub backoff: Option<Backoff>,
    /// Time a child gets to stop gracefully before it is killed, when the
    /// supervisor stops it (shutdown, or a sibling's restart).
    pub shutdown_timeout: Duration,
    /// The children, in start order.
    pub children: Vec<ChildSpec>,
}

/// Default for [`SupervisorSpec::shutdown_timeout`]: OTP's 5 s for workers.
pub const CHILD_SHUTDOWN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

impl SupervisorSpec {
    /// A spec with the given strategy, default intensity, no backoff and no
    /// children.
    #[must_use]
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            intensity: Intensity::default(),
            backoff: None,
            shutdown_timeout: CHILD_SHUTDOWN_TIMEOUT_DEFAULT,
            children: Vec::new(),
        }
    }

    /// Sets the restart intensity.
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, window: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            window,
        };
        self
    }

    /// Sets a backoff between failures and restarts.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Some(Backoff { initial, max });
        self
    }

    /// Appends a child (children start in the order they are added).
    #[must_use]
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        assert_eq!(b.delay(1), Duration::from_millis(10));
        assert_eq!(b.delay(2), Duration::from_millis(20));
        assert_eq!(b.delay(3), Duration::from_millis(40));
        assert_eq!(b.delay(4), Duration::from_millis(50));
        assert_eq!(b.delay(400), Duration::from_millis(50));
    }
}
