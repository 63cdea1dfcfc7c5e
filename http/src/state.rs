//! What every handler shares.

use std::sync::Arc;

use bulwark_runtime::Node;

use crate::auth::Limiter;
use crate::config::EdgeConfig;
use crate::metrics::Metrics;

/// The handlers' state: the node (its router reaches every service), the
/// edge's limits, its metrics and its rate limiter. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) node: Node,
    pub(crate) config: Arc<EdgeConfig>,
    pub(crate) metrics: Arc<Metrics>,
    /// The REST API's rate limiter, when a limit is configured.
    pub(crate) limiter: Option<Arc<Limiter>>,
}
