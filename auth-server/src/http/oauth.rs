//! The OAuth 2.0 / OpenID Connect endpoints a client calls directly: the token endpoint (every
//! grant), userinfo and token revocation (RFC 7009). The browser-facing `/oauth2/authorize` is
//! a hosted page (`pages/authorize.rs`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Caller;
use super::clients::{client_credentials, parse_form};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::oidc::{client, grants};

/// Token responses are never cached (RFC 6749 §5.1).
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Client authentication, with a limit per client address on failures (`rate_limits.auth_per_ip`
/// per window): secrets cannot be guessed, but a source of nothing but failures is cut off.
async fn authenticate_client(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> ApiResult<client::Client> {
    let key = format!("rl:client_auth:{}", super::rate_key(ip));
    let (failures, ttl) = app.eph.count(&key).await?;
    if failures >= app.cfg.rate_limits.auth_per_ip {
        metrics::counter!("authgate_rate_limited_total", "scope" => "client_auth").increment(1);
        return Err(ApiError::too_many("rate_limited", "too many failed client authentications from this address", ttl));
    }
    let result = client::authenticate(&app.db, headers, form).await;
    if matches!(&result, Err(e) if e.code == "invalid_client") {
        app.eph.incr(&key, app.cfg.rate_limits.window_s).await?;
    }
    result
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials[&scope]; authorization_code&code&redirect_uri&code_verifier; refresh_token&refresh_token. \
                       Client auth: HTTP Basic or client_id/client_secret in the body; public clients send client_id only."),
    responses((status = 200, body = grants::ClientTokens, description = "client_credentials: access_token, token_type, expires_in, scope; \
                  authorization_code and refresh_token: also refresh_token and (with openid) id_token"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn token(
    State(app): State<AppState>,
    super::ClientIp(ip): super::ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let form = parse_form(&body)?;
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if !["client_credentials", "authorization_code", "refresh_token"].contains(&grant) {
        return Err(ApiError::bad_request("unsupported_grant_type", "grant_type: client_credentials, authorization_code or refresh_token"));
    }
    let client = authenticate_client(&app, ip, &headers, &form).await?;
    let tokens = match grant {
        "client_credentials" => return client_credentials(&app, &client, &form).await,
        "authorization_code" => {
            if !client.allows_grant("authorization_code") {
                return Err(ApiError::bad_request("unauthorized_client", "this client may not use the authorization code flow"));
            }
            let code = form.get("code").map(String::as_str).unwrap_or("");
            let ip = ip.to_string();
            let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
            grants::exchange_code(
                &app,
                &client,
                code,
                form.get("redirect_uri").map(String::as_str),
                form.get("code_verifier").map(String::as_str),
                (ua, Some(&ip)),
            )
            .await?
        }
        _ => grants::refresh(&app, &client, form.get("refresh_token").map(String::as_str).unwrap_or("")).await?,
    };
    Ok(no_store(axum::Json(tokens).into_response()))
}

#[utoipa::path(method(get, post), path = "/oauth2/userinfo", tag = "oauth2", security(("bearer" = [])),
    responses((status = 200, description = "sub, org; email/email_verified with the email scope; name (when set) with the profile scope"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn userinfo(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    // An access token a client got for a person, with `openid` granted.
    let scopes: Vec<&str> = caller.scope.as_deref().unwrap_or("").split(' ').collect();
    if caller.client_id.is_none() || caller.sid.is_none() || !scopes.contains(&"openid") {
        return Err(ApiError::forbidden("insufficient_scope", "userinfo needs an access token issued to a client with the openid scope"));
    }
    let user = crate::users::by_id(&app.db, &caller.sub)
        .await?
        .filter(|u| u.status == "active")
        .ok_or_else(|| ApiError::invalid_token("account_disabled", "the account is not active"))?;
    // The organisation of the session the client's token came from.
    let mut body = json!({ "sub": user.id, "org": caller.org });
    if scopes.contains(&"profile") {
        if let Some(name) = &user.name {
            body["name"] = json!(name);
        }
    }
    if scopes.contains(&"email") {
        body["email"] = json!(user.email);
        body["email_verified"] = json!(true);
    }
    Ok(no_store(axum::Json(body).into_response()))
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded", description = "token[&token_type_hint]; client auth as at the token endpoint"),
    responses((status = 200, description = "revoked, or nothing to revoke (RFC 7009 §2.2)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn revoke(
    State(app): State<AppState>,
    super::ClientIp(ip): super::ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let form = parse_form(&body)?;
    let client = authenticate_client(&app, ip, &headers, &form).await?;
    let token = form.get("token").map(String::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "token is required"));
    }
    // Only the client's own tokens: another client's token is "nothing to revoke" (§2.1).
    let sid = if token.starts_with("rt_") {
        crate::sessions::session_of_refresh(&app, token).await?
    } else {
        // (A value that could not travel in a header was refused so before: kept.)
        if HeaderValue::from_str(token).is_err() {
            return Err(ApiError::bad_request("invalid_request", "token is malformed"));
        }
        match crate::sessions::verify_access(&app, token).await {
            Ok(id) if id.client_id.as_deref() == Some(client.id.as_str()) => id.session_id.clone(),
            _ => None,
        }
    };
    if let Some(sid) = sid {
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT client_id FROM sessions WHERE id = $1").bind(&sid).fetch_optional(&app.db).await?;
        if owner.flatten().as_deref() == Some(client.id.as_str()) {
            crate::sessions::revoke_session(&app, &sid, "client_revoked_token", crate::audit::Who::Client(&client.id)).await?;
        }
    }
    Ok(StatusCode::OK)
}
