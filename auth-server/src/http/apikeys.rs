//! API keys: a request (name, roles, lifetime) answered with an emailed code; the key is minted
//! only when the code is verified — active at once, its secret shown once — so a request is never
//! a credential and never enters the revocation feed. List; revoke. Per user: a rate limit on
//! both endpoints, at most `api_keys.max_pending_per_user` requests waiting and
//! `api_keys.max_per_user` keys active or revoked-but-unexpired (what the feed can list); every
//! key expires within `api_keys.max_lifetime_s`.

use auth_core::apikey::{ApiKeyClaims, API_KEY_VERSION};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::authority::Actor;
use crate::codes::{self, NewCode};
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations::{self, FAR_FUTURE};
use crate::users::valid_role;

const KEY_MAIL: (&str, &str) = (
    "Confirm your new API key",
    "Someone (hopefully you) asked for an API key for {product}. Confirm it with the code {code} within {minutes} minutes; \
the key is made only then. If it was not you, change your password.",
);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    /// Roles you hold and may grant: tenant roles (platform roles only for a platform admin of
    /// the operator organisation).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Lifetime in seconds (60 to `api_keys.max_lifetime_s`); absent: the maximum.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyRequested {
    /// Send it with the emailed code to POST /v1/api-keys/verify, which makes the key.
    pub verification_id: String,
    /// Seconds the code (and the request) lives.
    pub expires_in: i64,
    pub name: String,
    pub roles: Vec<String>,
    /// The key's lifetime, counted from its verification.
    pub lifetime_s: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key's `id` claim (what revocation lists and this API name).
    pub id: String,
    /// Send as `x-api-key` (or `authorization: ApiKey <key_id>.<secret>`).
    pub key_id: String,
    /// Shown once; the server does not keep it.
    pub secret: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
}

/// Per-user limit on the API-key endpoints: `rate_limits.api_keys_per_user` per `window_s`.
async fn key_rate_limit(app: &App, user_id: &str) -> Result<(), ApiError> {
    let (n, ttl) = app.eph.incr(&format!("rl:keys:{user_id}"), app.cfg.rate_limits.window_s).await?;
    if n > app.cfg.rate_limits.api_keys_per_user {
        metrics::counter!("authgate_rate_limited_total", "scope" => "api_keys").increment(1);
        return Err(ApiError::too_many("rate_limited", "too many API-key requests: wait a little", ttl));
    }
    Ok(())
}

/// Keys of a user the feed may list: active, or revoked but not yet expired.
async fn count_keys(conn: &mut sqlx::AnyConnection, user_id: &str, t: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND status IN ('active', 'revoked') AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(user_id)
    .bind(t)
    .fetch_one(conn)
    .await
}

fn too_many_keys() -> ApiError {
    ApiError::conflict(
        "too_many_api_keys",
        "you have the most API keys allowed (active, or revoked and not yet expired): revoke or wait for one to expire",
    )
}

#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKeyRequest, security(("bearer" = [])),
    responses((status = 202, body = KeyRequested, description = "a code was emailed; nothing is usable yet"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "too_many_api_keys, too_many_pending_api_keys"), (status = 429, body = ErrorBody)))]
pub async fn create(State(app): State<AppState>, caller: Caller, Json(req): Json<CreateKeyRequest>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    let uid = actor.user.id.as_str();
    key_rate_limit(&app, uid).await?;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::bad_request("invalid_name", "name must have 1 to 100 characters"));
    }
    let max_lifetime = app.cfg.api_keys.max_lifetime_s;
    let lifetime_s = match req.expires_in {
        None => max_lifetime,
        Some(s) if (60..=max_lifetime).contains(&s) => s,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_expiry", "expires_in must be between 60 seconds and api_keys.max_lifetime_s"))
        }
    };
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    if roles.len() > 50 || !roles.iter().all(|r| valid_role(r)) {
        return Err(ApiError::bad_request("invalid_role", "roles are 1 to 64 visible ASCII characters without commas; at most 50"));
    }
    for r in &roles {
        actor.may_delegate(&app.cfg, r)?;
    }
    let request_id = crypto::new_id("akr");
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    // The user's row lock makes the caps exact under parallel requests (SQLite: the write lock).
    sqlx::query("UPDATE users SET org_id = org_id WHERE id = $1").bind(uid).execute(&mut *tx).await?;
    // The membership's, that a disable racing this request is ordered with it.
    if !crate::members::lock_active(&mut tx, uid, &actor.org).await? {
        return Err(crate::members::not_active(true));
    }
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_key_requests WHERE user_id = $1 AND expires_at > $2")
        .bind(uid)
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
    if pending >= app.cfg.api_keys.max_pending_per_user {
        return Err(ApiError::conflict(
            "too_many_pending_api_keys",
            "too many API-key requests wait for their code: verify or let them expire",
        ));
    }
    if count_keys(&mut tx, uid, t).await? >= app.cfg.api_keys.max_per_user {
        return Err(too_many_keys());
    }
    sqlx::query(
        "INSERT INTO api_key_requests (id, user_id, org_id, name, roles, lifetime_s, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&request_id)
    .bind(uid)
    .bind(&actor.org)
    .bind(req.name.trim())
    .bind(serde_json::to_string(&roles).expect("serializes"))
    .bind(lifetime_s)
    .bind(t)
    .bind(t + app.cfg.codes.ttl_s)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let code = NewCode { purpose: "api_key", account: &actor.user.email, subject: &request_id, data: None, mail: Some(KEY_MAIL) };
    let (vid, expires_in) = match codes::issue(&app, code).await {
        Ok(issued) => issued,
        Err(e) => {
            let _gate = db::write_gate().await;
            sqlx::query("DELETE FROM api_key_requests WHERE id = $1").bind(&request_id).execute(&app.db).await?;
            return Err(e);
        }
    };
    let body = KeyRequested { verification_id: vid, expires_in, name: req.name.trim().to_string(), roles, lifetime_s };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeyRequest {
    pub verification_id: String,
    pub code: String,
}

#[utoipa::path(post, path = "/v1/api-keys/verify", tag = "api-keys", request_body = VerifyKeyRequest, security(("bearer" = [])),
    responses((status = 201, body = CreatedKey, description = "the key, active; the secret is shown only here"), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn verify(State(app): State<AppState>, caller: Caller, Json(req): Json<VerifyKeyRequest>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    let uid = actor.user.id.as_str();
    key_rate_limit(&app, uid).await?;
    let invalid = || ApiError::bad_request("invalid_code", "the code is invalid or has expired");
    // Only the creator's attempt uses (or counts against) the code.
    let pending = codes::peek(&app, &req.verification_id, "api_key").await?.ok_or_else(invalid)?;
    // ... from a session of the organisation the key was asked for (the key is that one's).
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT name, roles, lifetime_s FROM api_key_requests WHERE id = $1 AND user_id = $2 AND org_id = $3")
            .bind(&pending.subject)
            .bind(uid)
            .bind(&actor.org)
            .fetch_optional(&app.db)
            .await?;
    let (name, roles, lifetime_s) = row.ok_or_else(invalid)?;
    let entry = codes::verify(&app, &req.verification_id, &req.code, "api_key", StatusCode::BAD_REQUEST).await?;
    let roles: Vec<String> = serde_json::from_str(&roles).map_err(|e| ApiError::internal(format!("key request roles: {e}")))?;
    // Roles as the database says now: a creator demoted since the request gets no key.
    for r in &roles {
        actor.may_delegate(&app.cfg, r)?;
    }
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let taken = sqlx::query("DELETE FROM api_key_requests WHERE id = $1 AND user_id = $2 AND expires_at > $3")
        .bind(&entry.subject)
        .bind(uid)
        .bind(t)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if taken == 0 {
        return Err(invalid());
    }
    // A disable of the membership committed since the actor was read is seen here.
    if !crate::members::lock_active(&mut tx, uid, &actor.org).await? {
        return Err(crate::members::not_active(true));
    }
    if count_keys(&mut tx, uid, t).await? >= app.cfg.api_keys.max_per_user {
        return Err(too_many_keys());
    }
    let (claims, key_id, secret) =
        mint_in_tx(&mut tx, &app, t, uid, Some(uid), Some(&actor.org), &name, roles, Some(t + lifetime_s)).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    tracing::info!(user_id = %uid, key = %claims.id, "API key created");
    crate::notify::send(&app, &actor.user.email, crate::notify::Notice::ApiKeyCreated { name: &name });
    let mut resp =
        (StatusCode::CREATED, axum::Json(CreatedKey { id: claims.id, key_id, secret, status: "active", expires_at: claims.exp }))
            .into_response();
    resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Mints an active key inside a transaction that holds the feed lock, `iat` = `t`, the
/// database's time read under that lock: a feed whose watermark reaches `iat` was built after
/// this commit, so gateways never take a key for "not revoked" before the feed could list it.
#[allow(clippy::too_many_arguments)]
async fn mint_in_tx(
    tx: &mut db::WriteTx,
    app: &App,
    t: i64,
    subject: &str,
    user_id: Option<&str>,
    org: Option<&str>,
    name: &str,
    roles: Vec<String>,
    exp: Option<i64>,
) -> Result<(ApiKeyClaims, String, String), ApiError> {
    let claims = ApiKeyClaims {
        v: API_KEY_VERSION,
        kid: app.hmac_current().to_string(),
        id: crypto::random_id128(),
        sub: subject.to_string(),
        org: org.map(str::to_string),
        roles,
        iat: t,
        exp,
    };
    let (key_id, secret) = app.hmac.mint(&claims).ok_or_else(|| ApiError::internal("HMAC key ring has no current key"))?;
    sqlx::query(
        "INSERT INTO api_keys (id, key_id, subject, user_id, org_id, name, roles, created_at, expires_at, status, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $8)",
    )
    .bind(&claims.id)
    .bind(&key_id)
    .bind(subject)
    .bind(user_id)
    .bind(org)
    .bind(name)
    .bind(serde_json::to_string(&claims.roles).expect("serializes"))
    .bind(t)
    .bind(claims.exp)
    .execute(&mut **tx)
    .await?;
    // A user's key is made by its user; a key without one by the operator's command line.
    Event::new(Action::ApiKeyCreated, org, user_id.map_or(Who::Operator, Who::User))
        .target("api_key", &claims.id)
        .data(serde_json::json!({ "name": name, "roles": claims.roles, "expires_at": claims.exp }))
        .write(tx)
        .await?;
    Ok((claims, key_id, secret))
}

/// Mints an active key outright (the operator's CLI: `gateway-config`'s service keys); there are
/// no pending keys. A key without a user and without an organisation belongs to the operator
/// organisation.
pub async fn insert_key(
    app: &App,
    subject: &str,
    user_id: Option<&str>,
    org: Option<&str>,
    name: &str,
    roles: Vec<String>,
    expires_in: Option<i64>,
) -> Result<(ApiKeyClaims, String, String), ApiError> {
    let org = match (user_id, org) {
        (None, None) => Some(app.cfg.platform.operator_org.as_str()),
        (_, org) => org,
    };
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let minted = mint_in_tx(&mut tx, app, t, subject, user_id, org, name, roles, expires_in.map(|s| t + s)).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(minted)
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub key_id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// `active` or `revoked` (expired keys say `active` with `expires_at` past).
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

/// Revokes a key inside a transaction that holds the feed lock (at database time `t`): it is
/// listed until it would have expired. Returns whether it was live.
pub async fn revoke_in_tx(conn: &mut sqlx::AnyConnection, t: i64, id: &str) -> Result<bool, sqlx::Error> {
    let exp: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE api_keys SET status = 'revoked', revoked_at = $1 WHERE id = $2 AND status <> 'revoked' RETURNING expires_at",
    )
    .bind(t)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(exp) = exp {
        revocations::insert(conn, "api_key", id, None, exp.unwrap_or(FAR_FUTURE)).await?;
    }
    Ok(exp.is_some())
}

/// Revokes a key (inside its own feed-locked transaction). Returns whether it was live.
pub async fn revoke_key(app: &App, id: &str, actor: Who<'_>) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let live = revoke_in_tx(&mut tx, t, id).await?;
    if live {
        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM api_keys WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        Event::new(Action::ApiKeyRevoked, org.as_deref(), actor).target("api_key", id).write(&mut tx).await?;
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(live)
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let uid = caller.user_id()?;
    let owner: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT user_id, org_id FROM api_keys WHERE id = $1").bind(&id).fetch_optional(&app.db).await?;
    let allowed = match &owner {
        Some((Some(owner), _)) if owner == uid => true,
        // An admin of the key's organisation (as the database says now).
        Some((_, Some(org))) => {
            let actor = Actor::load(&app, &caller).await?;
            actor.require_admin().is_ok() && actor.org == *org
        }
        _ => false,
    };
    if !allowed {
        return Err(ApiError::not_found("api_key_not_found", "no such API key"));
    }
    if revoke_key(&app, &id, Who::of(&caller)).await? {
        // The key's owner hears of it, whoever revoked it.
        let owner: Option<(String, String)> =
            sqlx::query_as("SELECT u.email, k.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1")
                .bind(&id)
                .fetch_optional(&app.db)
                .await?;
        if let Some((email, name)) = owner {
            crate::notify::send(&app, &email, crate::notify::Notice::ApiKeyRevoked { name: &name });
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
