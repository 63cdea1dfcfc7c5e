//! The orders service's typed API.

use serde::{Deserialize, Serialize};

use crate::common::{LineItem, Page, PageRequest};

/// Where an order stands. Only `Pending` ever changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// The saga is running.
    Pending,
    /// Paid, stock committed.
    Completed,
    /// Cancelled; compensations (refund, release) are done.
    Cancelled,
}

impl OrderStatus {
    /// The API's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An order (the read model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Positive id below 2^53.
    pub id: u64,
    /// The user who placed it.
    pub user_id: u64,
    /// What was ordered.
    pub items: Vec<LineItem>,
    /// Sum of quantity × unit price, in cents.
    pub total_cents: u64,
    /// Pending, completed or cancelled.
    pub status: OrderStatus,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// When it was placed, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Number of events in its stream (the edge's ETag).
    pub version: u64,
}

/// A new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// The user placing it.
    pub user_id: u64,
    /// What they order (1..=100 lines).
    pub items: Vec<LineItem>,
    /// With an idempotency key, placing the same order again returns the
    /// first one; the same key with a different body is a conflict.
    pub idempotency_key: Option<String>,
}

/// What the orders service is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrdersRequest {
    /// Place an order and start its saga (`Order`, status pending).
    Place(PlaceOrder),
    /// Read one (`Order`).
    Get(u64),
    /// A user's orders, newest id last (`Page`).
    ListByUser {
        /// The user.
        user_id: u64,
        /// Which page.
        page: PageRequest,
    },
    /// Ask to cancel a pending order (`Order`). Compensation runs in the
    /// saga; an order that is already completed or cancelled is a conflict.
    Cancel(u64),
    /// An order's event history, oldest first (`Events`).
    Events(u64),
    /// How many events wait in the outbox (`PendingEvents`).
    PendingEvents,
}

/// What the orders service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrdersResponse {
    /// One order.
    Order(Order),
    /// A page of orders.
    Page(Page<Order>),
    /// An order's history.
    Events(Vec<OrderEventRecord>),
    /// Events written and not yet confirmed by every subscriber.
    PendingEvents(u64),
}

/// One event of an order's history, as its stream recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventRecord {
    /// Its position in the stream, from 1.
    pub version: u64,
    /// What happened: `placed`, `user_validated`, `stock_reserved`,
    /// `payment_charged`, `commit_started`, `stock_committed`, `completed`,
    /// `cancel_requested`, `compensating`, `payment_refunded`,
    /// `stock_released`, `cancelled`.
    pub name: String,
    /// The reason it carries (cancel requests, compensation, cancellation).
    pub reason: Option<String>,
    /// The order's status once this event is applied.
    pub status: OrderStatus,
}
