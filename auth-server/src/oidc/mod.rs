//! authgate as an OpenID Connect provider: what an authorization request may ask (parsed once
//! into [`AuthRequest`]), PKCE, redirect-URI rules and ID tokens. The browser side is
//! `pages/authorize.rs`, the token endpoint `http/oauth.rs`; codes and consents are `grants.rs`.

pub mod client;
pub mod grants;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use client::Client;

/// Scopes every client may ask for; anything else must be in the client's `scopes`.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

/// A validated authorization request, kept while the person signs in and consents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// When the request arrived: `prompt=login` needs a sign-in after it.
    pub received_at: i64,
    /// With `prompt=login`: the browser's session when the request arrived, which cannot
    /// satisfy it (a sign-in in the same second as the request is otherwise indistinguishable).
    #[serde(default)]
    pub session_to_replace: Option<String>,
}

/// Why an authorization request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No trustworthy redirect URI (unknown client, URI not registered): shown to the person,
    /// never redirected (RFC 6749 §4.1.2.1).
    Page(&'static str, &'static str),
    /// Sent back to the client's redirect URI with `error`, `error_description`, `state`, `iss`.
    Redirect(&'static str, &'static str),
}

impl AuthRequest {
    /// Checks a request against its client. `params` are the query (or form) pairs as sent; a
    /// parameter sent twice is refused (RFC 6749 §3.1).
    pub fn parse(params: &[(String, String)], client: Option<&Client>, now: i64) -> Result<AuthRequest, AuthError> {
        let mut seen: Vec<&str> = Vec::new();
        let mut repeated = None;
        for (k, _) in params {
            if seen.contains(&k.as_str()) {
                repeated = Some(k.as_str());
            }
            seen.push(k);
        }
        if matches!(repeated, Some("client_id" | "redirect_uri")) {
            return Err(AuthError::Page("invalid_request", "a parameter is repeated"));
        }
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        let client = client.ok_or(AuthError::Page("invalid_client", "unknown client"))?;
        if get("client_id") != Some(client.id.as_str()) {
            return Err(AuthError::Page("invalid_client", "unknown client"));
        }
        if !client.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(AuthError::Page("unauthorized_client", "this client may not use the authorization code flow"));
        }
        // Exact string comparison with a registered URI: no prefix, no normalisation.
        let redirect_uri = get("redirect_uri").ok_or(AuthError::Page("invalid_request", "redirect_uri is required"))?;
        if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(AuthError::Page("invalid_redirect_uri", "redirect_uri is not registered for this client"));
        }
        // From here on, errors go back to the client.
        if repeated.is_some() {
            return Err(AuthError::Redirect("invalid_request", "a parameter is repeated"));
        }
        let bounded = |name: &str, max: usize| -> Result<Option<String>, AuthError> {
            match get(name) {
                Some(v) if v.len() > max || v.chars().any(char::is_control) => {
                    Err(AuthError::Redirect("invalid_request", "a parameter is too long or has control characters"))
                }
                v => Ok(v.map(str::to_string)),
            }
        };
        let state = bounded("state", 1024)?;
        if get("request").is_some() || get("request_uri").is_some() {
            return Err(AuthError::Redirect("request_not_supported", "request objects are not supported"));
        }
        if get("response_type") != Some("code") {
            return Err(AuthError::Redirect("unsupported_response_type", "only response_type=code is supported"));
        }
        if get("response_mode").is_some_and(|m| m != "query") {
            return Err(AuthError::Redirect("invalid_request", "only response_mode=query is supported"));
        }
        let scope: Vec<String> = get("scope").unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
        if scope.len() > 50 || scope.iter().any(|s| !OIDC_SCOPES.contains(&s.as_str()) && !client.scopes.contains(s)) {
            return Err(AuthError::Redirect("invalid_scope", "a requested scope is not allowed for this client"));
        }
        let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
            (None, None) => None,
            (Some(c), Some("S256")) if is_pkce_value(c) && c.len() == 43 => Some(c.to_string()),
            (Some(_), Some("S256")) => {
                return Err(AuthError::Redirect("invalid_request", "code_challenge must be 43 base64url characters"))
            }
            (Some(_), None | Some("plain")) | (None, Some(_)) => {
                return Err(AuthError::Redirect("invalid_request", "PKCE needs code_challenge with code_challenge_method=S256"))
            }
            (Some(_), Some(_)) => return Err(AuthError::Redirect("invalid_request", "code_challenge_method must be S256")),
        };
        if code_challenge.is_none() && (client.public || client.require_pkce) {
            return Err(AuthError::Redirect("invalid_request", "this client must use PKCE (code_challenge, S256)"));
        }
        let prompts: Vec<&str> = get("prompt").unwrap_or("").split(' ').filter(|s| !s.is_empty()).collect();
        if prompts.iter().any(|p| !["none", "login", "consent", "select_account"].contains(p)) {
            return Err(AuthError::Redirect("invalid_request", "prompt must be none, login, consent or select_account"));
        }
        let prompt_none = prompts.contains(&"none");
        if prompt_none && prompts.len() > 1 {
            return Err(AuthError::Redirect("invalid_request", "prompt=none cannot be combined"));
        }
        let max_age = match get("max_age") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (0..=10 * 365 * 86400).contains(&n) && !v.starts_with('+') => Some(n),
                _ => return Err(AuthError::Redirect("invalid_request", "max_age must be a number of seconds")),
            },
        };
        Ok(AuthRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_string(),
            scope,
            state,
            nonce: bounded("nonce", 512)?,
            code_challenge,
            prompt_none,
            // One account per browser: choosing an account is signing in again.
            prompt_login: prompts.contains(&"login") || prompts.contains(&"select_account"),
            prompt_consent: prompts.contains(&"consent"),
            max_age,
            login_hint: bounded("login_hint", 320)?,
            received_at: now,
            session_to_replace: None,
        })
    }

    /// Does a session signed in at `auth_time` satisfy this request, or must the person sign
    /// in again (`prompt=login` asks for a sign-in after the request, `max_age` a recent one)?
    pub fn session_fresh_enough(&self, sid: &str, auth_time: i64, now: i64) -> bool {
        if self.prompt_login && (auth_time < self.received_at || self.session_to_replace.as_deref() == Some(sid)) {
            return false;
        }
        self.max_age.is_none_or(|m| now - auth_time <= m || auth_time >= self.received_at)
    }
}

/// RFC 7636 §4.1: unreserved characters only.
fn is_pkce_value(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Does `verifier` answer `challenge` (S256)? The verifier must be 43 to 128 unreserved
/// characters (RFC 7636 §4.1).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) || !is_pkce_value(verifier) {
        return false;
    }
    let digest = Sha256::digest(verifier.as_bytes());
    crate::crypto::ct_eq(auth_core::b64::encode(&digest).as_bytes(), challenge.as_bytes())
}

/// `uri` with `params` added to its query (its own query kept, any fragment refused at
/// registration), for the redirect back to a client.
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let extra = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{extra}")
}

/// Is `uri` acceptable as a registered redirect URI? An absolute URL without fragment or
/// userinfo: `https`, `http` on a loopback host (RFC 8252 §7.3), or a private-use scheme with a
/// dot (reverse domain, RFC 8252 §7.1) for native apps. Returns why not.
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2000 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("at most 2000 visible ASCII characters");
    }
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URL")?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("a redirect URI cannot have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI cannot have userinfo");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")) => Ok(()),
        "http" => Err("http is allowed only for loopback hosts (127.0.0.1, [::1], localhost); use https"),
        "javascript" | "data" | "file" | "blob" | "vbscript" | "about" | "ws" | "wss" | "ftp" => {
            Err("this scheme cannot be a redirect URI")
        }
        s if s.contains('.') => Ok(()),
        _ => Err("https, loopback http, or a reverse-domain private-use scheme (com.example.app:/callback)"),
    }
}

/// The claims of an ID token (OpenID Connect Core §2).
#[derive(Serialize)]
pub struct IdTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub azp: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<&'a str>,
}

#[cfg(test)]
mod tests;
