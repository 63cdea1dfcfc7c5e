//! `/api/v1/orders`: place (idempotent with `Idempotency-Key`), read (with
//! `?expand=user,products`), list by user, cancel.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use bulwark_actors::{
    LineItem, Order, Orders, OrdersRequest, OrdersResponse, PlaceOrder, Products, ProductsRequest,
    ProductsResponse, ShopError, UsersRequest, UsersResponse, call_users,
};
use bulwark_runtime::CallError;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::products::ProductBody;
use super::users::UserBody;
use super::{IdParam, PageBody, PageQuery, changed, created, single, unexpected};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query, RequestContext};
use crate::money::Price;
use crate::state::AppState;

/// The header that makes placing an order idempotent.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// One line of an order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineItemBody {
    /// The product.
    pub(crate) product_id: u64,
    /// How many, 1..=1000000.
    pub(crate) quantity: u64,
    /// The unit price the client expects; when the product's price differs
    /// the order is cancelled, with both prices in its reason.
    #[schema(value_type = f64, example = 12.5)]
    pub(crate) price: Price,
}

/// A new order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceOrderBody {
    /// The user placing it.
    pub(crate) user_id: u64,
    /// 1..=100 lines.
    #[serde(deserialize_with = "crate::extract::objects")]
    pub(crate) items: Vec<LineItemBody>,
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrderBody {
    /// Positive id.
    pub(crate) id: u64,
    /// The user who placed it.
    pub(crate) user_id: u64,
    /// What was ordered.
    pub(crate) items: Vec<LineItemBody>,
    /// `pending`, `completed` or `cancelled`.
    pub(crate) status: &'static str,
    /// Why it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Sum of quantity × price.
    #[schema(value_type = f64, example = 25.0)]
    pub(crate) total: Price,
    /// When it was placed, ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// Events in its history; the ETag.
    pub(crate) version: u64,
    /// The user (`?expand=user`); `null` when the user is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<UserBody>)]
    pub(crate) user: Option<serde_json::Value>,
    /// The products of its lines (`?expand=products`); products since
    /// deleted are left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) products: Option<Vec<ProductBody>>,
}

impl From<Order> for OrderBody {
    fn from(order: Order) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            items: order
                .items
                .into_iter()
                .map(|item| LineItemBody {
                    product_id: item.product_id,
                    quantity: item.quantity,
                    price: Price(item.price_cents),
                })
                .collect(),
            status: order.status.as_str(),
            reason: order.reason,
            total: Price(order.total_cents),
            created_at_ms: order.created_at_ms,
            version: order.version,
            user: None,
            products: None,
        }
    }
}

/// `GET /orders?user_id=&page=&page_size=`.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Whose orders (required).
    #[param(required = true, minimum = 1)]
    user_id: Option<u64>,
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

/// `GET /orders/{id}?expand=`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// Comma-separated: `user`, `products`.
    expand: Option<String>,
}

fn order(response: OrdersResponse, request: &str) -> Result<Order, ApiError> {
    match response {
        OrdersResponse::Order(order) => Ok(order),
        _ => Err(unexpected("orders", request)),
    }
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be sent once (the request carries more than one)",
        ));
    }
    match value.to_str() {
        Ok(key) => Ok(Some(key.to_owned())),
        Err(_) => Err(ApiError::invalid(
            "Idempotency-Key",
            "must be visible ASCII characters",
        )),
    }
}

/// Place an order; its saga (reserve stock, charge, commit) runs after the
/// answer. With `Idempotency-Key`, the same key and body give back the same
/// order; the same key with another body is a 409.
#[utoipa::path(
    post, path = "/api/v1/orders", tag = "orders",
    request_body = PlaceOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=128 visible ASCII characters")),
    responses(
        (status = 201, description = "Placed (or found by its idempotency key); status pending", body = OrderBody),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn place(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    let request = OrdersRequest::Place(PlaceOrder {
        user_id: body.user_id,
        items: body
            .items
            .into_iter()
            .map(|item| LineItem {
                product_id: item.product_id,
                quantity: item.quantity,
                price_cents: item.price.cents(),
            })
            .collect(),
        idempotency_key: idempotency_key(&headers)?,
    });
    let response = state
        .node
        .router()
        .call_with::<Orders>(context.call_context(), request)
        .await?;
    let order = order(response, "Place")?;
    let location = format!("/api/v1/orders/{}", order.id);
    Ok(created(&location, order.version, OrderBody::from(order)))
}

/// Read an order, optionally with its user and products.
#[utoipa::path(
    get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = u64, Path, minimum = 1, description = "Order id"), GetQuery),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown expand value", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Path(id): Path<IdParam>,
    Query(query): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let id = id.get("order")?;
    let (expand_user, expand_products) = expansions(query.expand.as_deref())?;
    let router = state.node.router();
    let response = router
        .call_with::<Orders>(context.call_context(), OrdersRequest::Get(id))
        .await?;
    let order = order(response, "Get")?;
    if !expand_user && !expand_products {
        return Ok(single(&headers, order.version, OrderBody::from(order)));
    }
    let user_id = order.user_id;
    let product_ids: BTreeSet<u64> = order.items.iter().map(|i| i.product_id).collect();
    let mut body = OrderBody::from(order);
    let user = async {
        if !expand_user {
            return Ok(None);
        }
        let found = call_users(
            router,
            state.config.users_shards,
            context.call_context(),
            UsersRequest::Get(user_id),
        )
        .await;
        match found {
            Ok(UsersResponse::User(user)) => serde_json::to_value(UserBody::from(user))
                .map(Some)
                .map_err(|err| ApiError::Internal {
                    detail: format!("cannot serialize a user: {err}"),
                }),
            Ok(_) => Err(unexpected("users", "Get")),
            Err(CallError::Service {
                error: ShopError::NotFound { .. },
                ..
            }) => Ok(Some(serde_json::Value::Null)),
            Err(err) => Err(ApiError::from(err)),
        }
    };
    // At most ORDER_LINES_MAX (100) distinct products: the fan-out is
    // bounded by the order itself.
    let products = async {
        if !expand_products {
            return Ok(None);
        }
        let calls = product_ids.iter().map(|&product_id| {
            router.call_with::<Products>(context.call_context(), ProductsRequest::Get(product_id))
        });
        let mut products = Vec::new();
        for found in join_all(calls).await {
            match found {
                Ok(ProductsResponse::Product(product)) => products.push(ProductBody::from(product)),
                Ok(_) => return Err(unexpected("products", "Get")),
                Err(CallError::Service {
                    error: ShopError::NotFound { .. },
                    ..
                }) => {}
                Err(err) => return Err(ApiError::from(err)),
            }
        }
        Ok(Some(products))
    };
    let (user, products) = futures::join!(user, products);
    body.user = user?;
    body.products = products?;
    // The expanded body changes with the user and products too, so it gets
    // no ETag derived from the order's version alone.
    Ok(Json(body).into_response())
}

/// Which expansions `?expand=` asks for.
fn expansions(expand: Option<&str>) -> Result<(bool, bool), ApiError> {
    let (mut user, mut products) = (false, false);
    for part in expand.unwrap_or_default().split(',').map(str::trim) {
        match part {
            "" => {}
            "user" => user = true,
            "products" => products = true,
            _ => {
                return Err(ApiError::invalid(
                    "expand",
                    "must be a comma-separated list of `user` and `products`",
                ));
            }
        }
    }
    Ok((user, products))
}

/// A user's orders, oldest first.
#[utoipa::path(
    get, path = "/api/v1/orders", tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of orders", body = PageBody<OrderBody>),
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
        .call_with::<Orders>(
            context.call_context(),
            OrdersRequest::ListByUser { user_id, page },
        )
        .await?;
    match response {
        OrdersResponse::Page(page) => {
            Ok(Json(PageBody::from_page(page, OrderBody::from)).into_response())
        }
        _ => Err(unexpected("orders", "ListByUser")),
    }
}

/// Ask to cancel a pending order; the saga runs the compensations, so the
/// answer may still say `pending`. A completed or cancelled order is a 409.
#[utoipa::path(
    post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = u64, Path, minimum = 1, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already completed or cancelled", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("order")?;
    let response = state
        .node
        .router()
        .call_with::<Orders>(context.call_context(), OrdersRequest::Cancel(id))
        .await?;
    let order = order(response, "Cancel")?;
    Ok(changed(order.version, OrderBody::from(order)))
}

/// One event of an order's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrderEventBody {
    /// Its position in the order's stream, from 1.
    pub(crate) version: u64,
    /// `placed`, `user_validated`, `stock_reserved`, `payment_charged`,
    /// `commit_started`, `stock_committed`, `completed`,
    /// `cancel_requested`, `compensating`, `payment_refunded`,
    /// `stock_released` or `cancelled`.
    pub(crate) event: String,
    /// The reason it carries (cancel requests, compensation, cancellation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The order's status once this event is applied.
    pub(crate) status: &'static str,
}

/// An order's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrderEventsBody {
    /// The order.
    pub(crate) order_id: u64,
    /// Every event, oldest first.
    pub(crate) events: Vec<OrderEventBody>,
}

/// An order's event history (the source of truth its status is folded
/// from), oldest first.
#[utoipa::path(
    get, path = "/api/v1/orders/{id}/events", tag = "orders",
    params(("id" = u64, Path, minimum = 1, description = "Order id")),
    responses(
        (status = 200, description = "The order's events", body = OrderEventsBody),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("order")?;
    let response = state
        .node
        .router()
        .call_with::<Orders>(context.call_context(), OrdersRequest::Events(id))
        .await?;
    let OrdersResponse::Events(events) = response else {
        return Err(unexpected("orders", "Events"));
    };
    let events = events
        .into_iter()
        .map(|record| OrderEventBody {
            version: record.version,
            event: record.name,
            reason: record.reason,
            status: record.status.as_str(),
        })
        .collect();
    Ok(Json(OrderEventsBody {
        order_id: id,
        events,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_accepts_user_and_products_in_any_order() {
        assert_eq!(expansions(None).unwrap(), (false, false));
        assert_eq!(expansions(Some("user")).unwrap(), (true, false));
        assert_eq!(expansions(Some("products, user")).unwrap(), (true, true));
        assert!(expansions(Some("payments")).is_err());
    }
}
