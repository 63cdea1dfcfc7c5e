//! The payments service's request logic: a simulated provider with a
//! configurable latency, deterministic declines and random transient
//! failures, in front of an idempotent ledger.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use super::messages::{PaymentsRequest, PaymentsResponse};
use super::store::PaymentsStore;
use super::{Payments, PaymentsConfig};
use crate::common::{ShopError, money};
use crate::entry::{EntryActor, Handler};
use crate::injected::InjectedBug;
use tokio_util::task::TaskTracker;

/// The payments entry actor.
pub(crate) type PaymentsActor = EntryActor<PaymentsState>;

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct PaymentsState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: PaymentsStore,
    pub(crate) config: PaymentsConfig,
    /// Charges and refunds of one order run one at a time (striped by
    /// order id), so two concurrent charges never both reach the provider
    /// and a refund never races a charge still at the provider.
    pub(crate) locks: OrderLocks,
}

/// Lock stripes: bounded memory whatever the number of orders.
const ORDER_LOCK_STRIPES: u64 = 64;

/// Per-order mutual exclusion, striped.
#[derive(Debug, Clone)]
pub(crate) struct OrderLocks(Arc<[Mutex<()>]>);

impl Default for OrderLocks {
    fn default() -> Self {
        Self((0..ORDER_LOCK_STRIPES).map(|_| Mutex::new(())).collect())
    }
}

impl OrderLocks {
    async fn lock(&self, order_id: u64) -> MutexGuard<'_, ()> {
        let stripe = usize::try_from(order_id % ORDER_LOCK_STRIPES).unwrap_or_default();
        self.0[stripe].lock().await
    }
}

impl PaymentsState {
    /// The provider's answer to a new charge.
    async fn provider(&self, amount_cents: u64) -> Result<(), ShopError> {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        if let Some(limit) = self.config.decline_over_cents
            && amount_cents > limit
        {
            return Err(ShopError::rejected(format!(
                "payment declined: {} is over the limit of {}",
                money(amount_cents),
                money(limit)
            )));
        }
        if self.config.failure_rate > 0.0 && rand::random::<f64>() < self.config.failure_rate {
            return Err(ShopError::Transient {
                reason: "payment provider failed; retry".to_owned(),
            });
        }
        Ok(())
    }
}

impl Handler for PaymentsState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Payments;

    async fn serve(&self, request: PaymentsRequest) -> Result<PaymentsResponse, ShopError> {
        let found = |p: Option<_>| p.map_or(PaymentsResponse::None, PaymentsResponse::Payment);
        match request {
            PaymentsRequest::Charge {
                order_id,
                amount_cents,
            } => {
                let _order = self.locks.lock(order_id).await;
                let double_charge = crate::injected::active(InjectedBug::DoubleCharge);
                // A repeated charge returns the first one without asking the
                // provider again: never two charges for one order. The
                // record read may not be durable yet: sync before answering.
                if !double_charge && let Some(existing) = self.store.get(order_id)? {
                    self.store.sync().await?;
                    return Ok(PaymentsResponse::Payment(existing));
                }
                self.provider(amount_cents).await?;
                let payment = self.store.charge(order_id, amount_cents).await?;
                if double_charge && rand::random::<bool>() {
                    // The fault that makes the bug show: the answer of an
                    // applied charge is lost, so the saga retries it.
                    return Err(ShopError::Transient {
                        reason: "payment provider answer lost".to_owned(),
                    });
                }
                Ok(PaymentsResponse::Payment(payment))
            }
            PaymentsRequest::Refund { order_id } => {
                let _order = self.locks.lock(order_id).await;
                self.store.refund(order_id).await.map(found)
            }
            PaymentsRequest::Get { order_id } => self.store.get(order_id).map(found),
            PaymentsRequest::Ledger { order_id } => {
                self.store.ledger(order_id).map(PaymentsResponse::Ledger)
            }
        }
    }
}
