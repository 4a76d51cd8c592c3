//! What `decide` answers: allow with an identity and header edits, or deny with everything the
//! host needs to write the error response. Both hosts write these out verbatim.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{CredentialKind, HeaderNames};
use crate::error::ErrorCode;
use crate::headers::forwarded_value;
use crate::time::UnixTime;

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
    /// The kind of credential that proved it.
    pub kind: CredentialKind,
    pub subject: String,
    pub org: Option<String>,
    pub email: Option<String>,
    /// `sid` of the session (JWT).
    pub session_id: Option<String>,
    /// The API key's `id` claim.
    pub key_id: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub token_id: Option<String>,
    /// `iat`, unix seconds.
    pub issued_at: Option<i64>,
    /// `exp`, unix seconds.
    pub expires_at: Option<i64>,
    /// base64url JSON of the verified claims (the JWT payload or the API key claims).
    pub claims_b64: String,
    /// The roles, comma-joined as the header carries them (a role has no comma; see
    /// [`Identity::roles`]).
    pub roles_header: String,
    /// The scopes, space-joined as the header carries them (see [`Identity::scopes`]).
    pub scope_header: String,
}

impl Identity {
    /// The roles, in the credential's order. They are kept only joined: one string to build
    /// per verification rather than a list and a copy of it.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles_header.split(',').filter(|r| !r.is_empty())
    }

    /// The scopes, in the credential's order.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope_header.split(' ').filter(|s| !s.is_empty())
    }
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
    /// Request headers the gateway rewrites besides the identity (the `cookie` header without
    /// the auth cookies when the route strips the credential).
    pub rewrite_headers: Vec<(&'static str, String)>,
    pub(crate) names: Arc<HeaderNames>,
    /// Index of the matched route rule.
    pub route: usize,
    /// Whether the identity came from the verified-token cache.
    pub cache_hit: bool,
}

impl Allow {
    /// Headers to set upstream (name, value), replacing any of the same name. Identity values
    /// are ASCII on every host (see [`forwarded_value`]).
    pub fn headers_to_set(&self) -> Vec<(&str, Cow<'_, str>)> {
        let mut out: Vec<(&str, Cow<'_, str>)> = self.rewrite_headers.iter().map(|(n, v)| (*n, Cow::Borrowed(v.as_str()))).collect();
        let Some(id) = self.identity.as_deref() else {
            return out;
        };
        let n = &*self.names;
        out.push((n.subject.as_str(), forwarded_value(&id.subject)));
        out.push((n.method.as_str(), Cow::Borrowed(id.kind.as_str())));
        out.push((n.roles.as_str(), Cow::Borrowed(id.roles_header.as_str())));
        for (name, value) in [(&n.org, &id.org), (&n.email, &id.email), (&n.session, &id.session_id), (&n.key_id, &id.key_id)] {
            if let Some(v) = value {
                out.push((name.as_str(), forwarded_value(v)));
            }
        }
        if !id.scope_header.is_empty() {
            out.push((n.scope.as_str(), Cow::Borrowed(id.scope_header.as_str())));
        }
        if let Some(client_id) = &id.client_id {
            out.push((n.client_id.as_str(), forwarded_value(client_id)));
        }
        if let Some(claims) = &n.claims {
            out.push((claims.as_str(), Cow::Borrowed(id.claims_b64.as_str())));
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
    /// Cold start: the material this request needs is still on its way. The host may hold the
    /// request until this time (or until the material arrives), then decide again; past it, or
    /// when the host cannot hold requests, this answer stands. See `fetch.cold_start_wait_ms`.
    pub hold_until: Option<UnixTime>,
    /// The description with a detail naming what is wrong beyond the code (the bad field of a
    /// host configuration), visible ASCII; sent instead of the plain description. Never request
    /// data.
    pub detail: Option<String>,
}

impl Deny {
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn description(&self) -> &str {
        self.detail.as_deref().unwrap_or(self.code.description())
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
        // A struct, not `json!`: no map built and torn down for every denial.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
            error_id: &'a str,
        }
        let body = Body { error: self.code.as_str(), error_description: self.description(), error_id: &self.error_id };
        // Strings only: serialising cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// A denial for failures outside `decide`: a host whose configuration did not load (`detail`
/// names the field), a host call that failed.
pub fn host_error(code: ErrorCode, error_id: &str, detail: Option<&str>) -> Deny {
    // A header value must be visible ASCII; config messages are, but a path may quote input.
    let detail = detail.map(|d| {
        format!("{}: {d}", code.description()).chars().take(400).map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
    });
    Deny {
        code,
        error_id: crate::request_id::sanitize(error_id),
        www_authenticate: None,
        remove_headers: Vec::new(),
        hold_until: None,
        detail,
    }
}
