//! The payments service's request logic: a simulated provider with a
//! configurable latency, deterministic declines and random transient
//! failures, in front of an idempotent ledger.

use std::time::Duration;

use super::messages::{PaymentsRequest, PaymentsResponse};
use super::store::PaymentsStore;
use super::{Payments, PaymentsConfig};
use crate::common::ShopError;
use crate::entry::{EntryActor, Handler};

/// The payments entry actor.
pub(crate) type PaymentsActor = EntryActor<PaymentsState>;

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct PaymentsState {
    pub(crate) store: PaymentsStore,
    pub(crate) config: PaymentsConfig,
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
                "payment declined: {amount_cents} cents is over the limit of {limit}"
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
    type Service = Payments;

    async fn serve(&self, request: PaymentsRequest) -> Result<PaymentsResponse, ShopError> {
        let found = |p: Option<_>| p.map_or(PaymentsResponse::None, PaymentsResponse::Payment);
        match request {
            PaymentsRequest::Charge {
                order_id,
                amount_cents,
            } => {
                // A repeated charge returns the first one without asking the
                // provider again: never two charges for one order.
                if let Some(existing) = self.store.get(order_id)? {
                    return Ok(PaymentsResponse::Payment(existing));
                }
                self.provider(amount_cents).await?;
                self.store
                    .charge(order_id, amount_cents)
                    .await
                    .map(PaymentsResponse::Payment)
            }
            PaymentsRequest::Refund { order_id } => self.store.refund(order_id).await.map(found),
            PaymentsRequest::Get { order_id } => self.store.get(order_id).map(found),
        }
    }
}
