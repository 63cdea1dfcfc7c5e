//! The orders service: event-sourced orders, the saga that fulfils them,
//! and the read model of orders by user.

mod actor;
pub(crate) mod messages;
mod saga;
mod state;
mod store;

use std::sync::Arc;

use bulwark_runtime::{Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};
use dashmap::DashMap;

use crate::common::ShopError;
use crate::relay::{Kick, with_relay};
use crate::users::shards::UserShards;
use actor::{OrdersActor, OrdersState};
use messages::{OrdersRequest, OrdersResponse};
use saga::Sagas;
use store::OrdersStore;

/// The orders service.
#[derive(Debug)]
pub struct Orders {
    store: OrdersStore,
    kick: Kick,
    running: Arc<DashMap<u64, ()>>,
    users: UserShards,
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
            running: Arc::default(),
            users: UserShards::SINGLE,
        })
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
            Arc::clone(&self.running),
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
