//! Accounts: sign-up with email verification, me, MFA settings and TOTP enrolment, password
//! forgot/reset, and the admin endpoints (list, roles, disable) of an organisation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::login::{check_totp, VerificationResponse};
use super::{account_rate_limit, Json};
use crate::app::{App, AppState};
use crate::codes;
use crate::crypto;
use crate::db::{self, now, DEFAULT_ORG};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::revocations;
use crate::sessions;
use crate::users::{self, normalize_email, valid_role};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    pub password: String,
    /// Create a new organisation (tenant) with this name; the user becomes its admin. Without
    /// it the user joins the default organisation (the very first user becomes admin).
    #[serde(default)]
    pub org_name: Option<String>,
}

const SIGNUP_TEXT: &str = "Your authgate verification code is {code}. It expires in {minutes} minutes.";
const ALREADY_TEXT: &str = "Someone tried to create an authgate account with this email address, which already has one. \
If it was you, sign in instead, or reset your password. If not, you can ignore this email.";

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = SignUpRequest,
    responses((status = 202, body = VerificationResponse, description = "a code was emailed (the same answer whether or not the address already has an account)"),
              (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_up(State(app): State<AppState>, Json(req): Json<SignUpRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    app.hasher.check_policy(&req.password, &email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    if let Some(name) = &req.org_name {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(ApiError::bad_request("invalid_org_name", "org_name must have 1 to 100 characters"));
        }
    }
    // Hash first, always: the answer takes as long for a taken address as for a new one.
    let hash = app.hasher.hash(&req.password).await?;
    let t = now();
    let user_id = crypto::new_id("usr");
    let mut tx = crate::db::begin_write(&app.db).await?;
    // Serialises sign-ups (first-user-is-admin must be decided once).
    db::feed_lock(&mut tx, false).await?;
    let existing: Option<(String, String)> = sqlx::query_as("SELECT id, status FROM users WHERE email = $1").bind(&email).fetch_optional(&mut *tx).await?;
    let outcome = match existing {
        Some((id, status)) => {
            tx.rollback().await?;
            Err((id, status))
        }
        None => {
            let org_id = match &req.org_name {
                Some(name) => {
                    let org = crypto::new_id("org");
                    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)").bind(&org).bind(name.trim()).bind(t).execute(&mut *tx).await?;
                    org
                }
                None => DEFAULT_ORG.to_string(),
            };
            let first: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 'none', $5, $5)",
            )
            .bind(&user_id)
            .bind(&email)
            .bind(&org_id)
            .bind(&hash)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            if first == 0 || req.org_name.is_some() {
                sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'admin')").bind(&user_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
    };
    let (vid, ttl) = match outcome {
        Ok(()) => codes::issue(&app, "signup", &user_id, Some((&email, "Verify your email address", SIGNUP_TEXT))).await?,
        Err((id, status)) if status == "pending" => codes::issue(&app, "signup", &id, Some((&email, "Verify your email address", SIGNUP_TEXT))).await?,
        Err(_) => {
            app.mailer.send(&email, "Sign-up attempt", ALREADY_TEXT.to_string());
            codes::issue(&app, "signup", "", None).await?
        }
    };
    Ok((StatusCode::ACCEPTED, axum::Json(VerificationResponse { verification_id: vid, expires_in: ttl })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub verification_id: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifiedResponse {
    pub user_id: String,
    pub status: &'static str,
}

#[utoipa::path(post, path = "/v1/users/verify", tag = "users", request_body = VerifyRequest,
    responses((status = 200, body = VerifiedResponse), (status = 400, body = ErrorBody)))]
pub async fn verify_email(State(app): State<AppState>, Json(req): Json<VerifyRequest>) -> ApiResult<axum::Json<VerifiedResponse>> {
    let entry = codes::verify(&app, &req.verification_id, &req.code, "signup", StatusCode::BAD_REQUEST).await?;
    if entry.subject.is_empty() {
        return Err(ApiError::bad_request("invalid_code", "the code is invalid or has expired"));
    }
    sqlx::query("UPDATE users SET status = 'active', verified_at = $1 WHERE id = $2 AND status = 'pending'")
        .bind(now())
        .bind(&entry.subject)
        .execute(&app.db)
        .await?;
    Ok(axum::Json(VerifiedResponse { user_id: entry.subject, status: "active" }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub email: String,
}

#[utoipa::path(post, path = "/v1/users/verify/resend", tag = "users", request_body = EmailRequest,
    responses((status = 202, body = VerificationResponse)))]
pub async fn resend(State(app): State<AppState>, Json(req): Json<EmailRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    let user = users::by_email(&app.db, &email).await?.filter(|u| u.status == "pending");
    let (vid, ttl) = match user {
        Some(u) => codes::issue(&app, "signup", &u.id, Some((&email, "Verify your email address", SIGNUP_TEXT))).await?,
        None => codes::issue(&app, "signup", "", None).await?,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(VerificationResponse { verification_id: vid, expires_in: ttl })).into_response())
}

#[utoipa::path(post, path = "/v1/password/forgot", tag = "users", request_body = EmailRequest,
    responses((status = 202, description = "a reset link was emailed if the account exists")))]
pub async fn forgot_password(State(app): State<AppState>, Json(req): Json<EmailRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    if let Some(user) = users::by_email(&app.db, &email).await?.filter(|u| u.status == "active") {
        let token = crypto::new_secret("prt_");
        let ttl = app.cfg.codes.reset_ttl_s;
        app.eph.put(&format!("reset:{}", crypto::sha256_hex(token.as_bytes())), &user.id, ttl).await?;
        let body = format!(
            "To choose a new authgate password, open {}/reset-password?token={token}\nor send this reset token to POST /v1/password/reset:\n\n{token}\n\nIt works once, within {} minutes. If you did not ask for it, ignore this email.",
            app.cfg.public_url,
            ttl / 60
        );
        app.mailer.send(&user.email, "Reset your password", body);
    }
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({"status": "sent_if_account_exists"}))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub token: String,
    pub password: String,
}

#[utoipa::path(post, path = "/v1/password/reset", tag = "users", request_body = ResetRequest,
    responses((status = 204, description = "password changed; every session revoked"), (status = 400, body = ErrorBody)))]
pub async fn reset_password(State(app): State<AppState>, Json(req): Json<ResetRequest>) -> ApiResult<StatusCode> {
    let invalid = || ApiError::bad_request("invalid_reset_token", "the reset token is invalid, used or expired");
    if !req.token.starts_with("prt_") || req.token.len() > 100 {
        return Err(invalid());
    }
    let key = format!("reset:{}", crypto::sha256_hex(req.token.as_bytes()));
    let user_id = app.eph.get(&key).await?.ok_or_else(invalid)?;
    let user = users::by_id(&app.db, &user_id).await?.filter(|u| u.status == "active").ok_or_else(invalid)?;
    app.hasher.check_policy(&req.password, &user.email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    let hash = app.hasher.hash(&req.password).await?;
    // Single use: only the request that takes the token goes on.
    if app.eph.take(&key).await?.is_none() {
        return Err(invalid());
    }
    sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3").bind(&hash).bind(now()).bind(&user.id).execute(&app.db).await?;
    let n = sessions::revoke_all(&app, &user.id, None, "password_reset").await?;
    super::login::clear_failures(&app, &user.email).await?;
    app.eph.del(&format!("lock:{}", crypto::sha256_hex(user.email.as_bytes()))).await?;
    tracing::info!(user_id = %user.id, sessions_revoked = n, "password reset");
    app.mailer.send(&user.email, "Your password was changed", "Your authgate password was just changed and every session signed out. If it was not you, reset it again at once.".into());
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub id: String,
    pub email: String,
    pub org_id: String,
    pub roles: Vec<String>,
    /// `none`, `email_otp` or `totp`: the second step after the password.
    pub mfa: String,
    pub totp_enabled: bool,
    pub created_at: i64,
}

async fn load_me(app: &App, caller: &Caller) -> Result<users::User, ApiError> {
    let uid = caller.user_id()?;
    users::by_id(&app.db, uid).await?.filter(|u| u.status == "active").ok_or_else(|| ApiError::invalid_token("account_disabled", "the account is not active"))
}

#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<MeResponse>> {
    let u = load_me(&app, &caller).await?;
    let roles = users::roles(&app.db, &u.id).await?;
    Ok(axum::Json(MeResponse { totp_enabled: u.totp_secret.is_some(), id: u.id, email: u.email, org_id: u.org_id, roles, mfa: u.mfa, created_at: u.created_at }))
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
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn set_mfa(State(app): State<AppState>, caller: Caller, Json(req): Json<MfaRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    if !["none", "email_otp"].contains(&req.method.as_str()) {
        return Err(ApiError::bad_request("invalid_request", "method must be none or email_otp (enrol TOTP with POST /v1/me/totp)"));
    }
    super::login::check_lockout(&app, &u.email).await?;
    if !app.hasher.verify(&req.password, Some(&u.password_hash)).await? {
        super::login::record_failure(&app, &u.email).await?;
        return Err(ApiError::unauthorized("invalid_credentials", "the password is wrong"));
    }
    if u.mfa == "totp" {
        return Err(ApiError::conflict("totp_enabled", "disable TOTP first (DELETE /v1/me/totp)"));
    }
    sqlx::query("UPDATE users SET mfa = $1 WHERE id = $2").bind(&req.method).bind(&u.id).execute(&app.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// base32 secret, for manual entry.
    pub secret: String,
    pub otpauth_uri: String,
}

#[utoipa::path(post, path = "/v1/me/totp", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = TotpEnrolment), (status = 409, body = ErrorBody)))]
pub async fn totp_enrol(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let u = load_me(&app, &caller).await?;
    if u.totp_secret.is_some() {
        return Err(ApiError::conflict("totp_enabled", "TOTP is already enabled"));
    }
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
    responses((status = 204, description = "TOTP enabled: logins now need password then totp"), (status = 400, body = ErrorBody)))]
pub async fn totp_confirm(State(app): State<AppState>, caller: Caller, Json(req): Json<CodeRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    let Some(pending) = u.totp_pending.clone() else {
        return Err(ApiError::bad_request("no_enrolment", "start with POST /v1/me/totp"));
    };
    super::login::check_lockout(&app, &u.email).await?;
    if !check_totp(&app, &u, Some(&pending), &req.code).await? {
        super::login::record_failure(&app, &u.email).await?;
        return Err(ApiError::bad_request("invalid_code", "the code is invalid or has expired"));
    }
    sqlx::query("UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, mfa = 'totp' WHERE id = $1").bind(&u.id).execute(&app.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/me/totp", tag = "users", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn totp_disable(State(app): State<AppState>, caller: Caller, Json(req): Json<CodeRequest>) -> ApiResult<StatusCode> {
    let u = load_me(&app, &caller).await?;
    super::login::check_lockout(&app, &u.email).await?;
    if !check_totp(&app, &u, u.totp_secret.as_deref(), &req.code).await? {
        super::login::record_failure(&app, &u.email).await?;
        return Err(ApiError::bad_request("invalid_code", "the code is invalid or has expired"));
    }
    sqlx::query("UPDATE users SET totp_secret = NULL, totp_pending = NULL, mfa = 'none' WHERE id = $1").bind(&u.id).execute(&app.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

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
