//! The orders service's request logic, run by the shared entry actor.

use super::Orders;
use super::messages::{OrderStatus, OrdersRequest, OrdersResponse};
use super::saga::Sagas;
use super::state::OrderEvent;
use super::store::{OrdersStore, RecordError};
use crate::common::ShopError;
use crate::entry::{EntryActor, Handler};
use tokio_util::task::TaskTracker;

/// The orders entry actor.
pub(crate) type OrdersActor = EntryActor<OrdersState>;

/// Attempts of a cancel request that races with the saga's own appends.
const CANCEL_ATTEMPTS_MAX: u32 = 16;

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct OrdersState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: OrdersStore,
    pub(crate) sagas: Sagas,
}

impl OrdersState {
    async fn cancel(&self, id: u64) -> Result<OrdersResponse, ShopError> {
        for _ in 0..CANCEL_ATTEMPTS_MAX {
            let state = self.store.load(id)?;
            if state.outcome.is_none() && state.cancel_requested.is_some() {
                return Ok(OrdersResponse::Order(state.view(id)));
            }
            if !state.cancellable() {
                let why = match state.status() {
                    OrderStatus::Pending => "is already completing".to_owned(),
                    status => format!("is already {}", status.as_str()),
                };
                return Err(ShopError::conflict(format!("order {id} {why}")));
            }
            let event = OrderEvent::CancelRequested {
                reason: "cancelled on request".to_owned(),
            };
            match self.store.record(id, &state, &[event]).await {
                Ok(next) => {
                    self.sagas.ensure(id);
                    return Ok(OrdersResponse::Order(next.view(id)));
                }
                Err(RecordError::Conflict) => {}
                Err(RecordError::Failed(err)) => return Err(err),
            }
        }
        Err(ShopError::Transient {
            reason: format!("order {id} changed too often to cancel; retry"),
        })
    }
}

impl Handler for OrdersState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Orders;

    fn on_start(&self) {
        self.sagas.resume_pending();
    }

    async fn serve(&self, request: OrdersRequest) -> Result<OrdersResponse, ShopError> {
        match request {
            OrdersRequest::Place(order) => {
                let (order, _new) = self.store.place(order).await?;
                // Also on a replay: its saga may have stopped early.
                if order.status == OrderStatus::Pending {
                    self.sagas.ensure(order.id);
                }
                Ok(OrdersResponse::Order(order))
            }
            OrdersRequest::Get(id) => self.store.get(id).map(OrdersResponse::Order),
            OrdersRequest::ListByUser { user_id, page } => self
                .store
                .list_by_user(user_id, page)
                .map(OrdersResponse::Page),
            OrdersRequest::Cancel(id) => self.cancel(id).await,
        }
    }
}
