//! The payments service: a simulated payment provider with an idempotent
//! ledger of payments by order id.

mod actor;
pub(crate) mod messages;
mod store;

use bulwark_runtime::{Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};

use crate::common::ShopError;
use actor::{OrderLocks, PaymentsActor, PaymentsState};
use messages::{PaymentsRequest, PaymentsResponse};
use store::PaymentsStore;

/// The payment simulator's behaviour.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PaymentsConfig {
    /// Decline every charge above this many cents (deterministic).
    pub decline_over_cents: Option<u64>,
    /// Probability (0.0–1.0) that a new charge fails transiently.
    pub failure_rate: f64,
    /// Simulated provider latency of a new charge, in milliseconds.
    pub latency_ms: u64,
}

/// The payments service.
#[derive(Debug)]
pub struct Payments {
    store: PaymentsStore,
    config: PaymentsConfig,
    locks: OrderLocks,
}

impl Payments {
    /// The service on an open store.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store, config: PaymentsConfig) -> Result<Self, StoreError> {
        Ok(Self {
            store: PaymentsStore::open(store)?,
            config,
            locks: OrderLocks::default(),
        })
    }
}

impl Service for Payments {
    const NAME: &'static str = "payments";
    type Request = PaymentsRequest;
    type Response = PaymentsResponse;
    type Error = ShopError;

    /// Reads are retried after a crash of the serving actor.
    fn idempotent_copy(request: &PaymentsRequest) -> Option<PaymentsRequest> {
        matches!(
            request,
            PaymentsRequest::Get { .. } | PaymentsRequest::Ledger { .. }
        )
        .then(|| request.clone())
    }

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let state = PaymentsState {
            store: self.store.clone(),
            config: self.config.clone(),
            locks: self.locks.clone(),
            tasks: ctx.tasks.clone(),
        };
        ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (PaymentsActor::new(), state.clone()))
    }
}
