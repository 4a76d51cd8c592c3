//! What `decide` answers: allow with an identity and header edits, or deny with everything the
//! host needs to write the error response. Both hosts write these out verbatim.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{CredentialKind, HeaderNames};
use crate::error::ErrorCode;

/// A request as the gateway sees it. Header names may be in any case.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target: path, optionally with query.
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Who the caller proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub method: CredentialKind,
    pub subject: String,
    pub org: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// `sid` of the session (JWT).
    pub session_id: Option<String>,
    /// The API key's `id` claim.
    pub key_id: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub token_id: Option<String>,
    pub issued_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// base64url JSON of the verified claims (the JWT payload or the API key claims).
    pub claims_b64: String,
    /// `roles` comma-joined, ready for the header.
    pub roles_header: String,
    /// `scopes` space-joined, ready for the header.
    pub scope_header: String,
}

/// The gateway's answer.
#[derive(Clone, Debug)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// Headers to remove from the request in either case (client-sent identity headers).
    pub fn headers_to_remove(&self) -> &[Cow<'static, str>] {
        match self {
            Decision::Allow(a) => &a.remove_headers,
            Decision::Deny(d) => &d.remove_headers,
        }
    }
}

/// Forward the request upstream after removing `remove_headers` and setting `headers_to_set()`.
#[derive(Clone, Debug)]
pub struct Allow {
    /// `None` on anonymous routes.
    pub identity: Option<Arc<Identity>>,
    pub remove_headers: Vec<Cow<'static, str>>,
    pub(crate) names: Arc<HeaderNames>,
    /// Index of the matched route rule.
    pub route: usize,
    /// Whether the identity came from the verified-token cache.
    pub cache_hit: bool,
}

impl Allow {
    /// Identity headers to set upstream (name, value).
    pub fn headers_to_set(&self) -> Vec<(&str, &str)> {
        let Some(id) = self.identity.as_deref() else { return Vec::new() };
        let n = &*self.names;
        let mut out = Vec::with_capacity(8);
        out.push((n.subject.as_str(), id.subject.as_str()));
        out.push((n.method.as_str(), id.method.as_str()));
        out.push((n.roles.as_str(), id.roles_header.as_str()));
        if let Some(org) = &id.org {
            out.push((n.org.as_str(), org.as_str()));
        }
        if let Some(email) = &id.email {
            out.push((n.email.as_str(), email.as_str()));
        }
        if let Some(sid) = &id.session_id {
            out.push((n.session.as_str(), sid.as_str()));
        }
        if let Some(key_id) = &id.key_id {
            out.push((n.key_id.as_str(), key_id.as_str()));
        }
        if !id.scope_header.is_empty() {
            out.push((n.scope.as_str(), id.scope_header.as_str()));
        }
        if let Some(client_id) = &id.client_id {
            out.push((n.client_id.as_str(), client_id.as_str()));
        }
        if let Some(claims) = &n.claims {
            out.push((claims.as_str(), id.claims_b64.as_str()));
        }
        out
    }
}

/// Answer the request with `status`, `response_headers()` and `body()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    pub code: ErrorCode,
    /// The id the host passed in (its request id); goes into `x-error-id` and the body.
    pub error_id: String,
    /// RFC 6750 challenge, for 401s and scope failures on routes that take bearer tokens.
    pub www_authenticate: Option<String>,
    pub remove_headers: Vec<Cow<'static, str>>,
}

impl Deny {
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn description(&self) -> &'static str {
        self.code.description()
    }

    /// Response headers, in order.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
            ("x-error", self.description().to_string()),
            ("x-error-id", self.error_id.clone()),
            ("x-error-code", self.code.as_str().to_string()),
        ];
        if let Some(challenge) = &self.www_authenticate {
            h.push(("www-authenticate", challenge.clone()));
        }
        h
    }

    /// The JSON body: `{"error": code, "error_description": ..., "error_id": ...}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description(),
            "error_id": self.error_id,
        })
        .to_string()
    }
}

/// Makes a deny response for failures outside `decide` (a host whose config did not load).
pub fn host_error(code: ErrorCode, error_id: &str) -> Deny {
    Deny { code, error_id: sanitize_id(error_id), www_authenticate: None, remove_headers: Vec::new() }
}

/// Request ids come from clients (`x-request-id`); keep only what is safe in a header and a log.
pub(crate) fn sanitize_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')).take(128).collect()
}
