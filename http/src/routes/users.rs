//! `/api/v1/users`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_actors::{NewUser, User, UserPatch, UsersRequest, UsersResponse, call_users};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{IdParam, PageBody, PageQuery, changed, created, single, unexpected};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query, RequestContext};
use crate::state::AppState;

/// A new user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserBody {
    /// Unique, 1..=256 bytes.
    pub(crate) username: String,
    /// Unique, contains one `@`.
    pub(crate) email: String,
}

/// Fields to change; absent ones keep their value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserBody {
    /// New username.
    #[serde(default)]
    pub(crate) username: Option<String>,
    /// New email.
    #[serde(default)]
    pub(crate) email: Option<String>,
}

/// A user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UserBody {
    /// Positive id.
    pub(crate) id: u64,
    /// Unique username.
    pub(crate) username: String,
    /// Unique email.
    pub(crate) email: String,
    /// Creation time, ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
    /// Incremented by every update; the ETag.
    pub(crate) version: u64,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            created_at_ms: user.created_at_ms,
            version: user.version,
        }
    }
}

/// Sends `request` to the users shard it concerns (see `call_users`).
async fn ask(
    state: &AppState,
    context: &RequestContext,
    request: UsersRequest,
) -> Result<UsersResponse, ApiError> {
    Ok(call_users(
        state.node.router(),
        state.config.users_shards,
        context.call_context(),
        request,
    )
    .await?)
}

fn user(response: UsersResponse, request: &str) -> Result<User, ApiError> {
    match response {
        UsersResponse::User(user) => Ok(user),
        _ => Err(unexpected("users", request)),
    }
}

/// Create a user.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "Created", body = UserBody),
        (status = 409, description = "Username or email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<CreateUserBody>,
) -> Result<Response, ApiError> {
    let request = UsersRequest::Create(NewUser {
        username: body.username,
        email: body.email,
    });
    let response = ask(&state, &context, request).await?;
    let user = user(response, "Create")?;
    let location = format!("/api/v1/users/{}", user.id);
    Ok(created(&location, user.version, UserBody::from(user)))
}

/// Read a user.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = u64, Path, minimum = 1, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserBody),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("user")?;
    let response = ask(&state, &context, UsersRequest::Get(id)).await?;
    let user = user(response, "Get")?;
    Ok(single(&headers, user.version, UserBody::from(user)))
}

/// List users by id.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users", body = PageBody<UserBody>),
        (status = 422, description = "Bad page or page_size", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query.request()?;
    let response = ask(&state, &context, UsersRequest::List(page)).await?;
    match response {
        UsersResponse::Page(page) => {
            Ok(Json(PageBody::from_page(page, UserBody::from)).into_response())
        }
        _ => Err(unexpected("users", "List")),
    }
}

/// Change a user.
#[utoipa::path(
    put, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = u64, Path, minimum = 1, description = "User id")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The changed user", body = UserBody),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
    Json(body): Json<UpdateUserBody>,
) -> Result<Response, ApiError> {
    let id = id.get("user")?;
    let request = UsersRequest::Update {
        id,
        patch: UserPatch {
            username: body.username,
            email: body.email,
        },
    };
    let response = ask(&state, &context, request).await?;
    let user = user(response, "Update")?;
    Ok(changed(user.version, UserBody::from(user)))
}

/// Delete a user.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = u64, Path, minimum = 1, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<IdParam>,
) -> Result<Response, ApiError> {
    let id = id.get("user")?;
    let response = ask(&state, &context, UsersRequest::Delete(id)).await?;
    match response {
        UsersResponse::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(unexpected("users", "Delete")),
    }
}
