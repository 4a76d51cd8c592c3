//! Who is calling: a bearer access token, an HttpOnly cookie (with CSRF protection on
//! state-changing requests), or an API key. Plus the cookie helpers of cookie mode.

use auth_core::credential::{self, Credential};
use auth_core::{CookieConfig, ErrorCode, UnixTime};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};

use crate::app::{App, AppState};
use crate::crypto;
use crate::db::now;
use crate::error::ApiError;
use crate::sessions::{self, credential_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Cookie,
    ApiKey,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub method: AuthMethod,
    pub sub: String,
    pub org: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub sid: Option<String>,
    pub jti: Option<String>,
    pub client_id: Option<String>,
    /// The access token's `scope` (space-separated), if any.
    pub scope: Option<String>,
    /// The API key's `id` claim.
    pub api_key_id: Option<String>,
    pub iat: i64,
    pub exp: Option<i64>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A person logged in (not a machine client, not an API key): their user id.
    pub fn user_id(&self) -> Result<&str, ApiError> {
        if self.method == AuthMethod::ApiKey || self.client_id.is_some() || self.sid.is_none() {
            return Err(ApiError::forbidden(
                "user_session_required",
                "this endpoint needs a user's session, not an API key or machine token",
            ));
        }
        Ok(&self.sub)
    }

    /// Platform authority (docs/authority.md): the platform role *and* a credential of the
    /// operator organisation. A tenant's credential never has it, whatever roles it carries.
    pub fn platform(&self, cfg: &crate::config::Config, role: &str) -> bool {
        let operator = match self.org.as_deref() {
            Some(org) => org == cfg.platform.operator_org,
            // API keys without an organisation are the operator's: only `gateway-config` (the
            // CLI) ever minted them, before service keys carried the operator organisation.
            // User keys, user tokens and machine tokens always name their organisation.
            None => self.method == AuthMethod::ApiKey,
        };
        operator && crate::authority::is_platform_role(role) && self.has_role(role)
    }
}

pub struct CookieNames {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
}

/// Cookie names. The access and CSRF cookies are `__Host-` (host-only, `Path=/`); the refresh
/// cookie is scoped to the refresh endpoint, which `__Host-` does not allow, so it is
/// `__Secure-` (host-only all the same: no `Domain` is ever set).
pub fn cookie_names(app: &App) -> CookieNames {
    let (host, secure) = if app.cfg.cookies.secure { ("__Host-", "__Secure-") } else { ("", "") };
    CookieNames { access: format!("{host}authgate_at"), refresh: format!("{secure}authgate_rt"), csrf: format!("{host}authgate_csrf") }
}

/// The path the refresh cookie is sent to: only the refresh endpoint, so the refresh token never
/// travels with requests to upstreams behind a gateway on the same host.
pub fn refresh_cookie_path(app: &App) -> String {
    format!("{}/v1/sessions/refresh", app.cfg.public_path())
}

/// A cookie's value, read by auth-core's rules for `Cookie` headers (as the gateways read them).
pub fn get_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth_core::cookie::pairs)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of a session: an HMAC of its id, so it cannot be planted or guessed.
pub fn csrf_token(app: &App, sid: &str) -> String {
    auth_core::b64::encode(&crypto::hmac_sha256(&app.master.csrf_key[..], sid.as_bytes()))
}

/// One `Set-Cookie` value. Every part is header-safe: fixed names, base64url values, a path
/// from `public_url` (validated: visible ASCII without `;`), a validated SameSite.
fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, http_only: bool, app: &App) -> HeaderValue {
    cookie_header(name, value, path, max_age, &app.cfg.cookies.same_site, http_only, app).expect("cookie values are base64url")
}

/// A `Set-Cookie` value with an explicit SameSite (the hosted pages' own cookies are always
/// `Strict`); `Secure` as `cookies.secure` says. `Err` when a part is not header-safe.
pub fn cookie_header(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    same_site: &str,
    http_only: bool,
    app: &App,
) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite={same_site}");
    if app.cfg.cookies.secure {
        c.push_str("; Secure");
    }
    if http_only {
        c.push_str("; HttpOnly");
    }
    HeaderValue::from_str(&c)
}

/// `Set-Cookie` headers for a cookie-mode session.
pub fn session_cookies(app: &App, issued: &sessions::Issued) -> Vec<HeaderValue> {
    let n = cookie_names(app);
    let rpath = refresh_cookie_path(app);
    vec![
        set_cookie(&n.access, &issued.access_token, "/", issued.expires_in, true, app),
        set_cookie(&n.refresh, &issued.refresh_token, &rpath, issued.refresh_expires_in, true, app),
        set_cookie(&n.csrf, &csrf_token(app, &issued.session_id), "/", issued.refresh_expires_in, false, app),
    ]
}

/// Clears the cookie-mode cookies (each with the path it was set with, or the browser keeps it).
pub fn clear_cookies(app: &App) -> Vec<HeaderValue> {
    let n = cookie_names(app);
    let rpath = refresh_cookie_path(app);
    vec![
        set_cookie(&n.access, "", "/", 0, true, app),
        set_cookie(&n.refresh, "", &rpath, 0, true, app),
        set_cookie(&n.csrf, "", "/", 0, false, app),
    ]
}

/// CSRF defence for cookie-authenticated state-changing requests: the `x-csrf-token` header must
/// carry the session's token (a cross-site form cannot set headers, nor read the cookie), and an
/// `Origin` header, when sent, must be an allowed origin.
pub fn check_csrf(app: &App, method: &Method, headers: &HeaderMap, sid: &str) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let public = app.cfg.public_origin();
        if origin != public && !app.cfg.cookies.allowed_origins.iter().any(|o| o == origin) {
            return Err(ApiError::forbidden("csrf_origin_mismatch", "cross-origin request refused"));
        }
    }
    let presented = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crypto::ct_eq(presented.as_bytes(), csrf_token(app, sid).as_bytes()) {
        return Err(ApiError::forbidden("csrf_token_invalid", "missing or wrong x-csrf-token header"));
    }
    Ok(())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(app, &parts.method, &parts.headers).await
    }
}

/// An optional caller: `None` when no credential was sent at all.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let names = cookie_names(app);
        if h.contains_key(header::AUTHORIZATION) || h.contains_key("x-api-key") || get_cookie(h, &names.access).is_some() {
            authenticate(app, &parts.method, h).await.map(|c| MaybeCaller(Some(c)))
        } else {
            Ok(MaybeCaller(None))
        }
    }
}

/// Who is calling: the one credential of the request (auth-core's header rules: merged and
/// repeated credential headers, a cookie only without a header credential), judged by
/// auth-core's verifier and the revocation snapshot; the database settles only what the
/// snapshot cannot know (an API key it lists or that is newer than it).
pub async fn authenticate(app: &App, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    // Values are octets; one that is not UTF-8 cannot be a valid credential, and the
    // replacement character keeps it malformed.
    let owned: Vec<(&str, String)> =
        headers.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let names = cookie_names(app);
    let cookie =
        CookieConfig { name: names.access, csrf_cookie: names.csrf, csrf_header: "x-csrf-token".into(), allowed_origins: Vec::new() };
    let credential = credential::extract(&pairs, Some(&cookie))
        .map_err(credential_error)?
        .ok_or_else(|| ApiError::invalid_token("credential_missing", "this endpoint requires a credential"))?;
    match credential {
        Credential::Bearer(token) => bearer(app, token, AuthMethod::Bearer).await,
        Credential::Cookie(token) => {
            let caller = bearer(app, token, AuthMethod::Cookie).await?;
            let sid = caller.sid.as_deref().ok_or_else(|| ApiError::invalid_token("claims_invalid", "cookie token without a session"))?;
            check_csrf(app, method, headers, sid)?;
            Ok(caller)
        }
        Credential::ApiKey { key_id, secret } => api_key(app, key_id, secret).await,
    }
}

async fn bearer(app: &App, token: &str, method: AuthMethod) -> Result<Caller, ApiError> {
    let id = sessions::verify_access(app, token).await?;
    Ok(Caller {
        method,
        sub: id.subject.clone(),
        org: id.org.clone(),
        email: id.email.clone(),
        roles: id.roles().map(str::to_string).collect(),
        sid: id.session_id.clone(),
        jti: id.token_id.clone(),
        client_id: id.client_id.clone(),
        scope: (!id.scope_header.is_empty()).then(|| id.scope_header.clone()),
        api_key_id: None,
        iat: id.issued_at.unwrap_or(0),
        exp: id.expires_at,
    })
}

async fn api_key(app: &App, key_id: &str, secret: &str) -> Result<Caller, ApiError> {
    let keys = app.keys.get();
    let verified = keys.verifier.verify_api_key(key_id, secret, UnixTime::from_secs(now())).map_err(|r| credential_error(r.code))?;
    let id = verified.identity;
    let snap = app.revs.current().await?;
    match snap.list.check(&id, true) {
        Ok(()) => {}
        // Listed, or newer than the snapshot: the database decides, then the subject's cut-off.
        Err(ErrorCode::ApiKeyRevoked | ErrorCode::ApiKeyPending) => {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM api_keys WHERE id = $1").bind(id.key_id.as_deref()).fetch_optional(&app.db).await?;
            if status.as_deref() != Some("active") {
                return Err(credential_error(ErrorCode::ApiKeyRevoked));
            }
            snap.list.check_subject(&id).map_err(credential_error)?;
        }
        Err(code) => return Err(credential_error(code)),
    }
    Ok(Caller {
        method: AuthMethod::ApiKey,
        sub: id.subject.clone(),
        org: id.org.clone(),
        email: None,
        roles: id.roles().map(str::to_string).collect(),
        sid: None,
        jti: None,
        client_id: None,
        scope: None,
        api_key_id: id.key_id.clone(),
        iat: id.issued_at.unwrap_or(0),
        exp: id.expires_at,
    })
}
