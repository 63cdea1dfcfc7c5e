//! Extractors whose rejections are [`ApiError`]s, so a malformed body, path
//! or query string is answered in the same problem+json format as every
//! other failure (axum `examples/customize-extractor-error`).

use std::error::Error as StdError;
use std::fmt;
use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, path::ErrorKind};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bulwark_runtime::{CallContext, CorrelationId, TraceContext};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::time::Instant;

use crate::error::ApiError;

/// `axum::Json` with [`ApiError`] rejections: 400 for bad syntax or a body
/// that is not a JSON object, 415 for a wrong content type, 413 past the
/// body limit, 422 naming the field for a value of the wrong type, a
/// missing field or a field the API does not have.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(Object(value)) =
            axum::Json::<Object<T>>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// A struct read only from a JSON object. serde's derived `Deserialize`
/// also takes a struct from an array of its fields in order (`["ada",
/// "ada@example.com"]`), which would let a client skip the field names the
/// API's rules are stated in; this refuses anything but an object.
#[derive(Debug)]
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// `#[serde(deserialize_with = "objects")]` for a list of structs: each
/// element must be a JSON object ([`Object`]).
pub(crate) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Object(item)| item).collect())
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` with [`ApiError`] rejections (400 naming the
/// parameter).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with [`ApiError`] rejections (422 naming the
/// parameter).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => json_data_error(&err),
            JsonRejection::JsonSyntaxError(err) => Self::BadRequest {
                detail: match find_source::<serde_json::Error>(&err) {
                    Some(inner) => format!("the body is not valid JSON: {inner}"),
                    None => err.body_text(),
                },
                field: None,
            },
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType {
                detail: "expected a body with `Content-Type: application/json`".to_owned(),
            },
            JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::BadRequest {
                detail: other.body_text(),
                field: None,
            },
        }
    }
}

/// A body that is JSON but does not fit the request type: name the field.
fn json_data_error(err: &(dyn StdError + 'static)) -> ApiError {
    let Some(err) = find_source::<serde_path_to_error::Error<serde_json::Error>>(err) else {
        return ApiError::BadRequest {
            detail: "the body does not match the request type".to_owned(),
            field: None,
        };
    };
    let reason = plain_reason(&strip_position(&err.inner().to_string()));
    let path = err.path().to_string();
    let at_root = path == ".";
    let named = backticked(&reason)
        .filter(|_| reason.starts_with("unknown field") || reason.starts_with("missing field"))
        .map(str::to_owned);
    match named {
        Some(name) if at_root => ApiError::invalid(name, reason),
        Some(name) if !path.ends_with(name.as_str()) => {
            ApiError::invalid(format!("{path}.{name}"), reason)
        }
        Some(_) => ApiError::invalid(path, reason),
        None if at_root => ApiError::BadRequest {
            detail: format!("the body must be a JSON object: {reason}"),
            field: None,
        },
        None => ApiError::invalid(path, reason),
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(err) => match err.kind() {
                ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. }
                | ErrorKind::InvalidUtf8InPathParam { key } => Self::BadRequest {
                    detail: format!("path parameter `{key}` must be a positive integer"),
                    field: Some(key.clone()),
                },
                ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. } => {
                    Self::Internal {
                        detail: err.body_text(),
                    }
                }
                _ => Self::BadRequest {
                    detail: "a path parameter is malformed".to_owned(),
                    field: None,
                },
            },
            other => Self::Internal {
                detail: other.body_text(),
            },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let found =
            find_source::<serde_path_to_error::Error<serde_urlencoded::de::Error>>(&rejection);
        match found {
            Some(err) if err.path().to_string() != "." => {
                let reason = plain_query_reason(&err.inner().to_string());
                let path = err.path().to_string();
                ApiError::invalid(path, reason)
            }
            Some(err) => {
                let reason = err.inner().to_string();
                match backticked(&reason).map(str::to_owned) {
                    Some(name) => ApiError::invalid(name, reason),
                    None => ApiError::BadRequest {
                        detail: format!("malformed query string: {reason}"),
                        field: None,
                    },
                }
            }
            None => ApiError::BadRequest {
                detail: rejection.body_text(),
                field: None,
            },
        }
    }
}

/// The first error of type `T` in `err`'s source chain (`err` included).
fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// serde_json appends ` at line L column C` to data errors; the field name
/// says where, so the position only adds noise.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

/// serde's reason for a value of the wrong type or range, in the API's
/// terms instead of Rust's: `invalid type: floating point `1.5`, expected
/// u64` becomes "must be a whole number of at least 0, got floating point
/// `1.5`". Other reasons are kept as they are.
fn plain_reason(reason: &str) -> String {
    let Some(rest) = reason
        .strip_prefix("invalid type: ")
        .or_else(|| reason.strip_prefix("invalid value: "))
    else {
        return reason.to_owned();
    };
    let Some((got, expected)) = rest.rsplit_once(", expected ") else {
        return reason.to_owned();
    };
    let wanted = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of at least 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        _ => return reason.to_owned(),
    };
    let got = match got.split_once(" `") {
        // "floating point `1.8446744073709552e19`" and the like: a number
        // out of range or of the wrong kind.
        Some(("floating point" | "integer", value)) => {
            format!("got {}", value.trim_end_matches('`'))
        }
        _ => format!("got {got}"),
    };
    format!("must be {wanted}, {got}")
}

/// A query parameter's parse failure in the API's terms: the standard
/// library's integer-parsing messages, then [`plain_reason`]'s.
fn plain_query_reason(reason: &str) -> String {
    match reason {
        "invalid digit found in string" => "must be a whole number of at least 0".to_owned(),
        "number too large to fit in target type" => "is too large".to_owned(),
        "cannot parse integer from empty string" => "must not be empty".to_owned(),
        other => plain_reason(other),
    }
}

/// The first `` `quoted` `` word of a serde message (the field it names).
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// What the request middleware learned about the request: its id, its
/// trace context and its deadline. Handlers turn it into the
/// [`CallContext`] of their service calls.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The `x-request-id` (the client's, or generated), the calls'
    /// correlation id.
    pub request_id: CorrelationId,
    /// The client's `traceparent`, when valid.
    pub trace: Option<TraceContext>,
    /// When the request's time is up.
    pub deadline: Instant,
}

impl RequestContext {
    /// The context for a service call made on behalf of this request: its
    /// correlation id, trace and deadline.
    #[must_use]
    pub fn call_context(&self) -> CallContext {
        let context = CallContext::new(std::time::Duration::ZERO)
            .with_correlation_id(self.request_id.clone())
            .with_deadline(self.deadline);
        match self.trace {
            Some(trace) => context.with_trace(trace),
            None => context,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::Internal {
                detail: "the request middleware did not run: no RequestContext".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        quantity: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        name: String,
        #[serde(deserialize_with = "objects")]
        items: Vec<Line>,
    }

    async fn reject(body: &str, content_type: &str) -> ApiError {
        let request = Request::builder()
            .method("POST")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        match Json::<Body1>::from_request(request, &()).await {
            Ok(_) => panic!("accepted {body}"),
            Err(err) => err,
        }
    }

    #[tokio::test]
    async fn unknown_body_field_is_422_naming_it() {
        let err = reject(
            r#"{"name":"a","items":[],"status":"paid"}"#,
            "application/json",
        )
        .await;
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "status"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn nested_type_error_names_the_path() {
        let err = reject(
            r#"{"name":"a","items":[{"quantity":-1}]}"#,
            "application/json",
        )
        .await;
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "items[0].quantity"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn missing_field_is_422_naming_it() {
        let err = reject(r#"{"items":[]}"#, "application/json").await;
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "name"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn syntax_error_is_400_and_wrong_content_type_is_415() {
        let err = reject(r#"{"name": "#, "application/json").await;
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = reject(r#"{"name":"a","items":[]}"#, "text/plain").await;
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let err = reject("42", "application/json").await;
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_struct_is_read_only_from_an_object_at_any_depth() {
        for body in [r#"["a",[]]"#, "[]", r#"{"name":"a","items":[[3]]}"#] {
            let err = reject(body, "application/json").await;
            let status = err.status();
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {err:?}"
            );
            assert!(
                format!("{err:?}").contains("a JSON object"),
                "{body}: {err:?}"
            );
        }
        let err = reject(r#"{"name":"a","items":[[3]]}"#, "application/json").await;
        assert!(
            matches!(&err, ApiError::Invalid { field, .. } if field == "items[0]"),
            "{err:?}"
        );
        let request = Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"name":"a","items":[{"quantity":2}]}"#))
            .unwrap();
        let Json(body) = Json::<Body1>::from_request(request, &()).await.unwrap();
        assert_eq!(body.items[0].quantity, 2);
    }

    #[test]
    fn type_errors_are_stated_in_the_apis_terms() {
        assert_eq!(
            plain_reason("invalid type: floating point `1.5`, expected u64"),
            "must be a whole number of at least 0, got 1.5"
        );
        assert_eq!(
            plain_reason("invalid value: integer `-1`, expected u64"),
            "must be a whole number of at least 0, got -1"
        );
        assert_eq!(
            plain_reason(r#"invalid type: string "7", expected u64"#),
            r#"must be a whole number of at least 0, got string "7""#
        );
        assert_eq!(
            plain_reason("invalid type: integer `5`, expected a string"),
            "must be a string, got 5"
        );
        // Reasons that already speak plainly stay.
        assert_eq!(plain_reason("missing field `name`"), "missing field `name`");
        assert_eq!(
            plain_reason("invalid type: map, expected a JSON object"),
            "invalid type: map, expected a JSON object"
        );
    }

    #[tokio::test]
    async fn a_query_parameter_that_is_not_a_number_is_422_in_plain_words() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Paging {
            page: Option<u32>,
        }
        for (query, reason) in [
            ("page=abc", "must be a whole number of at least 0"),
            ("page=-1", "must be a whole number of at least 0"),
            ("page=99999999999", "is too large"),
            ("page=", "must not be empty"),
        ] {
            let request = Request::builder()
                .uri(format!("/x?{query}"))
                .body(Body::empty())
                .unwrap();
            let (mut parts, _) = request.into_parts();
            let err = Query::<Paging>::from_request_parts(&mut parts, &())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ApiError::Invalid { field, reason: r } if field == "page" && r == reason),
                "{query}: {err:?}"
            );
        }
    }

    #[test]
    fn position_suffix_is_stripped() {
        assert_eq!(
            strip_position("invalid value: integer `-1`, expected u64 at line 1 column 34"),
            "invalid value: integer `-1`, expected u64"
        );
        assert_eq!(strip_position("plain"), "plain");
    }
}
