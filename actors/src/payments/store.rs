//! The payments service's tables: payments by order id, and orders refunded
//! before any charge (so a late charge is refused).

use bulwark_storage::{Store, StoreError, Table};

use super::messages::{Payment, PaymentStatus};
use crate::common::{ShopError, now_ms};

/// The payments store.
#[derive(Debug, Clone)]
pub(crate) struct PaymentsStore {
    store: Store,
    payments: Table<u64, Payment>,
    /// Orders refunded with nothing charged: value is the refund time.
    voided: Table<u64, u64>,
}

impl PaymentsStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            payments: store.table("payments")?,
            voided: store.table("voided")?,
            store,
        })
    }

    /// Waits until every write applied so far is durable.
    pub(crate) async fn sync(&self) -> Result<(), ShopError> {
        Ok(self.store.sync().await?)
    }

    pub(crate) fn get(&self, order_id: u64) -> Result<Option<Payment>, ShopError> {
        Ok(self.payments.get(&order_id)?)
    }

    /// Records a charge unless one exists (then returns it) or the order was
    /// voided.
    pub(crate) async fn charge(
        &self,
        order_id: u64,
        amount_cents: u64,
    ) -> Result<Payment, ShopError> {
        self.store
            .write(|tx| {
                if let Some(existing) = self.payments.get_in(tx, &order_id)? {
                    return Ok(existing);
                }
                if self.voided.get_in(tx, &order_id)?.is_some() {
                    return Err(ShopError::rejected(format!(
                        "order {order_id} was refunded before it was charged"
                    )));
                }
                let payment = Payment {
                    order_id,
                    amount_cents,
                    status: PaymentStatus::Charged,
                    charged_at_ms: now_ms(),
                    refunded_at_ms: None,
                };
                self.payments.insert(tx, &order_id, &payment)?;
                Ok(payment)
            })
            .await
    }

    /// Refunds the order's charge; with no charge, voids the order.
    pub(crate) async fn refund(&self, order_id: u64) -> Result<Option<Payment>, ShopError> {
        self.store
            .write(|tx| {
                let Some(mut payment) = self.payments.get_in(tx, &order_id)? else {
                    if self.voided.get_in(tx, &order_id)?.is_none() {
                        self.voided.insert(tx, &order_id, &now_ms())?;
                    }
                    return Ok(None);
                };
                if payment.status == PaymentStatus::Charged {
                    payment.status = PaymentStatus::Refunded;
                    payment.refunded_at_ms = Some(now_ms());
                    self.payments.insert(tx, &order_id, &payment)?;
                }
                Ok::<_, ShopError>(Some(payment))
            })
            .await
    }
}
