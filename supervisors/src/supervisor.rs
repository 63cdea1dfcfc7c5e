//! The supervisor actor: starts its children in order, watches them through
//! ractor's links, and restarts them per strategy, policy and intensity.

use std::collections::VecDeque;
use std::time::Duration;

use ractor::concurrency::{Instant, JoinHandle};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tracing::{error, info, warn};

use crate::spec::{ChildContext, ChildSpec, Restart, Strategy, SupervisorSpec};
use crate::tree::{ActorPath, ActorState, Tree};

/// Why a supervisor stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// More restarts than the intensity allows: the failure escalates to the
    /// supervisor's parent.
    #[error("supervisor `{path}` gave up: more than {max_restarts} restarts within {window:?}")]
    IntensityExceeded {
        /// The supervisor's path.
        path: ActorPath,
        /// The configured bound.
        max_restarts: u32,
        /// The configured window.
        window: Duration,
    },
    /// A child could not be started when the supervisor started.
    #[error("supervisor `{path}` could not start child `{child}`")]
    ChildStart {
        /// The supervisor's path.
        path: ActorPath,
        /// The child's path.
        child: ActorPath,
        /// What the spawn reported.
        #[source]
        source: SpawnErr,
    },
}

/// Messages a supervisor sends itself.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Start these children (indices in start order) unless they are
    /// already running, no longer wanted, or a later restart decision took
    /// them over (`token` no longer theirs). Sent after a backoff, or after
    /// a failed start.
    Start {
        /// The children, in start order.
        indices: Vec<usize>,
        /// The restart decision this start belongs to.
        token: u64,
    },
}

/// What [`SupervisorActor`] is spawned with.
#[derive(Debug)]
pub struct SupervisorArgs {
    /// The supervisor's own path.
    pub path: ActorPath,
    /// Its configuration.
    pub spec: SupervisorSpec,
    /// The node's tree, updated as children come and go.
    pub tree: Tree,
}

/// An OTP-style supervisor on ractor. See the crate docs for the semantics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupervisorActor;

#[derive(Debug)]
struct ChildSlot {
    spec: ChildSpec,
    path: ActorPath,
    cell: Option<ActorCell>,
    restarts: u32,
    /// False once the child stopped and its policy says it stays stopped.
    wanted: bool,
    /// The token of the scheduled start that owns this child's next start;
    /// an older `Start` message for it is stale and skipped.
    pending: Option<u64>,
}

/// The supervisor's state: its children and its recent restarts.
#[derive(Debug)]
pub struct SupervisorState {
    path: ActorPath,
    spec: SupervisorSpec,
    children: Vec<ChildSlot>,
    /// Instants of the restarts inside the intensity window, oldest first.
    restart_log: VecDeque<Instant>,
    /// Source of `Start` tokens.
    next_token: u64,
    tree: Tree,
}

impl SupervisorActor {
    /// Spawns an unlinked supervisor (the root of a tree). It returns once
    /// every child has started.
    ///
    /// # Errors
    /// A [`SpawnErr`] when a child fails to start; the children already
    /// started are stopped again.
    pub async fn spawn(
        path: ActorPath,
        spec: SupervisorSpec,
        tree: Tree,
    ) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
        Actor::spawn(None, Self, SupervisorArgs { path, spec, tree }).await
    }

    /// Spawns a supervisor linked to `parent` (a nested subtree).
    ///
    /// # Errors
    /// As [`SupervisorActor::spawn`].
    pub async fn spawn_linked(
        path: ActorPath,
        spec: SupervisorSpec,
        tree: Tree,
        parent: ActorCell,
    ) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
        Actor::spawn_linked(None, Self, SupervisorArgs { path, spec, tree }, parent).await
    }
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SupervisorArgs {
            path,
            mut spec,
            tree,
        } = args;
        let children = std::mem::take(&mut spec.children)
            .into_iter()
            .map(|child| ChildSlot {
                path: format!("{path}/{}", child.name),
                spec: child,
                cell: None,
                restarts: 0,
                wanted: true,
                pending: None,
            })
            .collect();
        let mut state = SupervisorState {
            path,
            spec,
            children,
            restart_log: VecDeque::new(),
            next_token: 0,
            tree,
        };
        // Children start here, not in post_start, so that a supervisor whose
        // child cannot start fails to spawn (OTP's start_link semantics).
        for i in 0..state.children.len() {
            if let Err(source) = state.start_child(&myself, i).await {
                state.stop_children(&myself).await;
                return Err(SupervisorError::ChildStart {
                    path: state.path.clone(),
                    child: state.children[i].path.clone(),
                    source,
                }
                .into());
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start { indices, token } => {
                state.start_children(&myself, &indices, token).await
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, abnormal, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), true, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.clone().unwrap_or_else(|| "normal".to_owned());
                // A kill, or a task cancelled under the actor, is abnormal
                // (as `killed` is in OTP); only a plain stop is normal.
                let abnormal = matches!(reason.as_str(), "killed" | "actor_task_cancelled");
                (cell.get_id(), abnormal, reason)
            }
            _ => return Ok(()),
        };
        let Some(index) = state.index_of(id) else {
            // A child we stopped ourselves and unlinked, whose event was
            // already queued: nothing to do.
            return Ok(());
        };
        state.child_exited(&myself, index, abnormal, &reason).await
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_children(&myself).await;
        Ok(())
    }
}

impl SupervisorState {
    fn index_of(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == id))
    }

    async fn start_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        index: usize,
    ) -> Result<(), SpawnErr> {
        let slot = &mut self.children[index];
        let ctx = ChildContext {
            supervisor: myself.get_cell(),
            path: slot.path.clone(),
            restarts: slot.restarts,
            tree: self.tree.clone(),
        };
        let cell = (slot.spec.start)(ctx).await?;
        self.tree
            .set_running(&slot.path, slot.spec.kind, cell.clone(), slot.restarts);
        slot.cell = Some(cell);
        Ok(())
    }

    /// Starts, in order, each listed child that is wanted, not running and
    /// still owned by `token`. A child that fails to start counts as a
    /// restart; it and the rest of the group are rescheduled (after the
    /// backoff) so that no later sibling starts ahead of it.
    async fn start_children(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        indices: &[usize],
        token: u64,
    ) -> Result<(), ActorProcessingErr> {
        for (position, &i) in indices.iter().enumerate() {
            let slot = &self.children[i];
            if !slot.wanted || slot.cell.is_some() || slot.pending != Some(token) {
                continue;
            }
            match self.start_child(myself, i).await {
                Ok(()) => self.children[i].pending = None,
                Err(err) => {
                    warn!(supervisor = %self.path, child = %self.children[i].path, error = %err, "child failed to start");
                    self.children[i].restarts += 1;
                    let nth = match self.record_restart() {
                        Ok(nth) => nth,
                        Err(err) => {
                            error!(supervisor = %self.path, error = %err, "restart intensity exceeded; escalating");
                            self.stop_children(myself).await;
                            return Err(err.into());
                        }
                    };
                    let rest: Vec<usize> = indices[position..]
                        .iter()
                        .copied()
                        .filter(|&j| self.children[j].pending == Some(token))
                        .collect();
                    return self.schedule(myself, rest, nth);
                }
            }
        }
        Ok(())
    }

    /// Logs a restart in the intensity window; `Err` when it is exceeded.
    fn record_restart(&mut self) -> Result<u32, SupervisorError> {
        let now = Instant::now();
        let window = self.spec.intensity.window;
        self.restart_log.push_back(now);
        while self
            .restart_log
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.restart_log.pop_front();
        }
        let count = u32::try_from(self.restart_log.len()).unwrap_or(u32::MAX);
        if count > self.spec.intensity.max_restarts {
            return Err(SupervisorError::IntensityExceeded {
                path: self.path.clone(),
                max_restarts: self.spec.intensity.max_restarts,
                window,
            });
        }
        Ok(count)
    }

    /// Starts `indices` now, or after the backoff for the `nth` restart,
    /// under a fresh token that supersedes any start already scheduled for
    /// them.
    fn schedule(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        indices: Vec<usize>,
        nth: u32,
    ) -> Result<(), ActorProcessingErr> {
        let token = self.next_token;
        self.next_token += 1;
        for &i in &indices {
            self.children[i].pending = Some(token);
        }
        match self.spec.backoff.map(|b| b.delay(nth)) {
            Some(delay) if !delay.is_zero() => {
                myself.send_after(delay, move || SupervisorMsg::Start { indices, token });
            }
            _ => myself.send_message(SupervisorMsg::Start { indices, token })?,
        }
        Ok(())
    }

    async fn child_exited(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        index: usize,
        abnormal: bool,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let slot = &mut self.children[index];
        slot.cell = None;
        let restart = match slot.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            info!(child = %slot.path, %reason, "child stopped; its policy keeps it stopped");
            slot.wanted = false;
            self.tree.remove(&slot.path);
            return Ok(());
        }
        warn!(child = %slot.path, %reason, restarts = slot.restarts + 1, "child exited; restarting");
        self.tree.set_stopped(&slot.path, ActorState::Restarting);

        let nth = match self.record_restart() {
            Ok(nth) => nth,
            Err(err) => {
                error!(supervisor = %self.path, error = %err, "restart intensity exceeded; escalating");
                self.stop_children(myself).await;
                return Err(err.into());
            }
        };

        let n = self.children.len();
        let mut group: Vec<usize> = match self.spec.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..n).collect(),
            Strategy::RestForOne => (index..n).collect(),
        };
        group.retain(|&j| self.children[j].wanted);
        // Siblings stop in reverse start order, as OTP does.
        for &j in group.iter().rev() {
            if j != index {
                self.stop_child(myself, j).await;
            }
        }
        // A temporary sibling stopped for the group is not started again.
        group.retain(|&j| j == index || self.children[j].spec.restart != Restart::Temporary);
        for &j in &group {
            self.children[j].restarts += 1;
        }
        self.schedule(myself, group, nth)
    }

    /// Stops one child gracefully (killing it after the shutdown timeout),
    /// unlinked first so its exit is not taken for a failure.
    async fn stop_child(&mut self, myself: &ActorRef<SupervisorMsg>, index: usize) {
        let timeout = self.spec.shutdown_timeout;
        let slot = &mut self.children[index];
        let Some(cell) = slot.cell.take() else {
            return;
        };
        cell.unlink(myself.get_cell());
        if cell.stop_and_wait(None, Some(timeout)).await.is_err() {
            warn!(child = %slot.path, "child did not stop in time; killing it");
            let _ = cell.kill_and_wait(Some(timeout)).await;
        }
        if slot.spec.restart == Restart::Temporary {
            slot.wanted = false;
            self.tree.remove(&slot.path);
        } else {
            self.tree.set_stopped(&slot.path, ActorState::Restarting);
        }
    }

    /// Stops every child in reverse start order and forgets them.
    async fn stop_children(&mut self, myself: &ActorRef<SupervisorMsg>) {
        for i in (0..self.children.len()).rev() {
            self.stop_child(myself, i).await;
            self.tree.remove(&self.children[i].path);
        }
    }
}
