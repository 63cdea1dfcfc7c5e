//! The products service's typed API: catalog, stock and reservations.

use serde::{Deserialize, Serialize};

use crate::common::{LineItem, Page, PageRequest};

/// A product and its available stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Positive id below 2^53.
    pub id: u64,
    /// Display name, 1..=256 bytes.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: u64,
    /// Stock available to new orders (reserved stock is not counted).
    pub quantity: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Incremented by every change.
    pub version: u64,
}

/// Fields of a new product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProduct {
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: u64,
    /// Initial stock.
    pub quantity: u64,
}

/// Fields to change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New unit price in cents.
    pub price_cents: Option<u64>,
    /// New available stock.
    pub quantity: Option<u64>,
}

/// Where an order's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationState {
    /// Stock is held for the order.
    Reserved,
    /// The order completed: the stock is sold.
    Committed,
    /// The order was cancelled: the stock is back.
    Released,
}

/// What the products service is asked. `Reserve`, `Release` and `Commit`
/// are idempotent by order id (the saga may repeat them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductsRequest {
    /// Create a product (`Product`).
    Create(NewProduct),
    /// Read one (`Product`).
    Get(u64),
    /// Read a page, by id (`Page`).
    List(PageRequest),
    /// Change one (`Product`).
    Update {
        /// The product.
        id: u64,
        /// What to change.
        patch: ProductPatch,
    },
    /// Delete one (`Deleted`); refused while stock is reserved for it.
    Delete(u64),
    /// Hold stock for every item of an order, all or nothing
    /// (`Reservation`). Refused (`ShopError::Rejected`) when a product is
    /// missing, short of stock, or priced differently from the item.
    Reserve {
        /// The order.
        order_id: u64,
        /// What it needs.
        items: Vec<LineItem>,
    },
    /// Give a reservation's stock back (`Reservation`). Releasing an
    /// unknown order records it as released, so a late `Reserve` for it is
    /// refused.
    Release {
        /// The order.
        order_id: u64,
    },
    /// Make a reservation final (`Reservation`).
    Commit {
        /// The order.
        order_id: u64,
    },
    /// How many events wait in the outbox (`PendingEvents`).
    PendingEvents,
}

/// What the products service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductsResponse {
    /// One product.
    Product(Product),
    /// A page of products.
    Page(Page<Product>),
    /// The product is gone.
    Deleted,
    /// Where the order's reservation stands now.
    Reservation(ReservationState),
    /// Events written and not yet confirmed by every subscriber.
    PendingEvents(u64),
}
