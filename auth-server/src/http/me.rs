//! The caller's own account: who am I, and how I log in (second step, TOTP enrolment). Changes
//! to the login factors need a recent login or a fresh second factor.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::login::totp_step;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::lockout;
use crate::notify::{self, Notice};
use crate::users::{self, User};
use serde_json::json;

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub id: String,
    pub email: String,
    /// The display name, if one was set.
    pub name: Option<String>,
    /// The organisation this session is for (picked at login).
    pub org_id: String,
    /// The roles held there.
    pub roles: Vec<String>,
    /// Every organisation the account belongs to.
    pub memberships: Vec<crate::members::Membership>,
    /// `none`, `email_otp` or `totp`: the second step after the password.
    pub mfa: String,
    pub totp_enabled: bool,
    pub created_at: i64,
}

/// The caller's account, in the organisation of their session (where their account-wide
/// changes are logged).
pub struct Me {
    pub user: User,
    pub org: String,
}

impl std::ops::Deref for Me {
    type Target = User;
    fn deref(&self) -> &User {
        &self.user
    }
}

/// The caller's own account: a person's session, active in its organisation.
pub async fn load_me(app: &App, caller: &Caller) -> Result<Me, ApiError> {
    let uid = caller.user_id()?;
    let inactive = || crate::members::not_active(true);
    let org = caller.org.clone().ok_or_else(inactive)?;
    let user = users::by_id(&app.db, uid).await?.filter(|u| u.status == "active").ok_or_else(inactive)?;
    if !crate::members::is_active(&app.db, uid, &org).await? {
        return Err(inactive());
    }
    Ok(Me { user, org })
}

/// The factors a session's `amr` must show for an account with `mfa`.
fn amr_covers(mfa: &str, amr: &str) -> bool {
    let has = |m: &str| amr.split_whitespace().any(|a| a == m);
    // A passkey (user verification required) is possession and knowledge or inherence at once.
    if has("hwk") {
        return true;
    }
    match mfa {
        "email_otp" => has("pwd") && has("email"),
        "totp" => has("pwd") && has("otp"),
        // A sign-in through a linked identity provider (its own policy governs its factors).
        _ => has("pwd") || has("email") || has("fed"),
    }
}

/// Changing how the account logs in needs a recent login: the caller's own session completed
/// its login within `login.reauth_window_s`, with every factor the account requires now. A
/// stolen access token or refresh token alone cannot switch factors off or enrol its own.
pub async fn require_recent_login(app: &App, caller: &Caller, user: &users::User) -> Result<(), ApiError> {
    let sid = caller.sid.as_deref().unwrap_or("");
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT created_at, amr FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(sid)
            .bind(&user.id)
            .fetch_optional(&app.db)
            .await?;
    let recent = row.is_some_and(|(created, amr)| now() - created <= app.cfg.login.reauth_window_s && amr_covers(&user.mfa, &amr));
    if !recent {
        return Err(ApiError::forbidden(
            "reauthentication_required",
            "log in again (with every step your account requires) and retry within login.reauth_window_s",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<MeResponse>> {
    let Me { user: u, org } = load_me(&app, &caller).await?;
    let memberships = crate::members::of_user(&app.db, &u.id).await?;
    let roles = memberships.iter().find(|m| m.org_id == org).map(|m| m.roles.clone()).unwrap_or_default();
    Ok(axum::Json(MeResponse {
        totp_enabled: u.totp_secret.is_some(),
        id: u.id,
        email: u.email,
        name: u.name,
        org_id: org,
        roles,
        memberships,
        mfa: u.mfa,
        created_at: u.created_at,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// The display name: 1 to 100 characters; `null` or empty removes it.
    pub name: Option<String>,
}

#[utoipa::path(patch, path = "/v1/me", tag = "me", request_body = ProfileUpdate, security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 400, body = ErrorBody, description = "invalid_name")))]
pub async fn update_me(State(app): State<AppState>, caller: Caller, Json(req): Json<ProfileUpdate>) -> ApiResult<axum::Json<MeResponse>> {
    let u = load_me(&app, &caller).await?;
    set_name(&app, &u, &u.org, req.name.as_deref(), Who::User(&u.id)).await?;
    me(State(app), caller).await
}

/// Sets a user's display name (audited in `org` when it changes).
pub async fn set_name(app: &App, user: &User, org: &str, raw: Option<&str>, actor: Who<'_>) -> Result<(), ApiError> {
    let name = users::display_name(raw).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    if name == user.name {
        return Ok(());
    }
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("UPDATE users SET name = $1 WHERE id = $2").bind(&name).bind(&user.id).execute(&mut *tx).await?;
    // The fact, not the name: an erased account's events keep nothing personal.
    Event::new(Action::UserProfileUpdated, Some(org), actor)
        .target("user", &user.id)
        .data(json!({ "fields": ["name"] }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaRequest {
    /// `none` or `email_otp` (TOTP is switched on by confirming an enrolment).
    pub method: String,
    /// The current password (re-authentication).
    pub password: String,
}

#[utoipa::path(put, path = "/v1/me/mfa", tag = "users", request_body = MfaRequest, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "reauthentication_required: log in again first")))]
pub async fn set_mfa(State(app): State<AppState>, caller: Caller, Json(req): Json<MfaRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    if !["none", "email_otp"].contains(&req.method.as_str()) {
        return Err(ApiError::bad_request("invalid_request", "method must be none or email_otp (enrol TOTP with POST /v1/me/totp)"));
    }
    require_recent_login(&app, &caller, &u).await?;
    let attempt = lockout::attempt(&app, &u.email).await?;
    if !app.hasher.verify(&req.password, Some(&u.password_hash)).await? {
        attempt.failed(&app).await;
        return Err(ApiError::unauthorized("invalid_credentials", "the password is wrong"));
    }
    attempt.succeeded(&app).await?;
    if u.mfa == "totp" {
        return Err(ApiError::conflict("totp_enabled", "disable TOTP first (DELETE /v1/me/totp)"));
    }
    let mut tx = db::begin_write(&app.db).await?;
    let changed = sqlx::query("UPDATE users SET mfa = $1 WHERE id = $2 AND mfa <> $1")
        .bind(&req.method)
        .bind(&u.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if changed > 0 {
        factors_event(&u, json!({ "mfa": req.method })).write(&mut tx).await?;
    }
    tx.commit().await?;
    if changed > 0 {
        let what = if req.method == "email_otp" {
            "A code by email is now asked after the password"
        } else {
            "The second step after the password was turned off"
        };
        notify::send(&app, &u.email, Notice::FactorsChanged { what });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A change of the account's sign-in factors, made by the account itself.
pub fn factors_event(u: &Me, data: serde_json::Value) -> Event<'_> {
    Event::new(Action::MfaChanged, Some(&u.org), Who::User(&u.id)).target("user", &u.id).data(data)
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// base32 secret, for manual entry.
    pub secret: String,
    pub otpauth_uri: String,
}

#[utoipa::path(post, path = "/v1/me/totp", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = TotpEnrolment), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn totp_enrol(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let u = load_me(&app, &caller).await?;
    if u.totp_secret.is_some() {
        return Err(ApiError::conflict("totp_enabled", "TOTP is already enabled"));
    }
    require_recent_login(&app, &caller, &u).await?;
    let secret = crypto::random_bytes(20);
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.clone(), Some("authgate".into()), u.email.clone())
        .map_err(|e| ApiError::internal(format!("totp: {e}")))?;
    let sealed = app.master.seal(&secret, &format!("totp:{}", u.id));
    sqlx::query("UPDATE users SET totp_pending = $1 WHERE id = $2").bind(sealed).bind(&u.id).execute(&app.db).await?;
    let mut resp = axum::Json(TotpEnrolment { secret: totp.get_secret_base32(), otpauth_uri: totp.get_url() }).into_response();
    resp.headers_mut().insert("cache-control", axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub code: String,
}

#[utoipa::path(post, path = "/v1/me/totp/confirm", tag = "users", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 204, description = "TOTP enabled: logins now need password then totp"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn totp_confirm(State(app): State<AppState>, caller: Caller, Json(req): Json<CodeRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    let Some(pending) = u.totp_pending.clone() else {
        return Err(ApiError::bad_request("no_enrolment", "start with POST /v1/me/totp"));
    };
    require_recent_login(&app, &caller, &u).await?;
    totp_step(&app, &u, Some(&pending), &req.code, StatusCode::BAD_REQUEST).await?;
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, mfa = 'totp' WHERE id = $1")
        .bind(&u.id)
        .execute(&mut *tx)
        .await?;
    factors_event(&u, json!({ "mfa": "totp", "totp": "enabled" })).write(&mut tx).await?;
    tx.commit().await?;
    notify::send(&app, &u.email, Notice::FactorsChanged { what: "An authenticator app was turned on" });
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/me/totp", tag = "users", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn totp_disable(State(app): State<AppState>, caller: Caller, Json(req): Json<CodeRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    // The fresh second factor: a current code of the secret being removed.
    totp_step(&app, &u, u.totp_secret.as_deref(), &req.code, StatusCode::BAD_REQUEST).await?;
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("UPDATE users SET totp_secret = NULL, totp_pending = NULL, mfa = 'none' WHERE id = $1")
        .bind(&u.id)
        .execute(&mut *tx)
        .await?;
    factors_event(&u, json!({ "mfa": "none", "totp": "disabled" })).write(&mut tx).await?;
    tx.commit().await?;
    notify::send(&app, &u.email, Notice::FactorsChanged { what: "The authenticator app was turned off" });
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn factors() {
        use super::amr_covers;
        assert!(amr_covers("none", "pwd") && amr_covers("none", "email") && !amr_covers("none", ""));
        assert!(amr_covers("email_otp", "pwd email mfa") && !amr_covers("email_otp", "pwd"));
        assert!(amr_covers("totp", "pwd otp mfa") && !amr_covers("totp", "pwd email mfa"));
        // A user-verified passkey covers every account's factors.
        for mfa in ["none", "email_otp", "totp"] {
            assert!(amr_covers(mfa, "hwk mfa"), "{mfa}");
        }
    }
}

/// An app the person let sign them in, and what it may see.
#[derive(Serialize, ToSchema)]
pub struct Consent {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub granted_at: i64,
}

#[utoipa::path(get, path = "/v1/me/consents", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<Consent>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn consents(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<Consent>>> {
    let user = load_me(&app, &caller).await?;
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT c.client_id, k.name, c.scope, c.granted_at FROM oauth_consents c JOIN clients k ON k.id = c.client_id \
         WHERE c.user_id = $1 ORDER BY c.granted_at, c.client_id",
    )
    .bind(&user.id)
    .fetch_all(&app.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter().map(|(client_id, client_name, scope, granted_at)| Consent { client_id, client_name, scope, granted_at }).collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/me/consents/{client_id}", tag = "me", security(("bearer" = [])), params(("client_id" = String, Path)),
    responses((status = 204, description = "consent taken back; the app's sessions for this account are revoked"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_consent(
    State(app): State<AppState>,
    caller: Caller,
    axum::extract::Path(client_id): axum::extract::Path<String>,
) -> ApiResult<StatusCode> {
    let user = load_me(&app, &caller).await?;
    if !crate::oidc::grants::revoke_consent(&app, &user.id, &client_id).await? {
        return Err(ApiError::not_found("consent_not_found", "this app has no consent or session of yours"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[utoipa::path(put, path = "/v1/me/password", tag = "me", request_body = PasswordChange, security(("bearer" = [])),
    responses((status = 204, description = "changed; every other session signed out, reset links dead, a notice emailed"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(State(app): State<AppState>, caller: Caller, Json(req): Json<PasswordChange>) -> ApiResult<StatusCode> {
    let user = load_me(&app, &caller).await?;
    // A stolen access token alone cannot do it: the session's own login must be recent and
    // complete, and the current password right (counted by the lockout like any guess).
    require_recent_login(&app, &caller, &user).await?;
    let attempt = lockout::attempt(&app, &user.email).await?;
    if !app.hasher.verify(&req.current_password, Some(&user.password_hash)).await? {
        attempt.failed(&app).await;
        return Err(ApiError::bad_request("invalid_current_password", "the current password is wrong"));
    }
    attempt.succeeded(&app).await?;
    app.hasher.check_policy(&req.new_password, &user.email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    let hash = app.hasher.hash(&req.new_password).await?;
    // `password_changed_at` moves on: every outstanding reset link is dead.
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
        .bind(&hash)
        .bind(now())
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    Event::new(Action::PasswordChanged, Some(&user.org), Who::User(&user.id)).target("user", &user.id).write(&mut tx).await?;
    tx.commit().await?;
    crate::sessions::revoke_all(&app, &user.id, caller.sid.as_deref(), "password_changed", Who::User(&user.id)).await?;
    notify::send(&app, &user.email, Notice::PasswordChanged);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 204, description = "my account erased, in every organisation it belongs to; cookies cleared in cookie mode"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_me(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    if super::users::holds_platform_role(&app, &user.id, &app.cfg.platform.operator_org).await? {
        return Err(ApiError::forbidden("platform_role_held", "an account holding a platform role is removed by the operator"));
    }
    super::users::erase_account(&app, &user.id, &user.org, Who::User(&user.id)).await?;
    app.mailer.send(&user.email, "Your account was deleted", "Your {product} account and its data are deleted, as you asked.\n".into());
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if caller.method == super::auth::AuthMethod::Cookie {
        for c in super::auth::clear_cookies(&app) {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, c);
        }
    }
    Ok(resp)
}
