//! Machine clients and the OAuth2 `client_credentials` grant (RFC 6749 §4.4) at
//! `POST /oauth2/token`. Client secrets are 256 random bits, stored as SHA-256 (a slow hash
//! adds nothing to a secret that cannot be guessed) and compared in constant time.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::AppState;
use crate::authority::Actor;
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations;
use crate::sessions::{mint_access, Subject};
use crate::users::valid_role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    pub name: String,
    /// Roles the creator holds and may grant: tenant roles (platform roles only for a platform
    /// admin of the operator organisation).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes the client may ask for (all of them when it asks for none).
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedClient {
    pub client_id: String,
    /// Shown once.
    pub client_secret: String,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

#[utoipa::path(post, path = "/v1/clients", tag = "admin", request_body = CreateClientRequest, security(("bearer" = [])),
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(State(app): State<AppState>, caller: Caller, Json(req): Json<CreateClientRequest>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let (admin, org) = (actor.user.id.as_str(), actor.user.org_id.as_str());
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::bad_request("invalid_name", "name must have 1 to 100 characters"));
    }
    if !req.roles.iter().chain(req.scopes.iter()).all(|r| valid_role(r)) || req.roles.len() > 50 || req.scopes.len() > 50 {
        return Err(ApiError::bad_request("invalid_role", "roles and scopes are 1 to 64 visible ASCII characters without commas"));
    }
    for r in &req.roles {
        actor.may_delegate(&app.cfg, r)?;
    }
    let id = crypto::new_id("cli");
    let secret = crypto::new_secret("cs_");
    sqlx::query("INSERT INTO clients (id, secret_hash, org_id, name, roles, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&id)
        .bind(crypto::sha256_hex(secret.as_bytes()))
        .bind(org)
        .bind(req.name.trim())
        .bind(serde_json::to_string(&req.roles).expect("serializes"))
        .bind(serde_json::to_string(&req.scopes).expect("serializes"))
        .bind(admin)
        .bind(now())
        .execute(&app.db)
        .await?;
    let mut resp = (StatusCode::CREATED, axum::Json(CreatedClient { client_id: id, client_secret: secret, name: req.name, roles: req.roles, scopes: req.scopes })).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[utoipa::path(get, path = "/v1/clients", tag = "admin", security(("bearer" = [])), responses((status = 200, body = Vec<ClientInfo>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<ClientInfo>>> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let org = &actor.user.org_id;
    let rows: Vec<(String, String, String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, name, roles, scopes, created_at, revoked_at FROM clients WHERE org_id = $1 ORDER BY created_at, id").bind(org).fetch_all(&app.db).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(client_id, name, roles, scopes, created_at, revoked_at)| ClientInfo {
                client_id,
                name,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
                scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                created_at,
                revoked_at,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/clients/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "revoked, with every token it holds"), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let org = &actor.user.org_id;
    let mut tx = crate::db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let n = sqlx::query("UPDATE clients SET revoked_at = $1 WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL").bind(t).bind(&id).bind(org).execute(&mut *tx).await?.rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("client_not_found", "no such client"));
    }
    let cutoff = revocations::subject_cutoff(&app.cfg, t);
    revocations::insert(&mut tx, "sub", &id, Some(cutoff), cutoff + app.cfg.tokens.access_ttl_s).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> ApiResult<HashMap<String, String>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|_| ApiError::bad_request("invalid_request", "the body is not a valid form"))
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn invalid_client() -> ApiError {
    ApiError::unauthorized("invalid_client", "client authentication failed")
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded", description = "grant_type=client_credentials[&scope=...]; client auth by HTTP Basic or client_id/client_secret in the body"),
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn token(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let form = parse_form(&body)?;
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != "client_credentials" {
        return Err(ApiError::bad_request("unsupported_grant_type", "only grant_type=client_credentials is supported here"));
    }
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, cred) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, cred.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded.
        let id = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("a={id}")).ok()?.pop()?.1;
        let secret = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("a={secret}")).ok()?.pop()?.1;
        Some((id, secret))
    });
    let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(s)) => (id.clone(), s.clone()),
        _ => return Err(invalid_client()),
    };
    let row: Option<(String, String, String, String, Option<i64>)> =
        sqlx::query_as("SELECT secret_hash, org_id, roles, scopes, revoked_at FROM clients WHERE id = $1").bind(&client_id).fetch_optional(&app.db).await?;
    let presented = crypto::sha256_hex(secret.as_bytes());
    // Compare against a fixed decoy for unknown ids, so timing says nothing.
    let stored = row.as_ref().map(|r| r.0.clone()).unwrap_or_else(|| "0".repeat(64));
    let ok = crypto::ct_eq(presented.as_bytes(), stored.as_bytes());
    let Some((_, org, roles, scopes, revoked)) = row.filter(|_| ok) else { return Err(invalid_client()) };
    if revoked.is_some() {
        return Err(invalid_client());
    }
    let allowed: Vec<String> = serde_json::from_str(&scopes).unwrap_or_default();
    let granted: Vec<String> = match form.get("scope").map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
        Some(asked) if !asked.is_empty() => {
            if asked.iter().any(|s| !allowed.contains(s)) {
                return Err(ApiError::bad_request("invalid_scope", "a requested scope is not allowed for this client"));
            }
            asked
        }
        _ => allowed,
    };
    let scope = (!granted.is_empty()).then(|| granted.join(" "));
    let roles: Vec<String> = serde_json::from_str(&roles).unwrap_or_default();
    let (access, ttl) = mint_access(
        &app,
        Subject { sub: &client_id, email: None, org: Some(&org), roles, sid: None, amr: Vec::new(), scope: scope.clone(), client_id: Some(&client_id) },
    )?;
    metrics::counter!("authgate_logins_total", "flow" => "client_credentials").increment(1);
    let mut resp = axum::Json(TokenResponse { access_token: access, token_type: "Bearer", expires_in: ttl, scope }).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
