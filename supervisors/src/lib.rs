//! bulwark-supervisors: OTP-style supervision trees on ractor.
//!
//! A [`SupervisorActor`] starts its children in order from a
//! [`SupervisorSpec`] and watches them through ractor links. When a child
//! exits it applies, in this order:
//!
//! 1. the child's [`Restart`] policy — permanent children always restart,
//!    transient ones only after an abnormal exit (panic, `Err`, kill),
//!    temporary ones never;
//! 2. the restart [`Intensity`] — more than `max_restarts` within `window`
//!    and the supervisor stops its children and fails, so the failure
//!    escalates to its parent, whose own strategy applies;
//! 3. the [`Strategy`] — one-for-one restarts the child, one-for-all stops
//!    every sibling and restarts all, rest-for-one stops and restarts the
//!    siblings started after it;
//! 4. the optional [`Backoff`] before the restart.
//!
//! Every supervised actor is recorded in a [`Tree`] under a `/`-separated
//! path with its restart count: the node's actor listing and kill-by-path.
//!
//! Layout: `spec.rs` (what a supervisor is told), `supervisor.rs` (the
//! actor), `tree.rs` (the live registry).
//!
//! Why not the `ractor-supervisor` crate: see docs/ARCHITECTURE.md.

mod spec;
mod supervisor;
mod tree;

pub use spec::{
    Backoff, CHILD_SHUTDOWN_TIMEOUT_DEFAULT, ChildContext, ChildKind, ChildSpec, Intensity,
    Restart, Strategy, SupervisorSpec,
};
pub use supervisor::{
    SupervisorActor, SupervisorArgs, SupervisorError, SupervisorMsg, SupervisorState,
};
pub use tree::{ActorInfo, ActorPath, ActorState, KillError, Tree};
