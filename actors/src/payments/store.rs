//! The payments service's tables: payments by order id, and orders refunded
//! before any charge (so a late charge is refused).

use bulwark_storage::{Store, StoreError, Table};

use super::messages::{Movement, MovementKind, Payment, PaymentStatus};
use crate::common::{ShopError, now_ms};

/// The payments store.
#[derive(Debug, Clone)]
pub(crate) struct PaymentsStore {
    store: Store,
    payments: Table<u64, Payment>,
    /// Orders refunded with nothing charged: value is the refund time.
    voided: Table<u64, u64>,
    /// Every movement by (order, position from 1), written in the same
    /// write as the payment's change.
    ledger: Table<(u64, u64), Movement>,
}

impl PaymentsStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            payments: store.table("payments")?,
            voided: store.table("voided")?,
            ledger: store.table("ledger")?,
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

    /// The order's movements, oldest first.
    pub(crate) fn ledger(&self, order_id: u64) -> Result<Vec<Movement>, ShopError> {
        self.ledger
            .with_first(&order_id)
            .map(|row| row.map(|(_, movement)| movement).map_err(ShopError::from))
            .collect()
    }

    /// Appends a movement to the order's ledger in `tx`. The caller holds
    /// the order's lock, so counting outside the write sees every earlier
    /// movement of the order.
    fn record_movement(
        &self,
        tx: &bulwark_storage::Tx<'_>,
        order_id: u64,
        kind: MovementKind,
        amount_cents: u64,
    ) -> Result<(), ShopError> {
        let position = self.ledger.with_first(&order_id).count() as u64 + 1;
        self.ledger.insert(
            tx,
            &(order_id, position),
            &Movement {
                kind,
                amount_cents,
                at_ms: now_ms(),
            },
        )?;
        Ok(())
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
                    if crate::injected::active(crate::injected::InjectedBug::DoubleCharge) {
                        // The bug: a retried charge moves the money again.
                        self.record_movement(tx, order_id, MovementKind::Charge, amount_cents)?;
                    }
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
                self.record_movement(tx, order_id, MovementKind::Charge, amount_cents)?;
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
                    self.record_movement(tx, order_id, MovementKind::Refund, payment.amount_cents)?;
                }
                Ok::<_, ShopError>(Some(payment))
            })
            .await
    }
}
