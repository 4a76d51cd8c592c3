//! The one error type of the HTTP API. Every non-2xx answer carries `x-error` (a human
//! description, never request data), `x-error-id` (unique, also in the log line) and
//! `x-error-code` (stable), plus a JSON body with the same three; 401s on bearer-authenticated
//! endpoints carry an RFC 6750 `www-authenticate` challenge, 429s a `retry-after`.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Add `www-authenticate: Bearer error="invalid_token"`.
    pub bearer: bool,
    pub retry_after: Option<i64>,
    /// Logged, never sent.
    pub internal: Option<String>,
}

/// The error body (also documented in the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, the same as `x-error-code`.
    pub error: String,
    /// Human description, the same as `x-error`.
    pub message: String,
    /// The same description under OAuth 2.0's name for it (RFC 6749 §5.2).
    pub error_description: String,
    /// Unique per response, the same as `x-error-id`, also in the server log.
    pub error_id: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError { status, code, message: message.into(), bearer: false, retry_after: None, internal: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }
    /// 401 for a missing/invalid bearer credential, with the RFC 6750 challenge.
    pub fn invalid_token(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError { bearer: true, ..ApiError::unauthorized(code, message) }
    }
    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
    pub fn too_many(code: &'static str, message: impl Into<Cow<'static, str>>, retry_after: i64) -> ApiError {
        ApiError { retry_after: Some(retry_after.max(1)), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message) }
    }
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            internal: Some(detail.to_string()),
            ..ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal server error")
        }
    }
    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if database_unreachable(&e) {
            // An outage, not a bug: clients may retry, and load balancers see a 503.
            return ApiError {
                internal: Some(format!("database: {e}")),
                retry_after: Some(1),
                ..ApiError::unavailable("database_unavailable", "the database is not reachable; retry shortly")
            };
        }
        ApiError::internal(format!("database: {e}"))
    }
}

/// Errors that mean "no working connection" (PostgreSQL restarting, network gone, pool
/// exhausted) rather than a failed statement.
fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash, not accepting yet).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

/// A new error id: 16 random bytes, hex.
pub fn error_id() -> String {
    crate::crypto::random_id128()
}

/// Header-safe text: visible ASCII and spaces only.
fn header_text(s: &str) -> HeaderValue {
    let clean: String = s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(512).collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

/// Sets the error headers on a response (used by [`ApiError`] and by the middleware that
/// catches framework rejections such as 404, 405 and malformed JSON).
pub fn set_error_headers(headers: &mut HeaderMap, code: &str, message: &str, id: &str) {
    headers.insert("x-error", header_text(message));
    headers.insert("x-error-id", header_text(id));
    headers.insert("x-error-code", header_text(code));
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = error_id();
        if self.status.is_server_error() {
            tracing::error!(error_id = %id, error_code = self.code, status = self.status.as_u16(), detail = self.internal.as_deref().unwrap_or(""), "request failed");
        } else {
            tracing::info!(error_id = %id, error_code = self.code, status = self.status.as_u16(), "request refused");
        }
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message.to_string(),
            error_description: self.message.to_string(),
            error_id: id.clone(),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        set_error_headers(h, self.code, &self.message, &id);
        if self.bearer {
            let desc = self.message.replace('"', "'");
            h.insert(header::WWW_AUTHENTICATE, header_text(&format!("Bearer error=\"invalid_token\", error_description=\"{desc}\"")));
        } else if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s.max(1) as u64));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The error id reaches the request log line through this extension.
        resp.extensions_mut().insert(LoggedErrorId(id));
        resp
    }
}

/// Marks a response whose error id was already generated and logged.
#[derive(Clone)]
pub struct LoggedErrorId(pub String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.internal.as_deref().unwrap_or(&self.message))
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;
