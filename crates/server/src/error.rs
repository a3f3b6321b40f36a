//! The API's one error type and a JSON extractor that reports rejections in the same shape:
//! `{"error": {"code", "message", "details"}}`.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontor_store::StoreError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// An error answer of the API.
#[derive(Debug)]
pub enum AppError {
    /// 400: the request is not well-formed (e.g. malformed JSON).
    BadRequest(String),
    /// 401: no or an unknown token.
    Unauthorized,
    /// 403: the token's role may not do this.
    Forbidden,
    /// 403 with its own reason.
    Refused(String),
    /// 403: a session request without the right CSRF token.
    Csrf,
    /// 404.
    NotFound(String),
    /// 409.
    Conflict(String),
    /// 409 with `code = "idempotency_conflict"`: a key came again with another message.
    IdempotencyConflict(String),
    /// 409 with `code = "stale"` and the newer items.
    Stale(Value),
    /// 413.
    TooLarge,
    /// 422 with the offending field.
    Invalid { field: String, message: String },
    /// 503: the database is unreachable.
    Unavailable,
    /// 503: too many writes are waiting for the database (the writer's queue is full).
    Overloaded,
    /// 503 with its own reason (e.g. too many uploads at once), with `Retry-After`.
    Busy(String),
    /// 429 with its own reason (e.g. too many open streams).
    TooMany(String),
    /// 500: a bug; details are logged, never sent.
    Internal(String),
}

impl AppError {
    /// Shorthand for a 422.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => AppError::Conflict(m),
            StoreError::IdempotencyConflict(m) => AppError::IdempotencyConflict(m),
            StoreError::Forbidden(m) => AppError::Refused(m),
            StoreError::Invalid { field, message } => AppError::Invalid { field, message },
            StoreError::Unavailable(m) if m == kontor_store::WRITE_QUEUE_FULL => AppError::Overloaded,
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "Database unavailable.");
                AppError::Unavailable
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, Value::Null),
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API token is required: Authorization: Bearer <token>".into(),
                Value::Null,
            ),
            AppError::Forbidden => {
                (StatusCode::FORBIDDEN, "forbidden", "this needs the admin role".into(), Value::Null)
            }
            AppError::Refused(m) => (StatusCode::FORBIDDEN, "forbidden", m, Value::Null),
            AppError::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token for this session; reload the page".into(),
                Value::Null,
            ),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, Value::Null),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, Value::Null),
            AppError::IdempotencyConflict(m) => (StatusCode::CONFLICT, "idempotency_conflict", m, Value::Null),
            AppError::Stale(d) => (
                StatusCode::CONFLICT,
                "stale",
                "the case changed since your view; review the newer items or send with force: true".into(),
                d,
            ),
            AppError::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body is too large".into(), Value::Null)
            }
            AppError::Invalid { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{field}: {message}"), json!({ "field": field }))
            }
            AppError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; retry shortly".into(),
                Value::Null,
            ),
            AppError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, Value::Null),
            AppError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", m, Value::Null),
            AppError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "write queue full: too many writes are waiting for the database; retry shortly".into(),
                Value::Null,
            ),
            AppError::Internal(m) => {
                tracing::error!(error = %m, "Internal error.");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into(), Value::Null)
            }
        };
        let mut resp =
            (status, axum::Json(json!({ "error": { "code": code, "message": message, "details": details } })))
                .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert("Retry-After", axum::http::HeaderValue::from_static("1"));
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("Retry-After", axum::http::HeaderValue::from_static("10"));
        }
        resp
    }
}

/// A JSON body: malformed JSON → 400, wrong shape → 422 naming the field, too large → 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::TooLarge
            } else {
                AppError::BadRequest(format!("could not read the body: {rej}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Where a JSON value holds a string with a NUL character (JSON path), if anywhere.
fn nul_path(v: &Value, path: &str) -> Option<String> {
    let here = || if path.is_empty() { "body".to_string() } else { path.to_string() };
    match v {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| nul_path(x, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                return Some(here());
            }
            nul_path(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })
        }),
        _ => None,
    }
}

/// Parses a JSON body with the API's error mapping. Strings with NUL characters are refused
/// (422): no channel sends them and PostgreSQL cannot store them.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // JSON can carry NUL only as the escape \u0000; look closer only if that text occurs.
    if bytes.windows(6).any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0')) {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            if let Some(field) = nul_path(&v, "") {
                return Err(AppError::invalid(&field, "must not contain NUL characters"));
            }
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field =
                    if path == "." { missing_field(&inner.to_string()).unwrap_or_else(|| "body".into()) } else { path };
                AppError::invalid(&field, strip_position(&inner.to_string()))
            }
            _ => AppError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })
}

fn missing_field(msg: &str) -> Option<String> {
    let start = msg.find("missing field `")? + "missing field `".len();
    let end = msg[start..].find('`')?;
    Some(msg[start..start + end].to_string())
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        text: String,
        n: Option<i64>,
    }

    #[test]
    fn json_errors_are_classified() {
        assert!(matches!(parse_json::<Body>(b"{\"text\": "), Err(AppError::BadRequest(_))));
        assert!(matches!(parse_json::<Body>(b"not json"), Err(AppError::BadRequest(_))));
        match parse_json::<Body>(b"{\"text\": \"x\", \"n\": \"eins\"}") {
            Err(AppError::Invalid { field, .. }) => assert_eq!(field, "n"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"text": "a\u0000b"}"#) {
            Err(AppError::Invalid { field, .. }) => assert_eq!(field, "text"),
            other => panic!("{other:?}"),
        }
        assert!(parse_json::<Body>(br#"{"text": "a\\u0000b"}"#).is_ok(), "an escaped backslash is not a NUL");
        match parse_json::<Body>(b"{}") {
            Err(AppError::Invalid { field, .. }) => assert_eq!(field, "text"),
            other => panic!("{other:?}"),
        }
    }
}
