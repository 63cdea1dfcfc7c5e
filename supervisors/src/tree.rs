//! The live view of every supervised actor on a node: what the actor listing
//! shows and what kill-by-path acts on.

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use ractor::ActorCell;

use crate::spec::ChildKind;

/// A `/`-separated actor path: `users` is the root supervisor of the users
/// service, `users/entry` one of its children.
pub type ActorPath = String;

/// One actor in the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    /// Its path, e.g. `users/entry`.
    pub path: ActorPath,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// How many times it has been restarted since the node started.
    pub restarts: u32,
    /// Whether it is running right now or waiting to be restarted.
    pub state: ActorState,
}

impl ActorInfo {
    /// The first segment of the path: the service the actor belongs to.
    #[must_use]
    pub fn service(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }
}

/// Whether a listed actor is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    /// Running and linked to its supervisor.
    Running,
    /// Stopped; its supervisor will start it again (possibly after a backoff).
    Restarting,
    /// Its supervisor gave up on it (the entry of a service root that is down).
    Down,
}

/// Why a kill request did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// No actor has that path.
    #[error("no actor at path `{path}`")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The actor exists but is not running (restarting or down).
    #[error("actor `{path}` is not running")]
    NotRunning {
        /// The path asked for.
        path: String,
    },
}

#[derive(Debug)]
struct Entry {
    cell: Option<ActorCell>,
    kind: ChildKind,
    restarts: u32,
    state: ActorState,
}

/// Shared registry of a node's supervised actors, keyed by path.
///
/// Supervisors write it as they start, restart and stop children; readers
/// (the admin listing, chaos tests) see a consistent entry per actor. It is a
/// `DashMap` because listing and killing happen from request handlers on any
/// thread while supervisors update it from their own tasks.
#[derive(Clone, Default)]
pub struct Tree {
    entries: Arc<DashMap<ActorPath, Entry>>,
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("actors", &self.entries.len())
            .finish()
    }
}

impl Tree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every actor, sorted by path.
    #[must_use]
    pub fn list(&self) -> Vec<ActorInfo> {
        let mut all: Vec<ActorInfo> = self
            .entries
            .iter()
            .map(|e| ActorInfo {
                path: e.key().clone(),
                kind: e.kind,
                restarts: e.restarts,
                state: e.state,
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all
    }

    /// The listing entry of one path.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<ActorInfo> {
        self.entries.get(path).map(|e| ActorInfo {
            path: path.to_owned(),
            kind: e.kind,
            restarts: e.restarts,
            state: e.state,
        })
    }

    /// The running actor at `path`, if any.
    #[must_use]
    pub fn cell(&self, path: &str) -> Option<ActorCell> {
        self.entries.get(path).and_then(|e| e.cell.clone())
    }

    /// Kills the actor at `path` (as `exit(Pid, kill)` does in Erlang): its
    /// supervisor sees an abnormal exit and applies its strategy.
    ///
    /// # Errors
    /// [`KillError::NotFound`] for an unknown path, [`KillError::NotRunning`]
    /// when the actor is between restarts.
    pub fn kill(&self, path: &str) -> Result<(), KillError> {
        let cell = {
            let entry = self.entries.get(path).ok_or_else(|| KillError::NotFound {
                path: path.to_owned(),
            })?;
            entry.cell.clone().ok_or_else(|| KillError::NotRunning {
                path: path.to_owned(),
            })?
        };
        cell.kill();
        Ok(())
    }

    /// Records that the actor at `path` is running as `cell`.
    pub fn set_running(&self, path: &str, kind: ChildKind, cell: ActorCell, restarts: u32) {
        self.entries.insert(
            path.to_owned(),
            Entry {
                cell: Some(cell),
                kind,
                restarts,
                state: ActorState::Running,
            },
        );
    }

    /// Records that the actor at `path` stopped and is in state `state`;
    /// the actors below it are gone with it.
    pub fn set_stopped(&self, path: &str, state: ActorState) {
        if let Some(mut e) = self.entries.get_mut(path) {
            e.cell = None;
            e.state = state;
        }
        self.remove_below(path);
    }

    /// Removes `path` and everything below it.
    pub fn remove(&self, path: &str) {
        self.entries.remove(path);
        self.remove_below(path);
    }

    fn remove_below(&self, path: &str) {
        let prefix = format!("{path}/");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
    }
}
