//! The products service's request logic, run by the shared entry actor.

use super::Products;
use super::messages::{ProductsRequest, ProductsResponse};
use super::store::ProductsStore;
use crate::common::ShopError;
use crate::entry::{EntryActor, Handler};
use crate::worker::Kick;
use tokio_util::task::TaskTracker;

/// The products entry actor.
pub(crate) type ProductsActor = EntryActor<ProductsState>;

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct ProductsState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: ProductsStore,
    pub(crate) kick: Kick,
}

impl Handler for ProductsState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Products;

    async fn serve(&self, request: ProductsRequest) -> Result<ProductsResponse, ShopError> {
        use ProductsResponse::{Deleted, Page, Product, Reservation};
        let store = &self.store;
        match request {
            ProductsRequest::Create(new) => store.create(new).await.map(Product),
            ProductsRequest::Get(id) => store.get(id).map(Product),
            ProductsRequest::List(page) => store.list(page).map(Page),
            ProductsRequest::Update { id, patch } => store.update(id, patch).await.map(Product),
            ProductsRequest::Delete(id) => store.delete(id).await.map(|()| Deleted),
            ProductsRequest::Reserve { order_id, items } => {
                let state = store.reserve(order_id, &items).await?;
                self.kick.kick();
                Ok(Reservation(state))
            }
            ProductsRequest::Release { order_id } => store.release(order_id).await.map(Reservation),
            ProductsRequest::Commit { order_id } => store.commit(order_id).await.map(Reservation),
            ProductsRequest::PendingEvents => {
                Ok(ProductsResponse::PendingEvents(store.outbox.pending_len()?))
            }
        }
    }
}
