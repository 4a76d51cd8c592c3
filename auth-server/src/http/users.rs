//! An organisation's administration: its users, their roles, disabling them, the organisation
//! itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::AppState;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations;
use crate::users::{self, valid_role};

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub status: String,
    pub roles: Vec<String>,
    pub mfa: String,
    pub created_at: i64,
}

#[utoipa::path(get, path = "/v1/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserSummary>), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<UserSummary>>> {
    let (_, org) = caller.admin()?;
    let rows: Vec<(String, String, String, String, i64)> =
        sqlx::query_as("SELECT id, email, status, mfa, created_at FROM users WHERE org_id = $1 ORDER BY created_at, id").bind(org).fetch_all(&app.db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, email, status, mfa, created_at) in rows {
        let roles = users::roles(&app.db, &id).await?;
        out.push(UserSummary { id, email, status, roles, mfa, created_at });
    }
    Ok(axum::Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    pub roles: Vec<String>,
}

#[utoipa::path(put, path = "/v1/users/{id}/roles", tag = "admin", request_body = RolesRequest, security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "roles replaced; they reach tokens at the next refresh"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_roles(State(app): State<AppState>, caller: Caller, Path(id): Path<String>, Json(req): Json<RolesRequest>) -> ApiResult<StatusCode> {
    let (admin_id, org) = caller.admin()?;
    if req.roles.len() > 50 || !req.roles.iter().all(|r| valid_role(r)) {
        return Err(ApiError::bad_request("invalid_role", "roles are 1 to 64 visible ASCII characters without commas; at most 50"));
    }
    if id == admin_id && !req.roles.iter().any(|r| r == "admin") {
        return Err(ApiError::conflict("cannot_demote_self", "an admin cannot remove their own admin role"));
    }
    let mut tx = crate::db::begin_write(&app.db).await?;
    let n = sqlx::query("UPDATE users SET org_id = org_id WHERE id = $1 AND org_id = $2").bind(&id).bind(org).execute(&mut *tx).await?.rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("user_not_found", "no such user in your organisation"));
    }
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    for r in roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)").bind(&id).bind(r).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(admin = %admin_id, user_id = %id, "roles changed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/users/{id}/disable", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "disabled; every session, API key and token of the user revoked"), (status = 404, body = ErrorBody)))]
pub async fn disable(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let (admin_id, org) = caller.admin()?;
    if id == admin_id {
        return Err(ApiError::conflict("cannot_disable_self", "an admin cannot disable their own account"));
    }
    let t = now();
    let ttl = app.cfg.tokens.access_ttl_s;
    let mut tx = crate::db::begin_write(&app.db).await?;
    db::feed_lock(&mut tx, true).await?;
    let n = sqlx::query("UPDATE users SET status = 'disabled' WHERE id = $1 AND org_id = $2").bind(&id).bind(org).execute(&mut *tx).await?.rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("user_not_found", "no such user in your organisation"));
    }
    // Tokens: one subject entry (every token issued until now), living as long as they do.
    revocations::insert(&mut tx, "sub", &id, Some(t), t + ttl).await?;
    sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = 'user_disabled' WHERE user_id = $2 AND revoked_at IS NULL").bind(t).bind(&id).execute(&mut *tx).await?;
    // API keys may live longer than any token: each is listed until it expires.
    let keys: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, expires_at FROM api_keys WHERE user_id = $1 AND status <> 'revoked'").bind(&id).fetch_all(&mut *tx).await?;
    for (kid, exp) in keys {
        sqlx::query("UPDATE api_keys SET status = 'revoked', revoked_at = $1 WHERE id = $2").bind(t).bind(&kid).execute(&mut *tx).await?;
        revocations::insert(&mut tx, "api_key", &kid, None, exp.unwrap_or(revocations::FAR_FUTURE)).await?;
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    tracing::info!(admin = %admin_id, user_id = %id, "user disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct OrgResponse {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[utoipa::path(get, path = "/v1/orgs/current", tag = "users", security(("bearer" = [])), responses((status = 200, body = OrgResponse)))]
pub async fn current_org(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<OrgResponse>> {
    let org = caller.org.clone().ok_or_else(|| ApiError::not_found("org_not_found", "the credential names no organisation"))?;
    let (id, name, created_at): (String, String, i64) = sqlx::query_as("SELECT id, name, created_at FROM orgs WHERE id = $1")
        .bind(&org)
        .fetch_optional(&app.db)
        .await?
        .ok_or_else(|| ApiError::not_found("org_not_found", "no such organisation"))?;
    Ok(axum::Json(OrgResponse { id, name, created_at }))
}
