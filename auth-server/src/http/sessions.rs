//! Sessions: refresh (rotation), validate, introspect (RFC 7662), list, revoke, logout.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{check_csrf, clear_cookies, cookie_names, get_cookie, AuthMethod, Caller, MaybeCaller};
use super::login::token_response;
use crate::app::AppState;
use crate::audit::Who;
use crate::authority;
use crate::crypto;
use crate::db::now;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::sessions::{self, Issued};

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Omit in cookie mode (the refresh cookie is used, with the `x-csrf-token` header).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "sessions", request_body = RefreshRequest,
    responses((status = 200, body = Issued), (status = 401, body = ErrorBody, description = "invalid, expired, or reused (the session is then revoked)")))]
pub async fn refresh(State(app): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let req: RefreshRequest = if body.is_empty() {
        RefreshRequest::default()
    } else {
        super::json_object(&body).map_err(|_| ApiError::bad_request("invalid_request", "the body must be JSON {\"refresh_token\": ...}"))?
    };
    if let Some(rt) = req.refresh_token {
        let issued = sessions::refresh(&app, &rt, None).await?;
        let mut resp = axum::Json(issued).into_response();
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(resp);
    }
    let names = cookie_names(&app);
    let rt = get_cookie(&headers, &names.refresh)
        .ok_or_else(|| ApiError::unauthorized("credential_missing", "send refresh_token, or the refresh cookie"))?;
    // CSRF is checked against the session the cookie belongs to, before anything is spent.
    let sid = sessions::session_of_refresh(&app, rt)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_refresh_token", "the refresh token is invalid or expired"))?;
    check_csrf(&app, &method, &headers, &sid)?;
    let issued = sessions::refresh(&app, rt, None).await?;
    Ok(token_response(&app, issued, Vec::new(), true))
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub amr: Vec<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub cookie_mode: bool,
    /// The session of the credential making this request.
    pub current: bool,
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), responses((status = 200, body = Vec<SessionInfo>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<SessionInfo>>> {
    let uid = caller.user_id()?;
    type Row = (String, i64, i64, i64, String, Option<String>, Option<String>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.id, s.created_at, COALESCE((SELECT MAX(r.created_at) FROM refresh_tokens r WHERE r.session_id = s.id), s.created_at), \
         s.expires_at, s.amr, s.user_agent, s.ip, s.cookie_mode FROM sessions s \
         WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 ORDER BY s.created_at DESC",
    )
    .bind(uid)
    .bind(now())
    .fetch_all(&app.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, created_at, last_used_at, expires_at, amr, user_agent, ip, cookie)| SessionInfo {
                current: caller.sid.as_deref() == Some(id.as_str()),
                id,
                created_at,
                last_used_at,
                expires_at,
                amr: amr.split_whitespace().map(str::to_string).collect(),
                user_agent,
                ip,
                cookie_mode: cookie != 0,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_one(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let uid = caller.user_id()?;
    let owner: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT user_id, org_id FROM sessions WHERE id = $1").bind(&id).fetch_optional(&app.db).await?;
    let allowed = match &owner {
        Some((owner, _)) if owner == uid => true,
        // An admin of the session's organisation (as the database says now).
        Some((_, org)) => {
            let actor = authority::Actor::load(&app, &caller).await?;
            actor.require_admin().is_ok() && org.as_deref() == Some(actor.org.as_str())
        }
        None => false,
    };
    if !allowed {
        return Err(ApiError::not_found("session_not_found", "no such session"));
    }
    sessions::revoke_session(&app, &id, "revoked_by_user", Who::of(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllQuery {
    /// Keep the session making the request (`true` or `false`; default `false`).
    pub keep_current: Option<bool>,
}

#[utoipa::path(delete, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), params(RevokeAllQuery),
    responses((status = 200, body = RevokedCount)))]
pub async fn revoke_all(
    State(app): State<AppState>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<RevokeAllQuery>,
) -> ApiResult<axum::Json<RevokedCount>> {
    let uid = caller.user_id()?;
    let keep = if q.keep_current == Some(true) { caller.sid.as_deref() } else { None };
    let n = sessions::revoke_all(&app, uid, keep, "revoked_all_by_user", Who::of(&caller)).await?;
    Ok(axum::Json(RevokedCount { revoked: n }))
}

#[utoipa::path(post, path = "/v1/sessions/logout", tag = "sessions", security(("bearer" = [])),
    responses((status = 204, description = "the current session is revoked (and cookies cleared)")))]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let sid = caller.sid.clone().ok_or_else(|| ApiError::bad_request("no_session", "this credential has no session"))?;
    sessions::revoke_session(&app, &sid, "logout", Who::of(&caller)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if caller.method == AuthMethod::Cookie {
        for c in clear_cookies(&app) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct ValidateResponse {
    pub active: bool,
    pub sub: String,
    pub org: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub sid: Option<String>,
    pub client_id: Option<String>,
    pub exp: Option<i64>,
    pub iat: i64,
    /// `jti` of an access token.
    pub jti: Option<String>,
    /// `id` of an API key.
    pub api_key_id: Option<String>,
    /// `bearer`, `cookie` or `api_key`.
    pub method: &'static str,
}

#[utoipa::path(get, path = "/v1/sessions/validate", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = ValidateResponse), (status = 401, body = ErrorBody)))]
pub async fn validate(caller: Caller) -> axum::Json<ValidateResponse> {
    axum::Json(ValidateResponse {
        active: true,
        method: match caller.method {
            AuthMethod::Bearer => "bearer",
            AuthMethod::Cookie => "cookie",
            AuthMethod::ApiKey => "api_key",
        },
        sub: caller.sub,
        org: caller.org,
        email: caller.email,
        roles: caller.roles,
        sid: caller.sid,
        client_id: caller.client_id,
        exp: caller.exp,
        iat: caller.iat,
        jti: caller.jti,
        api_key_id: caller.api_key_id,
    })
}

#[derive(Deserialize, ToSchema)]
pub struct IntrospectRequest {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662 answer: `{"active": false}` for anything not currently valid.
#[derive(Serialize, ToSchema, Default)]
pub struct IntrospectResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/sessions/introspect", tag = "sessions",
    request_body(content = IntrospectRequest, description = "JSON, or application/x-www-form-urlencoded as in RFC 7662"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = IntrospectResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn introspect(
    State(app): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // Platform callers (introspect or gateway in the operator organisation) see every token;
    // tenant callers (tenant admins, credentials with org_introspect) their organisation's only.
    let caller = caller.ok_or_else(|| {
        ApiError::invalid_token("credential_missing", "introspection needs a credential with the introspect or org_introspect role")
    })?;
    let scope = authority::introspect_scope(&app, &caller).await?;
    let form =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let req: IntrospectRequest = if form {
        serde_urlencoded_form(&body)?
    } else {
        super::json_object(&body)
            .map_err(|_| ApiError::bad_request("invalid_request", "send {\"token\": ...} as JSON or token=... as a form"))?
    };
    // RFC 7662 §2.1: the hint is only a hint; our tokens' own shape says what they are.
    let _hint = req.token_type_hint.as_deref();
    let out = if req.token.starts_with("rt_") {
        introspect_refresh(&app, &req.token).await?
    } else {
        match sessions::verify_access(&app, &req.token).await {
            Ok(c) => IntrospectResponse {
                active: true,
                token_type: Some("Bearer"),
                scope: (!c.scope_header.is_empty()).then(|| c.scope_header.clone()),
                client_id: c.client_id.clone(),
                sub: Some(c.subject.clone()),
                iss: c.issuer.clone(),
                // The audience it was verified for (one of the token's).
                aud: Some(app.cfg.tokens.audience.clone()),
                exp: c.expires_at,
                iat: c.issued_at,
                jti: c.token_id.clone(),
                sid: c.session_id.clone(),
                org: c.org.clone(),
                email: c.email.clone(),
                roles: Some(c.roles().map(str::to_string).collect()),
            },
            Err(e) if e.status == StatusCode::UNAUTHORIZED => IntrospectResponse::default(),
            Err(e) => return Err(e),
        }
    };
    // Another organisation's token answers exactly as an invalid one: no oracle.
    let out = match scope {
        authority::IntrospectScope::Org(org) if out.org.as_deref() != Some(org.as_str()) => IntrospectResponse::default(),
        _ => out,
    };
    let mut resp = axum::Json(out).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn introspect_refresh(app: &crate::app::App, token: &str) -> ApiResult<IntrospectResponse> {
    // session, token expiry, used, user, session expiry, session revoked, organisation
    type Row = (String, i64, Option<i64>, String, i64, Option<i64>, String);
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.session_id, r.expires_at, r.used_at, s.user_id, s.expires_at, s.revoked_at, s.org_id FROM refresh_tokens r \
         JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1",
    )
    .bind(crypto::sha256_hex(token.as_bytes()))
    .fetch_optional(&app.db)
    .await?;
    let t = now();
    Ok(match row {
        Some((sid, exp, None, user_id, sexp, None, org)) if exp > t && sexp > t => IntrospectResponse {
            active: true,
            token_type: Some("refresh_token"),
            sub: Some(user_id),
            org: Some(org),
            exp: Some(exp),
            sid: Some(sid),
            iss: Some(app.issuer().to_string()),
            ..Default::default()
        },
        _ => IntrospectResponse::default(),
    })
}

/// Minimal `application/x-www-form-urlencoded` decoding into the introspection request.
fn serde_urlencoded_form(body: &[u8]) -> ApiResult<IntrospectRequest> {
    let pairs = super::clients::parse_form(body)?;
    let token = pairs.get("token").cloned().ok_or_else(|| ApiError::bad_request("invalid_request", "token is required"))?;
    Ok(IntrospectRequest { token, token_type_hint: pairs.get("token_type_hint").cloned() })
}
