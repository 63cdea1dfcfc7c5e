//! The orders service's request logic, run by the shared entry actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Orders;
use super::messages::{Order, OrderStatus, OrdersRequest, OrdersResponse, PlaceOrder};
use super::saga::Sagas;
use super::state::OrderEvent;
use super::store::{OrdersStore, Prepared, RecordError};
use crate::common::{ShopError, now_ms};
use crate::entry::{EntryActor, Handler};
use crate::injected::{InjectedBug, active};
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
    /// How many times the entry actor started; shared by every clone, so
    /// a task can tell that the actor it was started from has died
    /// (used by the injected `ack-before-write` bug only).
    pub(crate) starts: Arc<AtomicU64>,
}

/// How long the injected `ack-before-write` bug holds a write after
/// acknowledging it.
const ACK_BEFORE_WRITE_DELAY: Duration = Duration::from_millis(25);

impl OrdersState {
    /// The injected `ack-before-write` bug: answers a new order first and
    /// writes it later, unless the entry actor restarted meanwhile.
    async fn place_ack_before_write(&self, order: PlaceOrder) -> Result<Order, ShopError> {
        let (id, total_cents) = match self.store.prepare(&order).await? {
            Prepared::Replay(existing) => return Ok(existing),
            Prepared::New { id, total_cents } => (id, total_cents),
        };
        let acked = Order {
            id,
            user_id: order.user_id,
            items: order.items.clone(),
            total_cents,
            status: OrderStatus::Pending,
            reason: None,
            created_at_ms: now_ms(),
            version: 1,
        };
        let started = self.starts.load(Ordering::SeqCst);
        let this = self.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(ACK_BEFORE_WRITE_DELAY).await;
            if this.starts.load(Ordering::SeqCst) == started
                && this.store.write_new(order, id, total_cents).await.is_ok()
            {
                this.sagas.ensure(id);
            }
        });
        Ok(acked)
    }

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
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.sagas.resume_pending();
    }

    async fn serve(&self, request: OrdersRequest) -> Result<OrdersResponse, ShopError> {
        match request {
            OrdersRequest::Place(order) if active(InjectedBug::AckBeforeWrite) => self
                .place_ack_before_write(order)
                .await
                .map(OrdersResponse::Order),
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
            OrdersRequest::Events(id) => self.store.events(id).map(OrdersResponse::Events),
            OrdersRequest::PendingEvents => Ok(OrdersResponse::PendingEvents(
                self.store.outbox.pending_len()?,
            )),
        }
    }
}
