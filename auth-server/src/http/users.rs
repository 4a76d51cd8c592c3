//! An organisation's administration: its users, their roles, disabling them, the organisation
//! itself. Authority is read from the database (`authority::Actor`), never from the token; roles
//! are granted as docs/authority.md says (tenant admins: tenant roles in their organisation;
//! platform admins: platform roles in the operator organisation).

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::authority::{self, Actor};
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::members;
use crate::revocations;
use crate::users::{self, valid_role};

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub roles: Vec<String>,
    pub mfa: String,
    pub created_at: i64,
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<i64>,
    /// The `cursor` of the previous page's `link: <…>; rel="next"`.
    pub cursor: Option<String>,
    /// Only addresses starting with this (case-insensitive; an address is stored in lower case).
    pub email: Option<String>,
    /// Only `active`, `disabled` or `pending` accounts.
    pub status: Option<String>,
}

/// The position after a user in the listing order (newest first): opaque to clients.
pub fn cursor_after(created_at: i64, id: &str) -> String {
    auth_core::b64::encode(format!("{created_at}:{id}").as_bytes())
}

fn parse_cursor(raw: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(auth_core::b64::decode(raw.as_bytes())?).ok()?;
    let (t, id) = text.split_once(':')?;
    Some((t.parse().ok()?, id.to_string())).filter(|(_, id)| id.len() <= 100)
}

#[utoipa::path(get, path = "/v1/users", tag = "admin", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<UserSummary>, description = "newest first; `link: <…>; rel=\"next\"` when there is more",
                headers(("link" = String, description = "RFC 8288 link to the next page"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit: 1 to 500"));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor: not one this server gave"))?),
    };
    if q.status.as_deref().is_some_and(|s| !["active", "disabled", "pending"].contains(&s)) {
        return Err(ApiError::bad_request("invalid_status", "status: active, disabled or pending"));
    }
    let prefix = q.email.as_deref().map(|e| e.trim().to_lowercase()).unwrap_or_default();
    if prefix.len() > 320 {
        return Err(ApiError::bad_request("invalid_email", "email: at most 320 characters"));
    }
    // LIKE with its wildcards escaped: the filter is a prefix, never a pattern.
    let like = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let (t, id) = after.unwrap_or((i64::MAX, String::new()));
    type Row = (String, String, String, String, i64, Option<String>);
    // A member's status here: `disabled` when this organisation disabled the membership.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT u.id, u.email, CASE WHEN m.disabled_at IS NULL THEN u.status ELSE 'disabled' END, u.mfa, u.created_at, u.name \
         FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email LIKE $2 ESCAPE '\\' \
         AND ($3 = '' OR (CASE WHEN m.disabled_at IS NULL THEN u.status ELSE 'disabled' END) = $3) \
         AND (u.created_at < $4 OR (u.created_at = $4 AND u.id < $5)) \
         ORDER BY u.created_at DESC, u.id DESC LIMIT $6",
    )
    .bind(&actor.org)
    .bind(&like)
    .bind(q.status.as_deref().unwrap_or(""))
    .bind(t)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&app.db)
    .await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<Row> = rows.into_iter().take(limit as usize).collect();
    // The page's roles in one query.
    let mut roles: std::collections::HashMap<String, Vec<String>> = Default::default();
    if !page.is_empty() {
        let marks: Vec<String> = (2..=page.len() + 1).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT user_id, role FROM member_roles WHERE org_id = $1 AND user_id IN ({}) ORDER BY role", marks.join(", "));
        let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(&actor.org);
        for (id, ..) in &page {
            query = query.bind(id);
        }
        for (uid, role) in query.fetch_all(&app.db).await? {
            roles.entry(uid).or_default().push(role);
        }
    }
    let next = page.last().filter(|_| more).map(|(id, _, _, _, created_at, _)| cursor_after(*created_at, id));
    let out: Vec<UserSummary> = page
        .into_iter()
        .map(|(id, email, status, mfa, created_at, name)| UserSummary {
            roles: roles.remove(&id).unwrap_or_default(),
            id,
            email,
            name,
            status,
            mfa,
            created_at,
        })
        .collect();
    let mut resp = axum::Json(out).into_response();
    if let Some(c) = next {
        let mut query = vec![("limit", limit.to_string()), ("cursor", c)];
        if !prefix.is_empty() {
            query.push(("email", prefix));
        }
        if let Some(st) = q.status {
            query.push(("status", st));
        }
        let link =
            format!("<{}/v1/users?{}>; rel=\"next\"", app.cfg.public_path(), serde_urlencoded::to_string(&query).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

#[utoipa::path(patch, path = "/v1/users/{id}", tag = "admin", request_body = super::me::ProfileUpdate, security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "the member's profile updated"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<super::me::ProfileUpdate>,
) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let member = member_of(&app, &id, &actor.org).await?.ok_or_else(not_a_member)?;
    // A profile is the person's: an organisation's admins edit it only for accounts that
    // belong to their organisation alone (never what another organisation sees of its member).
    if member.memberships > 1 {
        return Err(ApiError::forbidden(
            "shared_account",
            "this person also belongs to other organisations: only they can change their profile",
        ));
    }
    super::me::set_name(&app, &member.user, &actor.org, req.name.as_deref(), Who::User(&actor.user.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn not_a_member() -> ApiError {
    ApiError::not_found("user_not_found", "no such user in your organisation")
}

/// A member of an organisation (disabled there or not), with how many organisations they belong to.
pub struct Member {
    pub user: users::User,
    pub memberships: i64,
}

/// The account `id` if it belongs to `org`.
pub async fn member_of(app: &App, id: &str, org: &str) -> Result<Option<Member>, ApiError> {
    if !members::belongs(&app.db, id, org).await? {
        return Ok(None);
    }
    let Some(user) = users::by_id(&app.db, id).await? else { return Ok(None) };
    let memberships = members::count(&app.db, id).await?;
    Ok(Some(Member { user, memberships }))
}

/// Does the account hold a platform role in `org` (only the operator organisation has them)?
/// Only platform authority may stop such an account there, or erase it.
pub async fn holds_platform_role(app: &App, id: &str, org: &str) -> Result<bool, ApiError> {
    if org != app.cfg.platform.operator_org {
        return Ok(false);
    }
    Ok(members::roles(&app.db, id, org).await?.iter().any(|r| authority::is_platform_role(r)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    pub roles: Vec<String>,
}

#[utoipa::path(put, path = "/v1/users/{id}/roles", tag = "admin", request_body = RolesRequest, security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "roles replaced; they reach tokens at the next refresh, and API keys carrying a removed role are revoked"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_roles(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<RolesRequest>,
) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    if req.roles.len() > 50 || !req.roles.iter().all(|r| valid_role(r)) {
        return Err(ApiError::bad_request("invalid_role", "roles are 1 to 64 visible ASCII characters without commas; at most 50"));
    }
    let cfg = &app.cfg;
    let roles: BTreeSet<String> = req.roles.iter().cloned().collect();
    // Checked against the roles the user holds when the change is made (under the feed lock):
    // every role added must be grantable, every role removed revocable, by this actor.
    let check = |old: &BTreeSet<String>| -> Result<(), ApiError> {
        for r in roles.difference(old) {
            actor.may_grant(cfg, r)?;
        }
        for r in old.difference(&roles) {
            actor.may_revoke(cfg, r)?;
            if id == actor.user.id && (r == authority::TENANT_ADMIN || r == authority::PLATFORM_ADMIN) {
                return Err(ApiError::conflict("cannot_demote_self", "an admin cannot remove their own admin role"));
            }
        }
        Ok(())
    };
    if !replace_roles(&app, &id, &actor.org, &roles, check, Who::User(&actor.user.id)).await? {
        return Err(not_a_member());
    }
    tracing::info!(admin = %actor.user.id, user_id = %id, "roles changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a member's roles in `org` after `check` approved the change from the roles they
/// hold there now; their API keys for `org` carrying a removed role are revoked in the same
/// transaction (a credential never carries more than its creator holds). `false`: not a member.
pub async fn replace_roles(
    app: &App,
    user_id: &str,
    org: &str,
    roles: &BTreeSet<String>,
    check: impl FnOnce(&BTreeSet<String>) -> Result<(), ApiError>,
    actor: Who<'_>,
) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, false).await?;
    // The membership row's lock orders two role changes of one member.
    if !members::lock(&mut tx, user_id, org).await? {
        return Ok(false);
    }
    let old: BTreeSet<String> = members::roles(&mut *tx, user_id, org).await?.into_iter().collect();
    check(&old)?;
    sqlx::query("DELETE FROM member_roles WHERE user_id = $1 AND org_id = $2").bind(user_id).bind(org).execute(&mut *tx).await?;
    for r in roles {
        sqlx::query("INSERT INTO member_roles (user_id, org_id, role) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(org)
            .bind(r)
            .execute(&mut *tx)
            .await?;
    }
    let removed: Vec<&String> = old.difference(roles).collect();
    let mut revoked = 0;
    if !removed.is_empty() {
        let keys: Vec<(String, String)> =
            sqlx::query_as("SELECT id, roles FROM api_keys WHERE user_id = $1 AND org_id = $2 AND status <> 'revoked'")
                .bind(user_id)
                .bind(org)
                .fetch_all(&mut *tx)
                .await?;
        for (key, key_roles) in keys {
            let key_roles: Vec<String> = serde_json::from_str(&key_roles).unwrap_or_default();
            if key_roles.iter().any(|r| removed.contains(&r)) {
                super::apikeys::revoke_in_tx(&mut tx, t, &key).await?;
                revoked += 1;
            }
        }
        if revoked > 0 {
            db::bump_feed(&mut tx).await?;
        }
    }
    if &old != roles {
        let added: Vec<&String> = roles.difference(&old).collect();
        Event::new(Action::UserRolesChanged, Some(org), actor)
            .target("user", user_id)
            .data(serde_json::json!({ "added": added, "removed": removed, "api_keys_revoked": revoked }))
            .write(&mut tx)
            .await?;
    }
    tx.commit().await?;
    if revoked > 0 {
        app.revs.refresh(false).await?;
        tracing::info!(user_id = %user_id, api_keys_revoked = revoked, "API keys carrying a removed role revoked");
    }
    Ok(true)
}

#[utoipa::path(post, path = "/v1/users/{id}/disable", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "disabled in your organisation: every session and API key the member holds there revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "cannot_disable_self")))]
pub async fn disable(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    if id == actor.user.id {
        return Err(ApiError::conflict("cannot_disable_self", "an admin cannot disable their own account"));
    }
    // Whoever holds platform authority is stopped only by platform authority.
    if holds_platform_role(&app, &id, &actor.org).await? && !actor.is_platform_admin() {
        return Err(ApiError::forbidden("insufficient_role", "disabling a holder of a platform role needs platform_admin"));
    }
    if !disable_member(&app, &id, &actor.org, Who::User(&actor.user.id)).await? {
        return Err(not_a_member());
    }
    tracing::info!(admin = %actor.user.id, user_id = %id, org = %actor.org, "member disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/users/{id}/enable", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "active again: it can sign in; what was revoked while disabled stays revoked"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    // As for disabling: a holder of platform authority is restored only by platform authority.
    if holds_platform_role(&app, &id, &actor.org).await? && !actor.is_platform_admin() {
        return Err(ApiError::forbidden("insufficient_role", "enabling a holder of a platform role needs platform_admin"));
    }
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let n = sqlx::query("UPDATE memberships SET disabled_at = NULL WHERE user_id = $1 AND org_id = $2 AND disabled_at IS NOT NULL")
        .bind(&id)
        .bind(&actor.org)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("user_not_found", "no disabled user with this id in your organisation"));
    }
    // Accounts disabled before memberships (schema 0012) carry a subject cut-off reaching
    // `max_clock_skew_s` past the disable, which would refuse sign-ins in those seconds: it is
    // brought back to the later of the disable itself and the second before now.
    let skew = app.cfg.tokens.max_clock_skew_s;
    let cutoff: Option<i64> = sqlx::query_scalar("SELECT iat_before FROM revocations WHERE kind = 'sub' AND id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    if let Some(c) = cutoff {
        let lowered = (t - 1).max(c - skew);
        sqlx::query("UPDATE revocations SET iat_before = $1 WHERE kind = 'sub' AND id = $2")
            .bind(lowered.min(c))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    Event::new(Action::UserEnabled, Some(&actor.org), Who::User(&actor.user.id)).target("user", &id).write(&mut tx).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    tracing::info!(admin = %actor.user.id, user_id = %id, org = %actor.org, "member enabled");
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a member of `org`: no sign-in there, every session there revoked (listed by `sid`
/// in the feed) and every API key made for `org` revoked. The person's other organisations are
/// untouched. `false`: not a member of `org`.
pub async fn disable_member(app: &App, id: &str, org: &str, actor: Who<'_>) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    // Updated even when already disabled: the row lock orders this against a sign-in in flight.
    let n = sqlx::query("UPDATE memberships SET disabled_at = COALESCE(disabled_at, $1) WHERE user_id = $2 AND org_id = $3")
        .bind(t)
        .bind(id)
        .bind(org)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let (sessions, keys) = members::stop_credentials(&mut tx, &app.cfg, t, id, org, "user_disabled").await?;
    Event::new(Action::UserDisabled, Some(org), actor)
        .target("user", id)
        .data(serde_json::json!({ "sessions_revoked": sessions, "api_keys_revoked": keys }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(true)
}

#[utoipa::path(delete, path = "/v1/users/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "removed from your organisation (its sessions and API keys there revoked); an account that belonged to your organisation alone is erased: personal data deleted, every session, API key and token revoked (feed updated)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    if id == actor.user.id {
        return Err(ApiError::conflict("cannot_delete_self", "delete your own account with DELETE /v1/me"));
    }
    if holds_platform_role(&app, &id, &actor.org).await? && !actor.is_platform_admin() {
        return Err(ApiError::forbidden("insufficient_role", "deleting a holder of a platform role needs platform_admin"));
    }
    let org_name: String = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1").bind(&actor.org).fetch_one(&app.db).await?;
    match remove_member(&app, &id, &actor.org, Who::User(&actor.user.id)).await? {
        Some(Removal::Erased(email)) => {
            tracing::info!(admin = %actor.user.id, user_id = %id, "user erased");
            app.mailer.send(
                &email,
                "Your account was deleted",
                "An administrator of your organisation deleted your {product} account and its data.\n".into(),
            );
            Ok(StatusCode::NO_CONTENT)
        }
        Some(Removal::Left(email)) => {
            tracing::info!(admin = %actor.user.id, user_id = %id, org = %actor.org, "member removed");
            app.mailer.send(
                &email,
                "You were removed from an organisation",
                format!("An administrator of {org_name} removed you from that organisation. Your {{product}} account and your other organisations are unchanged.\n"),
            );
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(not_a_member()),
    }
}

/// What removing a member did.
pub enum Removal {
    /// The account belonged to that organisation alone: erased. Holds the address it had.
    Erased(String),
    /// The account belongs to other organisations too: it left this one. Holds its address.
    Left(String),
}

/// Removes a member from `org`, decided under the feed lock: an account that belongs to other
/// organisations too only leaves `org` (its sessions and keys there revoked, the membership
/// and its roles deleted); one that belonged to `org` alone is erased ([`erase_in_tx`]). An
/// organisation's authority never reaches what another organisation's member keeps.
pub async fn remove_member(app: &App, id: &str, org: &str, actor: Who<'_>) -> Result<Option<Removal>, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let email: Option<String> =
        sqlx::query_scalar("SELECT u.email FROM users u JOIN memberships m ON m.user_id = u.id WHERE u.id = $1 AND m.org_id = $2")
            .bind(id)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(email) = email else { return Ok(None) };
    let removal = if members::count(&mut *tx, id).await? > 1 {
        members::remove(&mut tx, &app.cfg, t, id, org).await?;
        Event::new(Action::MemberRemoved, Some(org), actor).target("user", id).write(&mut tx).await?;
        Removal::Left(email)
    } else {
        erase_in_tx(&mut tx, &app.cfg, t, id, &email).await?;
        Event::new(Action::UserDeleted, Some(org), actor).target("user", id).write(&mut tx).await?;
        Removal::Erased(email)
    };
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(Some(removal))
}

/// Erases an account, whatever organisations it belongs to (the person's own request): the
/// event goes to `org`, the organisation of the session that asked. `None`: no such account.
pub async fn erase_account(app: &App, id: &str, org: &str, actor: Who<'_>) -> Result<Option<String>, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let Some(email) = email else { return Ok(None) };
    erase_in_tx(&mut tx, &app.cfg, t, id, &email).await?;
    // The event keeps the id only: the address is gone with the account.
    Event::new(Action::UserDeleted, Some(org), actor).target("user", id).write(&mut tx).await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(Some(email))
}

/// Inside a feed-locked transaction: every token of the account cut off (a subject entry),
/// every API key revoked (listed until it expires), then the account and everything personal
/// about it deleted — sessions and their refresh tokens, memberships and roles, passkeys,
/// consents, codes, key requests, known devices, invitations to its address. The address is
/// free again; a new account there is a new subject.
async fn erase_in_tx(
    conn: &mut sqlx::AnyConnection,
    cfg: &crate::config::Config,
    t: i64,
    id: &str,
    email: &str,
) -> Result<(), sqlx::Error> {
    let cutoff = revocations::subject_cutoff(cfg, t);
    revocations::insert(conn, "sub", id, Some(cutoff), cutoff + cfg.tokens.access_ttl_s).await?;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE user_id = $1 AND status <> 'revoked'").bind(id).fetch_all(&mut *conn).await?;
    for key in keys {
        super::apikeys::revoke_in_tx(conn, t, &key).await?;
    }
    for sql in [
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
        "DELETE FROM spent_refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
        "DELETE FROM oauth_codes WHERE user_id = $1",
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM member_roles WHERE user_id = $1",
        "DELETE FROM memberships WHERE user_id = $1",
        "DELETE FROM passkeys WHERE user_id = $1",
        "DELETE FROM oauth_consents WHERE user_id = $1",
        "DELETE FROM api_key_requests WHERE user_id = $1",
        "DELETE FROM api_keys WHERE user_id = $1",
        "DELETE FROM known_devices WHERE user_id = $1",
        "DELETE FROM federated_identities WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    sqlx::query("DELETE FROM invitations WHERE email = $1 OR user_id = $2").bind(email).bind(id).execute(&mut *conn).await?;
    Ok(())
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
