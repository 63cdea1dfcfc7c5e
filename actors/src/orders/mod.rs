//! The orders service: event-sourced orders, the saga that fulfils them,
//! and the read model of orders by user.

mod actor;
pub(crate) mod messages;
mod saga;
mod state;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bulwark_runtime::{MetricKind, MetricSample, Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};

use crate::common::ShopError;
use crate::relay::with_relay;
use crate::users::shards::UserShards;
use crate::worker::Kick;
use actor::{OrdersActor, OrdersState};
use messages::{OrdersRequest, OrdersResponse};
use saga::{SagaShared, Sagas};
use store::OrdersStore;

/// The orders service.
#[derive(Debug)]
pub struct Orders {
    store: OrdersStore,
    kick: Kick,
    users: UserShards,
    sagas: Arc<SagaShared>,
}

impl Orders {
    /// The service on an open store.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            store: OrdersStore::open(store)?,
            kick: Kick::default(),
            users: UserShards::SINGLE,
            sagas: Arc::default(),
        })
    }

    /// A metrics source (`NodeBuilder::metrics`) for this service's sagas:
    /// `bulwark_saga_outcomes_total{outcome}` (completed, cancelled),
    /// `bulwark_saga_step_retries_total` and `bulwark_sagas_running`.
    pub fn metrics(&self) -> impl Fn() -> Vec<MetricSample> + Send + Sync + 'static {
        let stats = Arc::clone(&self.sagas);
        move || {
            let counter = |name, help, labels, value: &AtomicU64| MetricSample {
                name,
                help,
                kind: MetricKind::Counter,
                labels,
                #[allow(clippy::cast_precision_loss)] // counters far below 2^52
                value: value.load(Ordering::Relaxed) as f64,
            };
            let outcomes = "Order sagas this node finished, by outcome.";
            #[allow(clippy::cast_precision_loss)]
            let running = stats.running.len() as f64;
            vec![
                counter(
                    "bulwark_saga_outcomes_total",
                    outcomes,
                    vec![("outcome", "completed".to_owned())],
                    &stats.completed,
                ),
                counter(
                    "bulwark_saga_outcomes_total",
                    outcomes,
                    vec![("outcome", "cancelled".to_owned())],
                    &stats.cancelled,
                ),
                counter(
                    "bulwark_saga_step_retries_total",
                    "Failed saga step attempts that were retried.",
                    Vec::new(),
                    &stats.step_retries,
                ),
                MetricSample {
                    name: "bulwark_sagas_running",
                    help: "Order sagas running on this node now.",
                    kind: MetricKind::Gauge,
                    labels: Vec::new(),
                    value: running,
                },
            ]
        }
    }

    /// Reaches users split into `shards` (the saga validates each order's
    /// user on its shard).
    #[must_use]
    pub fn with_user_shards(mut self, shards: UserShards) -> Self {
        self.users = shards;
        self
    }
}

impl Service for Orders {
    const NAME: &'static str = "orders";
    type Request = OrdersRequest;
    type Response = OrdersResponse;
    type Error = ShopError;

    /// Reads are retried after a crash of the serving actor.
    fn idempotent_copy(request: &OrdersRequest) -> Option<OrdersRequest> {
        matches!(
            request,
            OrdersRequest::Get(_)
                | OrdersRequest::ListByUser { .. }
                | OrdersRequest::Events(_)
                | OrdersRequest::PendingEvents
        )
        .then(|| request.clone())
    }

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let sagas = Sagas::new(
            self.store.clone(),
            ctx.router.clone(),
            self.users,
            self.kick.clone(),
            Arc::clone(&self.sagas),
            ctx.shutdown.clone(),
            ctx.tasks.clone(),
        );
        let state = OrdersState {
            store: self.store.clone(),
            sagas,
            tasks: ctx.tasks.clone(),
            starts: Arc::default(),
        };
        let tree = ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (OrdersActor::new(), state.clone()));
        with_relay(
            tree,
            self.store.outbox.clone(),
            ctx.router.clone(),
            self.kick.clone(),
        )
    }
}
