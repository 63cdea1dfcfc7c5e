//! `/api/v1/notifications`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bulwark_actors::{
    Delivery, DeliveryStatus, Notification, Notifications, NotificationsRequest,
    NotificationsResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{PageBody, PageQuery};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, RequestContext};
use crate::state::AppState;

/// A notification for a user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct NotificationBody {
    /// Positive id.
    pub(crate) id: u64,
    /// Who it is for.
    pub(crate) user_id: u64,
    /// The event's name: `user.created`, `order.completed`, `order.cancelled`.
    pub(crate) kind: String,
    /// The order it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<u64>,
    /// Human-readable text.
    pub(crate) message: String,
    /// The id of the event it came from.
    pub(crate) event_id: String,
    /// When it was recorded, ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// Its webhook delivery; absent when no webhook was configured as it
    /// was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delivery: Option<DeliveryBody>,
}

/// A notification's webhook delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryBody {
    /// `pending` (attempts go on), `delivered` (the webhook answered 2xx)
    /// or `failed` (every attempt failed).
    pub(crate) status: &'static str,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// Why the last failed attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    /// When the next attempt is due, ms since the Unix epoch (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt_at_ms: Option<u64>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        Self {
            status: d.status.as_str(),
            attempts: d.attempts,
            last_error: d.last_error,
            next_attempt_at_ms: (d.status == DeliveryStatus::Pending)
                .then_some(d.next_attempt_at_ms),
        }
    }
}

impl From<Notification> for NotificationBody {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            user_id: n.user_id,
            kind: n.kind,
            order_id: n.order_id,
            message: n.message,
            event_id: n.event_id,
            created_at_ms: n.created_at_ms,
            delivery: n.delivery.map(DeliveryBody::from),
        }
    }
}

/// `GET /notifications?user_id=&page=&page_size=`.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Whose notifications (required).
    #[param(required = true, minimum = 1)]
    user_id: Option<u64>,
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

/// A user's notifications, oldest first.
#[utoipa::path(
    get, path = "/api/v1/notifications", tag = "notifications",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of notifications", body = PageBody<NotificationBody>),
        (status = 422, description = "Missing user_id, bad page or page_size", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let user_id = query
        .user_id
        .ok_or_else(|| ApiError::invalid("user_id", "is required"))?;
    let page = PageQuery {
        page: query.page,
        page_size: query.page_size,
    }
    .request()?;
    let response = state
        .node
        .router()
        .call_with::<Notifications>(
            context.call_context(),
            NotificationsRequest::ListByUser { user_id, page },
        )
        .await?;
    let NotificationsResponse::Page(page) = response;
    Ok(Json(PageBody::from_page(page, NotificationBody::from)).into_response())
}
