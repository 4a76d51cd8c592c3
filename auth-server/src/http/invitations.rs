//! Invitations: an organisation's admin invites an address with roles they may grant; the
//! emailed link (a 256-bit single-use token, stored hashed) lets its holder choose a password
//! and join the organisation with those roles — checked again when accepted, so authority
//! lost in between is not exercised by an old invitation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::authority::{self, Actor, RoleKind};
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::users::normalize_email;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub email: String,
    /// Roles the inviter may grant ([authority](../docs/authority.md)); none by default.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// `pending`, `accepted`, `cancelled` or `expired`.
    pub status: String,
}

#[utoipa::path(post, path = "/v1/invitations", tag = "admin", request_body = InviteRequest, security(("bearer" = [])),
    responses((status = 202, body = Invitation, description = "invited: the link is emailed, whether or not the address has an account"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn invite(State(app): State<AppState>, caller: Caller, Json(req): Json<InviteRequest>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    if req.roles.len() > 20 {
        return Err(ApiError::bad_request("invalid_role", "at most 20 roles"));
    }
    for r in &req.roles {
        actor.may_grant(&app.cfg, r)?;
    }
    // The emails an admin can make us send are counted per address, as every code.
    crate::codes::count_issued(&app, &email).await?;
    let token = crypto::new_secret("inv_");
    let id = crypto::new_id("inv");
    let t = now();
    let expires_at = t + app.cfg.signup.invitation_ttl_s;
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query(
        "INSERT INTO invitations (id, token_hash, org_id, email, roles, invited_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(crypto::sha256_hex(token.as_bytes()))
    .bind(&actor.org)
    .bind(&email)
    .bind(serde_json::to_string(&req.roles).expect("serializes"))
    .bind(&actor.user.id)
    .bind(t)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    Event::new(Action::InvitationCreated, Some(&actor.org), Who::User(&actor.user.id))
        .target("invitation", &id)
        .data(serde_json::json!({ "roles": req.roles, "expires_at": expires_at }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    let org_name: String = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1").bind(&actor.org).fetch_one(&app.db).await?;
    let body = format!(
        "{} invites you to {org_name} on {{product}}.\n\nTo join, open {}/invite?token={token}\nand choose a password. The link works once, within {} days.\n\nIf you did not expect this, ignore this email.",
        actor.user.email,
        app.cfg.public_url,
        app.cfg.signup.invitation_ttl_s / 86400
    );
    app.mailer.send(&email, &format!("You are invited to {org_name}"), body);
    tracing::info!(admin = %actor.user.id, invitation = %id, "invitation sent");
    let out = Invitation { id, email, roles: req.roles, invited_by: actor.user.id, created_at: t, expires_at, status: "pending".into() };
    Ok((StatusCode::ACCEPTED, axum::Json(out)).into_response())
}

#[utoipa::path(get, path = "/v1/invitations", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Invitation>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<Invitation>>> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    type Row = (String, String, String, String, i64, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, email, roles, invited_by, created_at, expires_at, accepted_at, cancelled_at FROM invitations \
         WHERE org_id = $1 ORDER BY created_at DESC, id LIMIT 200",
    )
    .bind(&actor.org)
    .fetch_all(&app.db)
    .await?;
    let t = now();
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, email, roles, invited_by, created_at, expires_at, accepted, cancelled)| Invitation {
                status: match (accepted, cancelled) {
                    (Some(_), _) => "accepted",
                    (_, Some(_)) => "cancelled",
                    _ if expires_at <= t => "expired",
                    _ => "pending",
                }
                .into(),
                id,
                email,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
                invited_by,
                created_at,
                expires_at,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/invitations/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "cancelled: its link no longer works"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn cancel(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let mut tx = db::begin_write(&app.db).await?;
    let n = sqlx::query(
        "UPDATE invitations SET cancelled_at = $1 WHERE id = $2 AND org_id = $3 AND accepted_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(now())
    .bind(&id)
    .bind(&actor.org)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("invitation_not_found", "no pending invitation with this id in your organisation"));
    }
    Event::new(Action::InvitationCancelled, Some(&actor.org), Who::User(&actor.user.id)).target("invitation", &id).write(&mut tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a pending invitation shows its holder (the invite page).
#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    pub email: String,
    pub org_name: String,
    pub expires_at: i64,
    /// The address has an account already: its owner signs in and joins
    /// (`POST /v1/invitations/join`) instead of choosing a password. Told only to the link's
    /// holder, who reads the address's mail.
    pub existing_account: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub token: String,
}

fn invalid_invitation() -> ApiError {
    ApiError::bad_request("invalid_invitation", "the invitation is invalid, used, cancelled or expired")
}

struct Pending {
    id: String,
    org_id: String,
    email: String,
    roles: Vec<String>,
    invited_by: String,
    expires_at: i64,
}

async fn pending(app: &App, token: &str) -> Result<Pending, ApiError> {
    if !token.starts_with("inv_") || token.len() > 100 {
        return Err(invalid_invitation());
    }
    type Row = (String, String, String, String, String, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, org_id, email, roles, invited_by, expires_at FROM invitations \
         WHERE token_hash = $1 AND accepted_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(crypto::sha256_hex(token.as_bytes()))
    .fetch_optional(&app.db)
    .await?;
    match row {
        Some((id, org_id, email, roles, invited_by, expires_at)) if expires_at > now() => {
            Ok(Pending { id, org_id, email, roles: serde_json::from_str(&roles).unwrap_or_default(), invited_by, expires_at })
        }
        _ => Err(invalid_invitation()),
    }
}

#[utoipa::path(post, path = "/v1/invitations/lookup", tag = "users", request_body = TokenRequest,
    responses((status = 200, body = InvitationView), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn lookup(State(app): State<AppState>, Json(req): Json<TokenRequest>) -> ApiResult<axum::Json<InvitationView>> {
    let p = pending(&app, &req.token).await?;
    let org_name: String = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1").bind(&p.org_id).fetch_one(&app.db).await?;
    let existing_account = crate::users::by_email(&app.db, &p.email).await?.is_some();
    Ok(axum::Json(InvitationView { email: p.email, org_name, expires_at: p.expires_at, existing_account }))
}

/// The invited roles as the inviter may grant them now: an inviter who lost the admin role (or
/// left, or was disabled there) grants nothing; a role no longer in the tenant list is dropped.
async fn granted_roles(app: &App, p: &Pending) -> Result<Vec<String>, ApiError> {
    let inviter_roles = if crate::members::is_active(&app.db, &p.invited_by, &p.org_id).await? {
        crate::members::roles(&app.db, &p.invited_by, &p.org_id).await?
    } else {
        Vec::new()
    };
    let holds = |r: &str| inviter_roles.iter().any(|x| x == r);
    Ok(p.roles
        .iter()
        .filter(|r| match authority::kind(&app.cfg, r) {
            RoleKind::Tenant => holds(authority::TENANT_ADMIN),
            RoleKind::Platform => p.org_id == app.cfg.platform.operator_org && holds(authority::PLATFORM_ADMIN),
            RoleKind::Unknown => false,
        })
        .cloned()
        .collect())
}

/// Marks an invitation accepted; only the request that marks it goes on (single use).
async fn mark_accepted(conn: &mut sqlx::AnyConnection, id: &str, t: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL AND cancelled_at IS NULL")
        .bind(t)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

#[utoipa::path(post, path = "/v1/invitations/join", tag = "users", request_body = TokenRequest, security(("bearer" = [])),
    responses((status = 201, body = Accepted, description = "the signed-in account joined the organisation: sign in to it (login's `org`)"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "invitation_not_yours: the invitation is for another address"),
              (status = 409, body = ErrorBody, description = "already_member"), (status = 429, body = ErrorBody)))]
pub async fn join(State(app): State<AppState>, caller: Caller, Json(req): Json<TokenRequest>) -> ApiResult<Response> {
    // The address's owner proves it twice: the emailed link, and a sign-in to that account.
    let me = super::me::load_me(&app, &caller).await?;
    let p = pending(&app, &req.token).await?;
    if p.email != me.email {
        return Err(ApiError::forbidden("invitation_not_yours", "this invitation is for another address"));
    }
    let roles = granted_roles(&app, &p).await?;
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    if crate::members::belongs(&mut *tx, &me.id, &p.org_id).await? {
        tx.rollback().await?;
        return Err(ApiError::conflict("already_member", "this account already belongs to the organisation"));
    }
    if !mark_accepted(&mut tx, &p.id, t).await? {
        tx.rollback().await?;
        return Err(invalid_invitation());
    }
    crate::members::add(&mut tx, &me.id, &p.org_id, &roles, t).await?;
    sqlx::query("UPDATE invitations SET user_id = $1 WHERE id = $2").bind(&me.id).bind(&p.id).execute(&mut *tx).await?;
    Event::new(Action::MemberAdded, Some(&p.org_id), Who::User(&me.id))
        .target("user", &me.id)
        .data(serde_json::json!({ "via": "invitation", "invitation_id": p.id, "invited_by": p.invited_by, "roles": roles }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(invitation = %p.id, user_id = %me.id, org = %p.org_id, "invitation accepted by an existing account");
    Ok((StatusCode::CREATED, axum::Json(Accepted { user_id: me.id.clone(), email: p.email, org_id: p.org_id, roles })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub token: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub user_id: String,
    pub email: String,
    pub org_id: String,
    pub roles: Vec<String>,
}

#[utoipa::path(post, path = "/v1/invitations/accept", tag = "users", request_body = AcceptRequest,
    responses((status = 201, body = Accepted, description = "the account exists, active, in the organisation; sign in"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn accept(State(app): State<AppState>, Json(req): Json<AcceptRequest>) -> ApiResult<Response> {
    let p = pending(&app, &req.token).await?;
    app.hasher.check_policy(&req.password, &p.email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    let hash = app.hasher.hash(&req.password).await?;
    let roles = granted_roles(&app, &p).await?;
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    if !mark_accepted(&mut tx, &p.id, t).await? {
        tx.rollback().await?;
        return Err(invalid_invitation());
    }
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(&p.email).fetch_optional(&mut *tx).await?;
    if existing.is_some() {
        // Nothing changes: the invitation stays usable once the address is free (the one who
        // can read this answer holds the address's mail anyway).
        tx.rollback().await?;
        return Err(ApiError::conflict(
            "email_taken",
            "this address already has an account: sign in with it, then join (POST /v1/invitations/join)",
        ));
    }
    let id = crypto::new_id("usr");
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, verified_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, 'active', 'none', $5, $5, $5)",
    )
    .bind(&id)
    .bind(&p.email)
    .bind(&p.org_id)
    .bind(&hash)
    .bind(t)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::conflict("email_taken", "this address already has an account: sign in with it"));
        }
        other => other?,
    };
    crate::members::add(&mut tx, &id, &p.org_id, &roles, t).await?;
    sqlx::query("UPDATE invitations SET user_id = $1 WHERE id = $2").bind(&id).bind(&p.id).execute(&mut *tx).await?;
    Event::new(Action::UserCreated, Some(&p.org_id), Who::Anonymous)
        .target("user", &id)
        .data(serde_json::json!({ "via": "invitation", "invitation_id": p.id, "invited_by": p.invited_by, "roles": roles }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(invitation = %p.id, user_id = %id, "invitation accepted");
    Ok((StatusCode::CREATED, axum::Json(Accepted { user_id: id, email: p.email, org_id: p.org_id, roles })).into_response())
}
