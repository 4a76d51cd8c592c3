//! Organisations as the platform runs them: platform admins (and the operator's CLI) create,
//! list, suspend and reinstate them. A suspended organisation is listed in the revocation feed,
//! so every credential naming it — tokens, API keys, its clients' tokens — is refused at the
//! gateways and here, whenever it was issued; its people cannot sign in or refresh. Reinstating
//! takes the entry out: what was not revoked on its own works again.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::authority::Actor;
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations::{self, FAR_FUTURE};

#[derive(Serialize, ToSchema)]
pub struct OrgInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// When it was suspended; absent while active.
    pub suspended_at: Option<i64>,
    pub members: i64,
}

/// 403 `org_suspended`: what sign-in, refresh and the token endpoint answer for a suspended
/// organisation's people and clients (the gateways' code for their credentials).
pub fn suspended() -> ApiError {
    ApiError::forbidden("org_suspended", "the organisation is suspended")
}

/// Does the organisation exist?
pub async fn exists<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, org: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1").bind(org).fetch_optional(db).await?;
    Ok(found.is_some())
}

/// Refuses when `org` is suspended (by the revocation snapshot every replica holds).
pub async fn ensure_active(app: &App, org: &str) -> Result<(), ApiError> {
    if app.revs.current().await?.list.org_suspended(org) {
        return Err(suspended());
    }
    Ok(())
}

async fn platform_admin(app: &App, caller: &Caller) -> Result<Actor, ApiError> {
    let actor = Actor::load(app, caller).await?;
    if !actor.is_platform_admin() {
        return Err(ApiError::forbidden("insufficient_role", "organisations are managed by platform admins"));
    }
    Ok(actor)
}

/// Creates an organisation; returns its id.
pub async fn create_org(app: &App, name: &str, actor: Who<'_>) -> Result<OrgInfo, ApiError> {
    if !crate::users::valid_name(name) {
        return Err(ApiError::bad_request("invalid_org_name", "name: 1 to 100 characters, no control characters"));
    }
    let id = crypto::new_id("org");
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)").bind(&id).bind(name).bind(t).execute(&mut *tx).await?;
    Event::new(Action::OrgCreated, Some(&id), actor).target("org", &id).write(&mut tx).await?;
    tx.commit().await?;
    Ok(OrgInfo { id, name: name.to_string(), created_at: t, suspended_at: None, members: 0 })
}

/// Suspends `org`: listed in the feed until reinstated. 404 unknown, 409 already suspended or
/// the operator organisation (which holds the platform's own credentials, the gateways' feed
/// key among them).
pub async fn suspend_org(app: &App, org: &str, actor: Who<'_>) -> Result<(), ApiError> {
    if org == app.cfg.platform.operator_org {
        return Err(ApiError::conflict("cannot_suspend_operator", "the operator organisation cannot be suspended"));
    }
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let state: Option<Option<i64>> =
        sqlx::query_scalar("SELECT suspended_at FROM orgs WHERE id = $1").bind(org).fetch_optional(&mut *tx).await?;
    match state {
        None => return Err(org_not_found()),
        Some(Some(_)) => return Err(ApiError::conflict("org_suspended", "the organisation is already suspended")),
        Some(None) => {}
    }
    sqlx::query("UPDATE orgs SET suspended_at = $1 WHERE id = $2").bind(t).bind(org).execute(&mut *tx).await?;
    revocations::insert(&mut tx, "org", org, None, FAR_FUTURE).await?;
    Event::new(Action::OrgSuspended, Some(org), actor).target("org", org).write(&mut tx).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(())
}

/// Reinstates a suspended `org`. 404 unknown, 409 not suspended.
pub async fn reinstate_org(app: &App, org: &str, actor: Who<'_>) -> Result<(), ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    db::feed_lock(&mut tx, true).await?;
    let state: Option<Option<i64>> =
        sqlx::query_scalar("SELECT suspended_at FROM orgs WHERE id = $1").bind(org).fetch_optional(&mut *tx).await?;
    match state {
        None => return Err(org_not_found()),
        Some(None) => return Err(ApiError::conflict("org_not_suspended", "the organisation is not suspended")),
        Some(Some(_)) => {}
    }
    sqlx::query("UPDATE orgs SET suspended_at = NULL WHERE id = $1").bind(org).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM revocations WHERE kind = 'org' AND id = $1").bind(org).execute(&mut *tx).await?;
    Event::new(Action::OrgReinstated, Some(org), actor).target("org", org).write(&mut tx).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(())
}

fn org_not_found() -> ApiError {
    ApiError::not_found("org_not_found", "no such organisation")
}

/// Every organisation, oldest first, from after `after` (an id), up to `limit`.
pub async fn list_orgs(app: &App, after: Option<&str>, limit: i64) -> Result<Vec<OrgInfo>, ApiError> {
    type Row = (String, String, i64, Option<i64>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.id, o.name, o.created_at, o.suspended_at, (SELECT COUNT(*) FROM memberships m WHERE m.org_id = o.id) \
         FROM orgs o WHERE o.id > $1 ORDER BY o.id LIMIT $2",
    )
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&app.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at, suspended_at, members)| OrgInfo { id, name, created_at, suspended_at, members })
        .collect())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrgsQuery {
    /// 1 to 500 (default 100).
    pub limit: Option<i64>,
    /// Organisations with ids after this one (the last id of the previous page).
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/orgs", tag = "platform", security(("bearer" = [])), params(OrgsQuery),
    responses((status = 200, body = Vec<OrgInfo>, description = "ordered by id; the next page starts after the last id"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller, Query(q): Query<OrgsQuery>) -> ApiResult<axum::Json<Vec<OrgInfo>>> {
    platform_admin(&app, &caller).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit: 1 to 500"));
    }
    if q.after.as_deref().is_some_and(|a| a.len() > 100) {
        return Err(ApiError::bad_request("invalid_cursor", "after: an organisation id"));
    }
    Ok(axum::Json(list_orgs(&app, q.after.as_deref(), limit).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
}

#[utoipa::path(post, path = "/v1/orgs", tag = "platform", request_body = CreateOrg, security(("bearer" = [])),
    responses((status = 201, body = OrgInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateOrg>,
) -> ApiResult<(StatusCode, axum::Json<OrgInfo>)> {
    let actor = platform_admin(&app, &caller).await?;
    Ok((StatusCode::CREATED, axum::Json(create_org(&app, req.name.trim(), Who::User(&actor.user.id)).await?)))
}

#[utoipa::path(post, path = "/v1/orgs/{id}/suspend", tag = "platform", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "suspended: every credential of the organisation is refused (feed entry `org`)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "org_suspended (already), cannot_suspend_operator")))]
pub async fn suspend(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = platform_admin(&app, &caller).await?;
    suspend_org(&app, &id, Who::User(&actor.user.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/orgs/{id}/reinstate", tag = "platform", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "active again: credentials not revoked on their own work again"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "org_not_suspended")))]
pub async fn reinstate(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = platform_admin(&app, &caller).await?;
    reinstate_org(&app, &id, Who::User(&actor.user.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
