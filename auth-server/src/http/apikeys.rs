//! API keys (DESIGN.md): create → key id + secret (shown once, never stored) + emailed code →
//! verify → usable; list; revoke. Pending keys are listed as revoked in the feed.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use auth_core::apikey::{ApiKeyClaims, API_KEY_VERSION};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::codes::{self, NewCode};
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations::{self, FAR_FUTURE};
use crate::users::{self, valid_role};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    /// A subset of your roles (admins may also grant `gateway`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Lifetime in seconds; no expiry when absent.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key's `id` claim (what revocation lists and this API name).
    pub id: String,
    /// Send as `x-api-key` (or `authorization: ApiKey <key_id>.<secret>`).
    pub key_id: String,
    /// Shown once; the server does not keep it.
    pub secret: String,
    /// Verify with the emailed code at POST /v1/api-keys/verify.
    pub verification_id: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
}

/// Inserts a key and mints its secret inside a feed-locked transaction (so its `iat` is never
/// at or below a watermark already handed out while it was not yet listed as pending).
pub async fn insert_key(
    app: &App,
    subject: &str,
    user_id: Option<&str>,
    org: Option<&str>,
    name: &str,
    roles: Vec<String>,
    expires_in: Option<i64>,
    status: &str,
) -> Result<(ApiKeyClaims, String, String), ApiError> {
    let mut tx = crate::db::begin_write(&app.db).await?;
    db::feed_lock(&mut tx, true).await?;
    let iat = now();
    let claims = ApiKeyClaims {
        v: API_KEY_VERSION,
        kid: app.hmac_current().to_string(),
        id: crypto::random_id128(),
        sub: subject.to_string(),
        org: org.map(str::to_string),
        roles,
        iat,
        exp: expires_in.map(|s| iat + s),
    };
    let (key_id, secret) = app.hmac.mint(&claims).ok_or_else(|| ApiError::internal("HMAC key ring has no current key"))?;
    sqlx::query(
        "INSERT INTO api_keys (id, key_id, subject, user_id, org_id, name, roles, created_at, expires_at, status, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&claims.id)
    .bind(&key_id)
    .bind(subject)
    .bind(user_id)
    .bind(org)
    .bind(name)
    .bind(serde_json::to_string(&claims.roles).expect("serializes"))
    .bind(iat)
    .bind(claims.exp)
    .bind(status)
    .bind(if status == "active" { Some(iat) } else { None })
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok((claims, key_id, secret))
}

#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKeyRequest, security(("bearer" = [])),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(State(app): State<AppState>, caller: Caller, Json(req): Json<CreateKeyRequest>) -> ApiResult<Response> {
    let uid = caller.user_id()?.to_string();
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::bad_request("invalid_name", "name must have 1 to 100 characters"));
    }
    if let Some(s) = req.expires_in {
        if !(60..=10 * 365 * 86400).contains(&s) {
            return Err(ApiError::bad_request("invalid_expiry", "expires_in must be between 60 seconds and 10 years"));
        }
    }
    let user = users::by_id(&app.db, &uid).await?.filter(|u| u.status == "active").ok_or_else(|| ApiError::invalid_token("account_disabled", "the account is not active"))?;
    // Roles from the database, not the token: a demoted user cannot mint old roles.
    let mine = users::roles(&app.db, &uid).await?;
    let is_admin = mine.iter().any(|r| r == "admin");
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    for r in &roles {
        if !valid_role(r) {
            return Err(ApiError::bad_request("invalid_role", "roles are 1 to 64 visible ASCII characters without commas"));
        }
        if !(mine.contains(r) || (is_admin && r == "gateway")) {
            return Err(ApiError::forbidden("role_not_held", "an API key can only carry roles its creator holds"));
        }
    }
    let (claims, key_id, secret) = insert_key(&app, &uid, Some(&uid), Some(&user.org_id), req.name.trim(), roles, req.expires_in, "pending").await?;
    let (vid, _) = codes::issue(
        &app,
        NewCode {
            purpose: "api_key",
            account: &user.email,
            subject: &claims.id,
            data: None,
            mail: Some(("Confirm your new API key", "Someone (hopefully you) created an authgate API key. Confirm it with the code {code} within {minutes} minutes. If it was not you, change your password.")),
        },
    )
    .await?;
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(CreatedKey { id: claims.id, key_id, secret, verification_id: vid, status: "pending", expires_at: claims.exp }),
    )
        .into_response();
    resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeyRequest {
    pub verification_id: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyStatus {
    pub id: String,
    pub status: String,
}

#[utoipa::path(post, path = "/v1/api-keys/verify", tag = "api-keys", request_body = VerifyKeyRequest, security(("bearer" = [])),
    responses((status = 200, body = KeyStatus), (status = 400, body = ErrorBody)))]
pub async fn verify(State(app): State<AppState>, caller: Caller, Json(req): Json<VerifyKeyRequest>) -> ApiResult<axum::Json<KeyStatus>> {
    let uid = caller.user_id()?.to_string();
    let entry = codes::verify(&app, &req.verification_id, &req.code, "api_key", StatusCode::BAD_REQUEST).await?;
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    db::feed_lock(&mut tx, true).await?;
    let n = sqlx::query("UPDATE api_keys SET status = 'active', verified_at = $1 WHERE id = $2 AND user_id = $3 AND status = 'pending' AND created_at > $4")
        .bind(t)
        .bind(&entry.subject)
        .bind(&uid)
        .bind(t - app.cfg.api_keys.pending_ttl_s)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::bad_request("invalid_code", "the code is invalid or has expired"));
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(axum::Json(KeyStatus { id: entry.subject, status: "active".into() }))
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub key_id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// `pending`, `active` or `revoked` (expired keys say `active` with `expires_at` past).
    pub status: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub verified_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])), responses((status = 200, body = Vec<KeyInfo>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<KeyInfo>>> {
    let uid = caller.user_id()?;
    type Row = (String, String, String, String, String, i64, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, key_id, name, roles, status, created_at, expires_at, verified_at, revoked_at FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(uid)
    .fetch_all(&app.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, key_id, name, roles, status, created_at, expires_at, verified_at, revoked_at)| KeyInfo {
                id,
                key_id,
                name,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
                status,
                created_at,
                expires_at,
                verified_at,
                revoked_at,
            })
            .collect(),
    ))
}

/// Revokes a key (inside its own feed-locked transaction). Returns whether it was live.
pub async fn revoke_key(app: &App, id: &str) -> Result<bool, ApiError> {
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    db::feed_lock(&mut tx, true).await?;
    let exp: Option<Option<i64>> =
        sqlx::query_scalar("UPDATE api_keys SET status = 'revoked', revoked_at = $1 WHERE id = $2 AND status <> 'revoked' RETURNING expires_at")
            .bind(t)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(exp) = exp {
        revocations::insert(&mut tx, "api_key", id, None, exp.unwrap_or(FAR_FUTURE)).await?;
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(exp.is_some())
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let uid = caller.user_id()?;
    let owner: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT user_id, org_id FROM api_keys WHERE id = $1").bind(&id).fetch_optional(&app.db).await?;
    let allowed = match &owner {
        Some((Some(owner), _)) if owner == uid => true,
        Some((_, org)) => caller.has_role("admin") && org.is_some() && caller.org == *org,
        None => false,
    };
    if !allowed {
        return Err(ApiError::not_found("api_key_not_found", "no such API key"));
    }
    revoke_key(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
