//! `/api/v1/products`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_actors::{
    NewProduct, Product, ProductPatch, Products, ProductsRequest, ProductsResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{IdParam, PageBody, PageQuery, changed, created, single, unexpected};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query, RequestContext};
use crate::money::Price;
use crate::state::AppState;

/// A new product.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProductBody {
    /// Display name, 1..=256 bytes.
    pub(crate) name: String,
    /// Unit price: a number with at most two decimals.
    #[schema(value_type = f64, example = 12.5)]
    pub(crate) price: Price,
    /// Initial stock.
    pub(crate) quantity: u64,
}

/// Fields to change; absent ones keep their value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProductBody {
    /// New name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// New unit price.
    #[serde(default)]
    #[schema(value_type = Option<f64>, example = 12.5)]
    pub(crate) price: Option<Price>,
    /// New available stock.
    #[serde(default)]
    pub(crate) quantity: Option<u64>,
}

/// A product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ProductBody {
    /// Positive id.
    pub(crate) id: u64,
    /// Display name.
    pub(crate) name: String,
    /// Unit price, two decimals.
    #[schema(value_type = f64, example = 12.5)]
    pub(crate) price: Price,
    /// Stock available to new orders.
    pub(crate) quantity: u64,
    /// Creation time, ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// Incremented by every change; the ETag.
    pub(crate) version: u64,
}

impl From<Product> for ProductBody {
    fn from(product: Product) -> Self {
        Self {
            id: product.id,
            name: product.name,
            price: Price(product.price_cents),
            quantity: product.quantity,
            created_at_ms: product.created_at_ms,
            version: product.version,
        }
    }
}

fn product(response: ProductsResponse, request: &str) -> Result<Product, ApiError> {
    match response {
        ProductsResponse::Product(product) => Ok(product),
        _ => Err(unexpected("products", request)),
    }
}

/// Create a product.
#[utoipa::path(
    post, path = "/api/v1/products", tag = "products",
    request_body = CreateProductBody,
    responses(
        (status = 201, description = "Created", body = ProductBody),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<CreateProductBody>,
) -> Result<Response, ApiError> {
    let request = ProductsRequest::Create(NewProduct {
        name: body.name,
        price_cents: body.price.cents(),
        quantity: body.quantity,
    });
    let response = state
        .node
        .router()
        .call_with::<Products>(context.call_context(), request)
        .await?;
    let product = product(response, "Create")?;
    let location = format!("/api/v1/products/{}", product.id);
    Ok(created(
        &location,
        product.version,
        ProductBody::from(product),
    ))
}

/// Read a product.
#[utoipa::path(
    get, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = u64, Path, minimum = 1, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductBody),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("product")?;
    let response = state
        .node
        .router()
        .call_with::<Products>(context.call_context(), ProductsRequest::Get(id))
        .await?;
    let product = product(response, "Get")?;
    Ok(single(
        &headers,
        product.version,
        ProductBody::from(product),
    ))
}

/// List products by id.
#[utoipa::path(
    get, path = "/api/v1/products", tag = "products",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of products", body = PageBody<ProductBody>),
        (status = 422, description = "Bad page or page_size", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query.request()?;
    let response = state
        .node
        .router()
        .call_with::<Products>(context.call_context(), ProductsRequest::List(page))
        .await?;
    match response {
        ProductsResponse::Page(page) => {
            Ok(Json(PageBody::from_page(page, ProductBody::from)).into_response())
        }
        _ => Err(unexpected("products", "List")),
    }
}

/// Change a product.
#[utoipa::path(
    put, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = u64, Path, minimum = 1, description = "Product id")),
    request_body = UpdateProductBody,
    responses(
        (status = 200, description = "The changed product", body = ProductBody),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
    Json(body): Json<UpdateProductBody>,
) -> Result<Response, ApiError> {
    let id = id.get("product")?;
    let request = ProductsRequest::Update {
        id,
        patch: ProductPatch {
            name: body.name,
            price_cents: body.price.map(Price::cents),
            quantity: body.quantity,
        },
    };
    let response = state
        .node
        .router()
        .call_with::<Products>(context.call_context(), request)
        .await?;
    let product = product(response, "Update")?;
    Ok(changed(product.version, ProductBody::from(product)))
}

/// Delete a product (refused with 409 while stock is reserved for it).
#[utoipa::path(
    delete, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = u64, Path, minimum = 1, description = "Product id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stock is reserved for it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("product")?;
    let response = state
        .node
        .router()
        .call_with::<Products>(context.call_context(), ProductsRequest::Delete(id))
        .await?;
    match response {
        ProductsResponse::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(unexpected("products", "Delete")),
    }
}
