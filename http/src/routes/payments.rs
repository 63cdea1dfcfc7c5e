//! `/api/v1/payments` (read-only: payments are made by the order saga).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bulwark_actors::{
    Movement, MovementKind, Payment, PaymentStatus, Payments, PaymentsRequest, PaymentsResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, RequestContext};
use crate::money::Price;
use crate::state::AppState;

/// The payment of one order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct PaymentBody {
    /// The order paid for.
    pub(crate) order_id: u64,
    /// The amount charged.
    #[schema(value_type = f64, example = 25.0)]
    pub(crate) amount: Price,
    /// `charged` or `refunded`.
    pub(crate) status: &'static str,
    /// When it was charged, ms since the Unix epoch.
    pub(crate) charged_at_ms: u64,
    /// When it was refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refunded_at_ms: Option<u64>,
}

impl From<Payment> for PaymentBody {
    fn from(payment: Payment) -> Self {
        Self {
            order_id: payment.order_id,
            amount: Price(payment.amount_cents),
            status: match payment.status {
                PaymentStatus::Charged => "charged",
                PaymentStatus::Refunded => "refunded",
            },
            charged_at_ms: payment.charged_at_ms,
            refunded_at_ms: payment.refunded_at_ms,
        }
    }
}

/// `GET /payments?order_id=`.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PaymentQuery {
    /// The order (required).
    #[param(required = true, minimum = 1)]
    order_id: Option<u64>,
}

/// An order's payment.
impl PaymentQuery {
    /// The order id, which both payment reads require.
    fn order_id(&self) -> Result<u64, ApiError> {
        self.order_id
            .ok_or_else(|| ApiError::invalid("order_id", "is required"))
    }
}

/// Sends `request` to payments within the request's context.
async fn ask(
    state: &AppState,
    context: &RequestContext,
    request: PaymentsRequest,
) -> Result<PaymentsResponse, ApiError> {
    Ok(state
        .node
        .router()
        .call_with::<Payments>(context.call_context(), request)
        .await?)
}

#[utoipa::path(
    get, path = "/api/v1/payments", tag = "payments",
    params(PaymentQuery),
    responses(
        (status = 200, description = "The order's payment", body = PaymentBody),
        (status = 404, description = "The order has no payment", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing order_id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<PaymentQuery>,
) -> Result<Response, ApiError> {
    let order_id = query.order_id()?;
    let response = ask(&state, &context, PaymentsRequest::Get { order_id }).await?;
    match response {
        PaymentsResponse::Payment(payment) => Ok(Json(PaymentBody::from(payment)).into_response()),
        PaymentsResponse::None => Err(ApiError::NotFound {
            detail: format!("order {order_id} has no payment"),
        }),
        PaymentsResponse::Ledger(_) => Err(super::unexpected("payments", "Get")),
    }
}

/// One movement of money at the provider.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MovementBody {
    /// `charge` or `refund`.
    pub(crate) kind: &'static str,
    /// The amount moved.
    #[schema(value_type = f64, example = 25.0)]
    pub(crate) amount: Price,
    /// When, ms since the Unix epoch.
    pub(crate) at_ms: u64,
}

impl From<Movement> for MovementBody {
    fn from(movement: Movement) -> Self {
        Self {
            kind: match movement.kind {
                MovementKind::Charge => "charge",
                MovementKind::Refund => "refund",
            },
            amount: Price(movement.amount_cents),
            at_ms: movement.at_ms,
        }
    }
}

/// An order's ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LedgerBody {
    /// The order.
    pub(crate) order_id: u64,
    /// Every charge and refund that reached the provider, oldest first: at
    /// most one of each.
    pub(crate) movements: Vec<MovementBody>,
}

/// An order's ledger: every movement of money at the provider (empty when
/// nothing was charged).
#[utoipa::path(
    get, path = "/api/v1/payments/ledger", tag = "payments",
    params(PaymentQuery),
    responses(
        (status = 200, description = "The order's movements", body = LedgerBody),
        (status = 422, description = "Missing order_id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn ledger(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<PaymentQuery>,
) -> Result<Response, ApiError> {
    let order_id = query.order_id()?;
    let response = ask(&state, &context, PaymentsRequest::Ledger { order_id }).await?;
    let PaymentsResponse::Ledger(movements) = response else {
        return Err(super::unexpected("payments", "Ledger"));
    };
    Ok(Json(LedgerBody {
        order_id,
        movements: movements.into_iter().map(MovementBody::from).collect(),
    })
    .into_response())
}
