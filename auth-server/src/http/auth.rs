//! Who is calling: a bearer access token, an HttpOnly cookie (with CSRF protection on
//! state-changing requests), or an API key. Plus the cookie helpers of cookie mode.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use auth_core::apikey;

use crate::app::{App, AppState};
use crate::crypto;
use crate::db::now;
use crate::error::ApiError;
use crate::sessions;

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
            return Err(ApiError::forbidden("user_session_required", "this endpoint needs a user's session, not an API key or machine token"));
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

pub fn get_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
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
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite={}", app.cfg.cookies.same_site);
    if app.cfg.cookies.secure {
        c.push_str("; Secure");
    }
    if http_only {
        c.push_str("; HttpOnly");
    }
    HeaderValue::from_str(&c).expect("cookie values are base64url")
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
    vec![set_cookie(&n.access, "", "/", 0, true, app), set_cookie(&n.refresh, "", &rpath, 0, true, app), set_cookie(&n.csrf, "", "/", 0, false, app)]
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

pub async fn authenticate(app: &App, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let authz = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let key = headers.get("x-api-key").map(|v| v.to_str().unwrap_or(""));
    if authz.is_some() && key.is_some() {
        return Err(ApiError::bad_request("conflicting_credentials", "the request carries more than one credential"));
    }
    if let Some(authz) = authz {
        let (scheme, cred) = authz.split_once(' ').unwrap_or((authz, ""));
        let cred = cred.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty() {
            return bearer(app, cred, AuthMethod::Bearer).await;
        }
        if scheme.eq_ignore_ascii_case("apikey") {
            let (id, secret) = apikey::split_combined(cred).ok_or_else(|| ApiError::invalid_token("api_key_malformed", "the API key is malformed"))?;
            return api_key(app, id, secret).await;
        }
        return Err(ApiError::invalid_token("unsupported_scheme", "the authorization scheme is not supported"));
    }
    if let Some(id) = key {
        let secret = headers.get("x-api-secret").and_then(|v| v.to_str().ok()).unwrap_or("");
        return api_key(app, id, secret).await;
    }
    let names = cookie_names(app);
    if let Some(token) = get_cookie(headers, &names.access) {
        let caller = bearer(app, token, AuthMethod::Cookie).await?;
        let sid = caller.sid.as_deref().ok_or_else(|| ApiError::invalid_token("claims_invalid", "cookie token without a session"))?;
        check_csrf(app, method, headers, sid)?;
        return Ok(caller);
    }
    Err(ApiError::invalid_token("credential_missing", "this endpoint requires a credential"))
}

async fn bearer(app: &App, token: &str, method: AuthMethod) -> Result<Caller, ApiError> {
    let c = sessions::verify_access(app, token).await?;
    Ok(Caller {
        method,
        sub: c.sub,
        org: c.org,
        email: c.email,
        roles: c.roles,
        sid: c.sid,
        jti: Some(c.jti),
        client_id: c.client_id,
        api_key_id: None,
        iat: c.iat,
        exp: Some(c.exp),
    })
}

async fn api_key(app: &App, key_id: &str, secret: &str) -> Result<Caller, ApiError> {
    let claims = app.hmac.verify(key_id, secret, 8192).map_err(|code| ApiError::invalid_token(code.as_str(), code.description()))?;
    if claims.exp.is_some_and(|e| now() >= e) {
        return Err(ApiError::invalid_token("api_key_expired", "the API key has expired"));
    }
    let snap = app.revs.current().await?;
    if snap.api_key_listed(&claims.id) || claims.iat > snap.watermark {
        // Listed (revoked or pending) or newer than the snapshot: the database decides.
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM api_keys WHERE id = $1").bind(&claims.id).fetch_optional(&app.db).await?;
        match status.as_deref() {
            Some("active") => {}
            Some("pending") => return Err(ApiError::invalid_token("api_key_pending", "the API key is not verified yet")),
            _ => return Err(ApiError::invalid_token("api_key_revoked", "the API key has been revoked")),
        }
    }
    if snap.subject_revoked(&claims.sub, claims.iat) {
        return Err(ApiError::invalid_token("subject_revoked", "the subject's credentials have been revoked"));
    }
    Ok(Caller {
        method: AuthMethod::ApiKey,
        sub: claims.sub,
        org: claims.org,
        email: None,
        roles: claims.roles,
        sid: None,
        jti: None,
        client_id: None,
        api_key_id: Some(claims.id),
        iat: claims.iat,
        exp: claims.exp,
    })
}
