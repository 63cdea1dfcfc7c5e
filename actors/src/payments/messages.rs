//! The payments service's typed API (a simulated provider).

use serde::{Deserialize, Serialize};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// The amount was charged.
    Charged,
    /// The charge was refunded.
    Refunded,
}

/// The payment of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The order paid for.
    pub order_id: u64,
    /// Amount charged, in cents.
    pub amount_cents: u64,
    /// Charged or refunded.
    pub status: PaymentStatus,
    /// When it was charged, ms since the Unix epoch.
    pub charged_at_ms: u64,
    /// When it was refunded.
    pub refunded_at_ms: Option<u64>,
}

/// A movement of money at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MovementKind {
    /// Money taken from the customer.
    Charge,
    /// Money given back.
    Refund,
}

/// One entry of an order's ledger: every charge and refund that reached
/// the provider, in order. A correct service writes at most one of each
/// per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Charge or refund.
    pub kind: MovementKind,
    /// Amount moved, in cents.
    pub amount_cents: u64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// What the payments service is asked. `Charge` and `Refund` are idempotent
/// by order id: a repeated charge returns the existing payment and never
/// charges twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentsRequest {
    /// Charge an order (`Payment`). `ShopError::Rejected` when declined,
    /// `ShopError::Transient` on a simulated provider failure (retry).
    Charge {
        /// The order.
        order_id: u64,
        /// Amount in cents.
        amount_cents: u64,
    },
    /// Refund an order's charge (`Payment`, or `None` when nothing was
    /// charged: the refund is then recorded so a late charge is refused).
    Refund {
        /// The order.
        order_id: u64,
    },
    /// Read an order's payment (`Payment` or `None`).
    Get {
        /// The order.
        order_id: u64,
    },
    /// Read an order's ledger (`Ledger`, empty when nothing moved).
    Ledger {
        /// The order.
        order_id: u64,
    },
}

/// What the payments service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentsResponse {
    /// The order's payment.
    Payment(Payment),
    /// The order has no payment.
    None,
    /// An order's movements, oldest first.
    Ledger(Vec<Movement>),
}
