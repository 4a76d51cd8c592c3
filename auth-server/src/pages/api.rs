//! In-process calls from the pages to the JSON API: the same router, layers, rate limits and
//! rules as a request from outside, made with the browser's address, cookies and origin.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// Largest API answer a page reads (lists of sessions and keys are small).
const MAX_REPLY: usize = 1024 * 1024;

/// Headers of the browser's request the API sees: who it is (cookies), where the request comes
/// from (`origin`, `sec-fetch-site`, the address) and the device (`user-agent`, for sessions).
const FORWARDED: [HeaderName; 4] = [header::COOKIE, header::ORIGIN, header::USER_AGENT, HeaderName::from_static("x-forwarded-for")];

/// The browser's side of a page request.
pub struct Browser {
    pub headers: HeaderMap,
    conn: Option<ConnectInfo<SocketAddr>>,
}

impl Browser {
    /// The browser's address, as the API would count it.
    pub fn ip(&self, app: &crate::app::App) -> std::net::IpAddr {
        crate::http::client_ip_of(app, &self.headers, self.conn.as_ref().map(|c| c.0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Browser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Browser { headers: parts.headers.clone(), conn: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned() })
    }
}

/// What the API answered.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The stable error code (`x-error-code`) of a refusal.
    pub fn code(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or("internal_error")
    }

    /// The human description of a refusal: written for people, never request data.
    pub fn message(&self) -> &str {
        self.body.get("message").and_then(Value::as_str).unwrap_or("something went wrong; try again")
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    pub fn set_cookies(&self) -> impl Iterator<Item = &HeaderValue> {
        self.headers.get_all(header::SET_COOKIE).iter()
    }
}

#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new(router: Router) -> Self {
        Api { router }
    }

    /// One API request on behalf of `browser`; `extra` headers (`x-session-token`,
    /// `x-csrf-token`) are the page's, taken from its own form or cookie.
    pub async fn call(&self, browser: &Browser, method: Method, path: &str, body: Option<Value>, extra: &[(&'static str, &str)]) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        for name in &FORWARDED {
            for value in browser.headers.get_all(name) {
                req = req.header(name, value);
            }
        }
        for (name, value) in extra {
            match HeaderValue::from_str(value) {
                Ok(v) => req = req.header(*name, v),
                // A value no header can hold cannot be a valid token: the API answers as for none.
                Err(_) => continue,
            }
        }
        let body = match body {
            Some(json) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut req = match req.body(body) {
            Ok(r) => r,
            Err(e) => return Reply::internal(&format!("page request: {e}")),
        };
        if let Some(conn) = &browser.conn {
            req.extensions_mut().insert(*conn);
        }
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = resp.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_REPLY).await {
            Ok(b) => b,
            Err(e) => return Reply::internal(&format!("page reply: {e}")),
        };
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, browser: &Browser, path: &str) -> Reply {
        self.call(browser, Method::GET, path, None, &[]).await
    }
}

impl Reply {
    fn internal(detail: &str) -> Reply {
        tracing::error!(detail, "page: API call failed");
        let body = serde_json::json!({"error": "internal_error", "message": "internal server error"});
        Reply { status: StatusCode::INTERNAL_SERVER_ERROR, headers: HeaderMap::new(), body }
    }
}
