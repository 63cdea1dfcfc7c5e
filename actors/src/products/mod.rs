//! The products service: the catalog, stock, and reservations by order id.

mod actor;
pub(crate) mod messages;
mod store;

use bulwark_runtime::{Service, ServiceContext, ServiceTree, Strategy};
use bulwark_storage::{Store, StoreError};

use crate::common::ShopError;
use crate::relay::with_relay;
use crate::worker::Kick;
use actor::{ProductsActor, ProductsState};
use messages::{ProductsRequest, ProductsResponse};
use store::ProductsStore;

/// The products service. Holds its open store, which outlives actor restarts.
#[derive(Debug)]
pub struct Products {
    store: ProductsStore,
    kick: Kick,
}

impl Products {
    /// The service on an open store.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            store: ProductsStore::open(store)?,
            kick: Kick::default(),
        })
    }
}

impl Service for Products {
    const NAME: &'static str = "products";
    type Request = ProductsRequest;
    type Response = ProductsResponse;
    type Error = ShopError;

    /// Reads are retried after a crash of the serving actor.
    fn idempotent_copy(request: &ProductsRequest) -> Option<ProductsRequest> {
        matches!(
            request,
            ProductsRequest::Get(_) | ProductsRequest::List(_) | ProductsRequest::PendingEvents
        )
        .then(|| request.clone())
    }

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let state = ProductsState {
            store: self.store.clone(),
            kick: self.kick.clone(),
            tasks: ctx.tasks.clone(),
        };
        let tree = ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (ProductsActor::new(), state.clone()));
        with_relay(
            tree,
            self.store.outbox.clone(),
            ctx.router.clone(),
            self.kick.clone(),
        )
    }
}
