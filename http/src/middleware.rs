//! The per-request middleware: request id and trace context, the request's
//! deadline, its tracing span, metrics, and problem+json for error responses
//! that were produced without a body. Also the load-shedding error handler.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bulwark_runtime::{CorrelationId, TraceContext};
use futures::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::{Instrument, debug, error, field, info_span, warn};

use crate::error::{ApiError, InternalDetail, PROBLEM_JSON, RETRY_AFTER_SECS, problem_for_status};
use crate::extract::RequestContext;
use crate::metrics::ROUTE_UNMATCHED;
use crate::state::AppState;

/// The request id header, read from the request and echoed on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Longest client-supplied request id kept: ids are logged with every
/// line of the request and travel with every call it causes.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// Wraps every request: assigns its id, deadline and span, enforces the
/// deadline (504), gives bare error responses a problem+json body, logs
/// internal errors inside the span, and records metrics.
pub(crate) async fn around_request(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let trace = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| TraceContext::parse(value).ok());
    // Refused before the handler runs (and before any body is read, so a
    // client sending `Expect: 100-continue` gets no `100 Continue`): a
    // declared body over the limit (413 now, not a wait for bytes that
    // would be refused anyway), and an HTTP/1.1 request without `Host`
    // (400, RFC 9112 §3.2).
    let refused = if declared_body_len(request.headers())
        .is_some_and(|len| len > state.config.body_limit_bytes)
    {
        Some(ApiError::PayloadTooLarge)
    } else if request.extensions().get::<MissingHost>().is_some() {
        Some(ApiError::BadRequest {
            detail: "an HTTP/1.1 request must carry a Host header".to_owned(),
            field: None,
        })
    } else {
        None
    };
    let method = request.method().clone();
    // A clone of the matched path shares its string (no allocation).
    let route = request.extensions().get::<MatchedPath>().cloned();
    let timeout = state.config.request_timeout;
    let deadline = started + timeout;
    let span = info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %request.uri().path(),
        status = field::Empty,
        latency_ms = field::Empty,
    );
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        trace,
        deadline,
    });
    // A panicking handler is a bug, but its client still gets a 500 (and
    // the connection lives) instead of a reset.
    let handled = AssertUnwindSafe(async move {
        match refused {
            Some(refusal) => refusal.into_response(),
            None => next.run(request).await,
        }
    })
    .catch_unwind();
    let response = match tokio::time::timeout_at(deadline, handled)
        .instrument(span.clone())
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(_panic)) => ApiError::Internal {
            detail: "the handler panicked".to_owned(),
        }
        .into_response(),
        Err(_elapsed) => ApiError::Timeout {
            detail: format!(
                "the request did not complete within {} ms",
                timeout.as_millis()
            ),
        }
        .into_response(),
    };
    let mut response = with_problem_body(response);
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let latency = started.elapsed();
    let status = response.status();
    span.record("status", status.as_u16());
    span.record("latency_ms", latency_ms(latency));
    state.metrics.observe(
        method.as_str(),
        route.as_ref().map_or(ROUTE_UNMATCHED, MatchedPath::as_str),
        status.as_u16(),
        latency,
    );
    span.in_scope(|| {
        if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
            error!(error = %detail, "request failed");
        } else if status.is_server_error() {
            warn!("request failed");
        } else {
            debug!("request finished");
        }
    });
    response
}

/// Marks a request that arrived over HTTP/1.1 without a `Host` header
/// (set by the server's connection layer; answered 400 here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MissingHost;

/// The body length a request declares in `Content-Length`, when it is one
/// number (hyper refuses a malformed or conflicting one itself).
fn declared_body_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|len| usize::try_from(len).unwrap_or(usize::MAX))
}

fn latency_ms(latency: Duration) -> u64 {
    u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)
}

/// The client's `x-request-id` when it is sane (1..=128 printable ASCII
/// characters), else a fresh one.
fn request_id(headers: &HeaderMap) -> CorrelationId {
    headers
        .get(&REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= REQUEST_ID_LEN_MAX
                && id.iter().all(|b| (0x21..=0x7e).contains(b))
        })
        .and_then(|id| std::str::from_utf8(id).ok())
        .map_or_else(CorrelationId::generate, CorrelationId::external)
}

/// Error responses made without a body (axum's 405, for one) get the
/// problem+json body of their status; their headers (`Allow`) stay.
fn with_problem_body(response: Response) -> Response {
    let status = response.status();
    let bare = (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let problem = problem_for_status(status);
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    Response::from_parts(parts, Body::from(body))
}

/// Load shedding at the concurrency limit, as one layer: a request that
/// finds every slot taken is answered 503 + `Retry-After` at once, without
/// reaching its handler; an admitted one holds its slot until its response
/// is ready. (tower's `GlobalConcurrencyLimit` + `LoadShed` +
/// `HandleError` do the same in three layers, each with its own future and
/// a clone of the inner service per request.)
#[derive(Debug, Clone)]
pub(crate) struct ShedLayer {
    slots: Arc<Semaphore>,
}

impl ShedLayer {
    /// `limit` requests at a time (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit.max(1))),
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            slots: Arc::clone(&self.slots),
        }
    }
}

/// The service of [`ShedLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Shed<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => ShedFuture::Admitted {
                future: self.inner.call(request),
                slot,
            },
            Err(_) => ShedFuture::Refused {
                response: Some(overloaded(request.method())),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Shed`].
    #[project = ShedProjection]
    pub(crate) enum ShedFuture<F> {
        /// The handler runs, holding its slot.
        Admitted {
            #[pin]
            future: F,
            slot: OwnedSemaphorePermit,
        },
        /// Refused: the 503, handed out once.
        Refused { response: Option<Response> },
    }
}

impl<F> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ShedProjection::Admitted { future, slot: _ } => future.poll(cx),
            ShedProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| overloaded(&Method::GET)))),
        }
    }
}

/// The 503 + `Retry-After` of a request refused at the concurrency limit.
fn overloaded(method: &Method) -> Response {
    ApiError::Overloaded {
        detail: format!(
            "the server is at its concurrency limit; {method} was not handled, retry later"
        ),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        headers
    }

    #[test]
    fn a_sane_request_id_is_kept_verbatim() {
        assert_eq!(
            request_id(&headers(b"req-42.abc")),
            CorrelationId::external("req-42.abc")
        );
    }

    #[test]
    fn an_overlong_or_unprintable_request_id_is_replaced() {
        let long = [b'a'; REQUEST_ID_LEN_MAX + 1];
        for bad in [&long[..], b"has space", b"tab\there", &[0xc3, 0xa9][..]] {
            assert!(
                matches!(request_id(&headers(bad)), CorrelationId::Generated(_)),
                "kept {bad:?}"
            );
        }
        assert!(matches!(
            request_id(&HeaderMap::new()),
            CorrelationId::Generated(_)
        ));
    }
}
