//! [`ApiError`]: every failure the edge answers, as RFC 9457 problem+json.
//!
//! The status of each failure is decided here and only here. Internal
//! details (a store's error text) never reach the body: the response carries
//! them in an extension, [`InternalDetail`], which the request middleware
//! logs inside the request's span (this type never logs).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// `Retry-After` sent with every 503, in seconds: bulkheads shed at once
/// and a downed service is restarted after 100 ms of backoff, so one second
/// lets a burst drain without making clients wait long.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A failure, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, a non-numeric id, a
    /// header that is not acceptable).
    #[error("malformed request: {detail}")]
    BadRequest {
        /// What is malformed.
        detail: String,
        /// The parameter or header concerned, if one.
        field: Option<String>,
    },
    /// 401 + `WWW-Authenticate: Bearer`: the API key (or the admin API's
    /// key) is missing or wrong.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// What is missing or wrong (never the key).
        detail: String,
    },
    /// 403: the API key is valid but lacks the scope the request needs.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Which key lacks which scope.
        detail: String,
    },
    /// 429 + `Retry-After`: the client is over its rate limit; nothing was
    /// done.
    #[error("rate limited: {detail}")]
    RateLimited {
        /// Whose limit.
        detail: String,
        /// Seconds until the client's bucket holds a request again.
        retry_after_secs: u64,
    },
    /// 404: no such entity.
    #[error("not found: {detail}")]
    NotFound {
        /// What was not found.
        detail: String,
    },
    /// 404: no such route.
    #[error("no route for {path}")]
    RouteNotFound {
        /// The path asked for.
        path: String,
    },
    /// 409: conflicts with the current state (duplicate unique field,
    /// illegal state change, an idempotency key reused with another body).
    #[error("conflict: {detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
    },
    /// 413: the body is larger than the edge accepts.
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("unsupported media type: {detail}")]
    UnsupportedMediaType {
        /// What was expected.
        detail: String,
    },
    /// 422: a field failed validation (including a body field the API does
    /// not have).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as the API names it (`price`, `items[0].quantity`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// 422: a business rule refused the request (out of stock, declined).
    #[error("rejected: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// 503 + `Retry-After`: the edge or a service is at its bound; nothing
    /// was done.
    #[error("overloaded: {detail}")]
    Overloaded {
        /// Which bound.
        detail: String,
    },
    /// 503 + `Retry-After`: a service cannot take the request now (down,
    /// restarting, shutting down, unreachable); nothing was done.
    #[error("unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
    /// 503 + `Retry-After`: the request reached a service that stopped (or
    /// whose node was lost) before it answered; it may have been applied.
    /// Retry idempotently (an order with the same `Idempotency-Key`).
    #[error("outcome unknown: {detail}")]
    OutcomeUnknown {
        /// What happened.
        detail: String,
    },
    /// 504: the request's deadline passed; it may have been applied.
    #[error("deadline passed: {detail}")]
    Timeout {
        /// What was late.
        detail: String,
    },
    /// 500 with an opaque body; `detail` goes to the log only.
    #[error("internal error: {detail}")]
    Internal {
        /// The cause, for the log.
        detail: String,
    },
}

/// One failed field of a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as the API names it.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/not-found`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this occurrence.
    pub detail: String,
    /// The field concerned, when exactly one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every failed field (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The cause of a 500, carried in the response's extensions so that the
/// request middleware can log it inside the request's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalDetail(pub String);

impl ApiError {
    /// The HTTP status this failure is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } | Self::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded { .. } | Self::Unavailable { .. } | Self::OutcomeUnknown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's short name (the last segment of `type`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "malformed-request",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate-limited",
            Self::NotFound { .. } => "not-found",
            Self::RouteNotFound { .. } => "route-not-found",
            Self::Conflict { .. } => "conflict",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType { .. } => "unsupported-media-type",
            Self::Invalid { .. } => "invalid-field",
            Self::Rejected { .. } => "rejected",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable { .. } => "unavailable",
            Self::OutcomeUnknown { .. } => "outcome-unknown",
            Self::Timeout { .. } => "timeout",
            Self::Internal { .. } => "internal",
        }
    }

    /// The invalid-field error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The problem body of this failure.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (detail, field, errors) = match self {
            Self::Invalid { field, reason } => (
                format!("{field}: {reason}"),
                Some(field.clone()),
                vec![FieldError {
                    field: field.clone(),
                    reason: reason.clone(),
                }],
            ),
            Self::BadRequest { detail, field } => (detail.clone(), field.clone(), Vec::new()),
            // Never the cause's text: it may name files, keys or internals.
            Self::Internal { .. } => (
                "the server failed to handle the request; it is logged".to_owned(),
                None,
                Vec::new(),
            ),
            Self::RouteNotFound { path } => (format!("no route for {path}"), None, Vec::new()),
            Self::PayloadTooLarge => (
                "the request body is larger than the limit".to_owned(),
                None,
                Vec::new(),
            ),
            Self::NotFound { detail }
            | Self::Unauthorized { detail }
            | Self::Forbidden { detail }
            | Self::RateLimited { detail, .. }
            | Self::Conflict { detail }
            | Self::UnsupportedMediaType { detail }
            | Self::Overloaded { detail }
            | Self::Unavailable { detail }
            | Self::OutcomeUnknown { detail }
            | Self::Timeout { detail } => (detail.clone(), None, Vec::new()),
            Self::Rejected { reason } => (reason.clone(), None, Vec::new()),
        };
        Problem {
            type_uri: format!("/problems/{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            field,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.status(), &self.problem());
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bulwark\""),
            );
        }
        if let Self::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from((*retry_after_secs).max(1)),
            );
        }
        if let Self::Internal { detail } = self {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

/// A problem+json response with `status` and `problem` as its body.
pub(crate) fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    // Serializing a struct of strings and numbers cannot fail; the fallback
    // keeps this path free of panics all the same.
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

/// The problem body for an error response that was produced without one
/// (hyper's or axum's own 405, 413, ...).
pub(crate) fn problem_for_status(status: StatusCode) -> Problem {
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        // Unknown cause: whether anything was applied is unknown too.
        StatusCode::SERVICE_UNAVAILABLE => "outcome-unknown",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "malformed-request",
    };
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "the route does not accept this method; see the Allow header".to_owned()
        }
        _ => title.to_lowercase(),
    };
    Problem {
        type_uri: format!("/problems/{kind}"),
        title,
        status: status.as_u16(),
        detail,
        field: None,
        errors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_field_names_the_field_in_the_body() {
        let problem = ApiError::invalid("price", "at most two decimals").problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.field.as_deref(), Some("price"));
        assert_eq!(problem.errors[0].field, "price");
        assert_eq!(problem.type_uri, "/problems/invalid-field");
    }

    #[test]
    fn internal_error_body_hides_the_cause_and_carries_it_in_an_extension() {
        let error = ApiError::Internal {
            detail: "sled: /var/data/users corrupted".to_owned(),
        };
        assert!(!error.problem().detail.contains("sled"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<InternalDetail>(),
            Some(&InternalDetail(
                "sled: /var/data/users corrupted".to_owned()
            ))
        );
    }

    #[test]
    fn every_503_carries_retry_after() {
        for error in [
            ApiError::Overloaded {
                detail: "x".to_owned(),
            },
            ApiError::Unavailable {
                detail: "x".to_owned(),
            },
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        }
    }
}
