//! What every handler shares.

use std::sync::Arc;

use bulwark_runtime::Node;

use crate::auth::Limiter;
use crate::config::EdgeConfig;
use crate::metrics::Metrics;

/// The handlers' state: the node (its router reaches every service), the
/// edge's limits, its metrics and its rate limiter. One `Arc`: axum clones
/// the state for each middleware and extractor of every request, so a clone
/// is one atomic increment.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<AppStateInner>);

/// What [`AppState`] shares.
#[derive(Debug)]
pub(crate) struct AppStateInner {
    pub(crate) node: Node,
    pub(crate) config: Arc<EdgeConfig>,
    pub(crate) metrics: Arc<Metrics>,
    /// The REST API's rate limiter, when a limit is configured.
    pub(crate) limiter: Option<Arc<Limiter>>,
}

impl AppState {
    pub(crate) fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}
