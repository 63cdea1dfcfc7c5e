//! bulwark-actors: the shop's services on the Bulwark runtime.
//!
//! Five services, each a supervised tree with its own store:
//!
//! | service | owns | API |
//! |---|---|---|
//! | [`Users`] | users, unique username/email | [`UsersRequest`] |
//! | [`Products`] | catalog, stock, reservations by order id | [`ProductsRequest`] |
//! | [`Orders`] | event-sourced orders, the saga, orders by user | [`OrdersRequest`] |
//! | [`Payments`] | payments by order id (simulated provider) | [`PaymentsRequest`] |
//! | [`Notifications`] | notifications by user, from events | [`NotificationsRequest`] |
//!
//! Every service answers with [`ShopError`] on failure. Writes are
//! acknowledged only once durable (the store's group commit). Events leave
//! users, products and orders through their outboxes and reach
//! notifications on the [`ShopEvents`] topic, at least once, deduped by
//! event id.
//!
//! Layout: one folder per service — `messages.rs` (its typed API),
//! `store.rs` (its tables), `actor.rs` (its actors), `mod.rs` (the
//! `Service` impl); `common.rs` (shared types), `relay.rs` (outbox relay),
//! `shop.rs` (installs all five on a node).

mod common;
mod entry;
pub mod injected;
mod notifications;
mod orders;
mod payments;
mod products;
mod relay;
mod shop;
mod users;
mod worker;

pub use common::{
    EventKind, LineItem, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, Page, PageRequest, ShopError, ShopEvent,
    ShopEvents, TEXT_LEN_MAX,
};
pub use notifications::Notifications;
pub use notifications::messages::{
    Delivery, DeliveryStatus, Notification, NotificationsRequest, NotificationsResponse,
};
pub use notifications::webhook::{
    WEBHOOK_ATTEMPTS_DEFAULT, WEBHOOK_BACKOFF_INITIAL_DEFAULT, WEBHOOK_BACKOFF_MAX_DEFAULT,
    WEBHOOK_TIMEOUT_DEFAULT, WebhookConfig, signature as webhook_signature,
};
pub use orders::Orders;
pub use orders::messages::{
    Order, OrderEventRecord, OrderStatus, OrdersRequest, OrdersResponse, PlaceOrder,
};
pub use payments::messages::{
    Movement, MovementKind, Payment, PaymentStatus, PaymentsRequest, PaymentsResponse,
};
pub use payments::{Payments, PaymentsConfig};
pub use products::Products;
pub use products::messages::{
    NewProduct, Product, ProductPatch, ProductsRequest, ProductsResponse, ReservationState,
};
pub use shop::{ShopConfig, ShopService, ShopSetupError, install};
pub use users::Users;
pub use users::messages::{NewUser, User, UserPatch, UsersRequest, UsersResponse};
pub use users::shards::{SHARDED_LIST_DEPTH_MAX, SHARDS_MAX, UserShards, call_users, jump_hash};
