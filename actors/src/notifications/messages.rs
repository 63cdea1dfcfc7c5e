//! The notifications service's typed API. It consumes [`crate::ShopEvents`]
//! and records one notification per event.

use serde::{Deserialize, Serialize};

use crate::common::{Page, PageRequest};

/// A notification for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Positive id below 2^53.
    pub id: u64,
    /// Who it is for.
    pub user_id: u64,
    /// The event's name: `user.created`, `order.completed`,
    /// `order.cancelled`.
    pub kind: String,
    /// The order it is about, if any.
    pub order_id: Option<u64>,
    /// Human-readable text.
    pub message: String,
    /// The id of the event it came from (unique: one notification per
    /// event).
    pub event_id: String,
    /// When it was recorded, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Its webhook delivery, when a webhook was configured as it was
    /// recorded.
    pub delivery: Option<Delivery>,
}

/// Where a notification's webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempts go on.
    Pending,
    /// The webhook answered 2xx.
    Delivered,
    /// Every attempt failed; no more are made.
    Failed,
}

impl DeliveryStatus {
    /// The status's name in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// A notification's webhook delivery: at least once, retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due, ms since the Unix epoch (pending only).
    pub next_attempt_at_ms: u64,
    /// When this record last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// What the notifications service is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationsRequest {
    /// A user's notifications, oldest first (`Page`).
    ListByUser {
        /// The user.
        user_id: u64,
        /// Which page.
        page: PageRequest,
    },
}

/// What the notifications service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationsResponse {
    /// A page of notifications.
    Page(Page<Notification>),
}
