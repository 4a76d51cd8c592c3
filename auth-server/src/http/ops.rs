//! Keys, the revocation feed, discovery and operations endpoints.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "the public signing keys (JWKS)"), (status = 304, description = "unchanged")))]
pub async fn jwks(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let set = app.keys.get();
    let etag = HeaderValue::from_str(&set.jwks_etag).expect("hex etag");
    let cache = HeaderValue::from_static("public, max-age=300, stale-while-revalidate=60");
    if not_modified(&headers, &set.jwks_etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json")),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        set.jwks_body.clone(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys", responses((status = 200, description = "discovery document")))]
pub async fn discovery(State(app): State<AppState>) -> Response {
    let base = &app.cfg.public_url;
    let access_algs: Vec<&str> = {
        let set = app.keys.get();
        let mut a: Vec<&str> = set.keys.iter().filter(|k| !k.id_token_only).map(|k| k.key.alg.as_str()).collect();
        a.sort();
        a.dedup();
        a
    };
    let mut doc = json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/v1/sessions/introspect"),
        "revocation_feed_endpoint": format!("{base}/v1/revocations"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "access_token_signing_alg_values_supported": access_algs,
        "claims_supported": ["iss", "aud", "sub", "exp", "iat", "jti", "sid", "org", "email", "roles", "scope", "amr", "client_id"],
    });
    // The OpenID Connect provider lives on the hosted pages (its login UI).
    if app.cfg.pages.enabled {
        let id_algs = app.cfg.id_token_algs();
        let extra = json!({
            "authorization_endpoint": format!("{base}/oauth2/authorize"),
            "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
            "end_session_endpoint": format!("{base}/oauth2/logout"),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "scopes_supported": crate::oidc::OIDC_SCOPES,
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "id_token_signing_alg_values_supported": id_algs,
            "userinfo_signing_alg_values_supported": ["none"],
            "claims_supported": ["iss", "aud", "azp", "sub", "exp", "iat", "auth_time", "nonce", "amr", "sid", "org", "email", "email_verified",
                                 "roles", "scope", "client_id", "jti"],
            "authorization_response_iss_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
        });
        for (k, v) in extra.as_object().expect("object") {
            doc[k] = v.clone();
        }
    }
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], axum::Json(doc)).into_response()
}

#[utoipa::path(get, path = "/v1/revocations", tag = "gateways", security(("api_key" = [])),
    responses((status = 200, content_type = "application/jwt", description = "compact JWS, typ revocations+jwt"),
              (status = 304, description = "what you hold (If-None-Match) is current"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revocations(State(app): State<AppState>, caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    // Platform authority: the gateway role on a credential of the operator organisation.
    if !caller.platform(&app.cfg, crate::authority::GATEWAY) {
        return Err(ApiError::forbidden(
            "insufficient_role",
            "the revocation feed needs a credential of the operator organisation with the gateway role",
        ));
    }
    let feed = app.revs.feed(&app.keys.get()).await?;
    let etag = HeaderValue::from_str(&feed.etag).expect("hex etag");
    let cache = HeaderValue::from_static("no-cache");
    if not_modified(&headers, &feed.etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/jwt")), (header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        feed.jws,
    )
        .into_response())
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "database and ephemeral store reachable"), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> ApiResult<axum::Json<serde_json::Value>> {
    let db = tokio::time::timeout(std::time::Duration::from_secs(3), sqlx::query("SELECT 1").execute(&app.db)).await;
    if !matches!(db, Ok(Ok(_))) {
        return Err(ApiError::unavailable("database_unavailable", "the database is not reachable"));
    }
    let eph = tokio::time::timeout(std::time::Duration::from_secs(3), app.eph.ping()).await;
    if !matches!(eph, Ok(Ok(()))) {
        return Err(ApiError::unavailable("ephemeral_store_unavailable", "the ephemeral store (Redis) is not reachable"));
    }
    if app.keys.get().current(crate::db::now()).is_none() {
        return Err(ApiError::unavailable("no_signing_key", "no active signing key"));
    }
    Ok(axum::Json(
        json!({"status": "ready", "database": if app.cfg.is_postgres() { "postgres" } else { "sqlite" }, "ephemeral": app.eph.backend()}),
    ))
}

#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format (only where configured: `metrics.listen`, or `metrics.token` on this listener)"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    // The public listener serves metrics only to holders of `metrics.token`, and not at all
    // when they have a listener of their own.
    if app.cfg.metrics.listen.is_some() || app.cfg.metrics.token.is_none() {
        return Err(ApiError::not_found("not_found", "no such endpoint"));
    }
    render_metrics(&app, &headers)
}

/// `/metrics` on the `metrics.listen` listener.
pub async fn metrics_listener(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    render_metrics(&app, &headers)
}

fn render_metrics(app: &crate::app::App, headers: &HeaderMap) -> ApiResult<Response> {
    if let Some(token) = &app.cfg.metrics.token {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !crate::crypto::ct_eq(presented.as_bytes(), token.as_bytes()) {
            return Err(ApiError::invalid_token("metrics_token_invalid", "/metrics needs the metrics bearer token"));
        }
    }
    let body = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response())
}

pub async fn openapi() -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))], axum::Json(crate::openapi::document())).into_response()
}
