//! Accounts without a session: sign-up with email verification (the account is created only
//! when a code is verified, with that sign-up's own password and organisation), and password
//! forgot/reset.
//!
//! Pre-hijack defence: nothing of a sign-up is stored in the account until its emailed code is
//! verified. Each sign-up keeps its password hash and organisation choice with its own code, so
//! whoever proves the mailbox gets the account with *their* password; a sign-up someone else
//! made for the same address before or after leaves no trace in it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::login::VerificationResponse;
use super::{account_rate_limit, Json};
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::codes::{self, NewCode};
use crate::crypto;
use crate::db::{now, DEFAULT_ORG};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::lockout;
use crate::sessions;
use crate::users::{self, normalize_email};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    pub password: String,
    /// Create a new organisation (tenant) with this name, the user its admin; only when the
    /// server allows it (`signup.allow_org_creation`), else 403 `org_creation_disabled`. Without
    /// it the user joins the default organisation with no roles.
    #[serde(default)]
    pub org_name: Option<String>,
}

/// What a verified sign-up applies: kept with its code, never in the account before.
#[derive(Serialize, Deserialize)]
struct PendingSignUp {
    password_hash: String,
    org_name: Option<String>,
}

const SIGNUP_MAIL: (&str, &str) =
    ("Verify your email address", "Your {product} verification code is {code}. It expires in {minutes} minutes.");
const ALREADY_MAIL: (&str, &str) = (
    "Sign-up attempt",
    "Someone tried to create an account on {product} with this email address, which already has one. \
If it was you, sign in instead, or reset your password. If not, you can ignore this email.",
);

fn invalid_code() -> ApiError {
    ApiError::bad_request("invalid_code", "the code is invalid or has expired")
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = SignUpRequest,
    responses((status = 202, body = VerificationResponse, description = "a code was emailed (the same answer whether or not the address already has an account)"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_up(State(app): State<AppState>, Json(req): Json<SignUpRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    app.hasher.check_policy(&req.password, &email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    let org_name = match &req.org_name {
        None => None,
        Some(_) if !app.cfg.signup.allow_org_creation => {
            return Err(ApiError::forbidden(
                "org_creation_disabled",
                "this server does not create organisations at sign-up: sign up without org_name",
            ));
        }
        Some(name) if name.trim().is_empty() || name.len() > 100 => {
            return Err(ApiError::bad_request("invalid_org_name", "org_name must have 1 to 100 characters"));
        }
        Some(name) => Some(name.trim().to_string()),
    };
    // The same work for a taken address as for a new one: hash, one lookup, one code.
    let password_hash = app.hasher.hash(&req.password).await?;
    let pending = serde_json::to_string(&PendingSignUp { password_hash, org_name }).expect("serializes");
    // Pending accounts of older versions are not "taken": a verified sign-up replaces them.
    let taken = users::by_email(&app.db, &email).await?.is_some_and(|u| u.status != "pending");
    let code = if taken {
        // A decoy code (never sent); the owner gets a notice instead.
        NewCode { purpose: "signup", account: &email, subject: "", data: None, mail: Some(ALREADY_MAIL) }
    } else {
        NewCode { purpose: "signup", account: &email, subject: &email, data: Some(pending), mail: Some(SIGNUP_MAIL) }
    };
    let (vid, ttl) = codes::issue(&app, code).await?;
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
    responses((status = 200, body = VerifiedResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "another sign-up for this address was verified first")))]
pub async fn verify_email(State(app): State<AppState>, Json(req): Json<VerifyRequest>) -> ApiResult<axum::Json<VerifiedResponse>> {
    let entry = codes::verify(&app, &req.verification_id, &req.code, "signup", StatusCode::BAD_REQUEST).await?;
    let pending: PendingSignUp = match entry.data.as_deref() {
        Some(data) if !entry.subject.is_empty() => {
            serde_json::from_str(data).map_err(|e| ApiError::internal(format!("pending sign-up: {e}")))?
        }
        _ => return Err(invalid_code()),
    };
    let user_id = create_account(&app, &entry.subject, &pending).await?;
    tracing::info!(user_id = %user_id, "account created");
    Ok(axum::Json(VerifiedResponse { user_id, status: "active" }))
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "this address already has an account: sign in, or reset the password")
}

/// Creates the account of a verified sign-up (or completes a pending account of an older
/// version) with the sign-up's password and organisation.
async fn create_account(app: &App, email: &str, pending: &PendingSignUp) -> Result<String, ApiError> {
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    let existing: Option<(String, String)> =
        sqlx::query_as("SELECT id, status FROM users WHERE email = $1").bind(email).fetch_optional(&mut *tx).await?;
    if existing.as_ref().is_some_and(|(_, status)| status != "pending") {
        tx.rollback().await?;
        return Err(email_taken());
    }
    let org_id = match &pending.org_name {
        Some(name) => {
            let org = crypto::new_id("org");
            sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&org)
                .bind(name)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            org
        }
        None => DEFAULT_ORG.to_string(),
    };
    let id = match existing {
        Some((id, _)) => {
            sqlx::query("UPDATE users SET password_hash = $1, org_id = $2, status = 'active', verified_at = $3, password_changed_at = $3 WHERE id = $4")
                .bind(&pending.password_hash)
                .bind(&org_id)
                .bind(t)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM member_roles WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM memberships WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
            id
        }
        None => {
            let id = crypto::new_id("usr");
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, verified_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, 'active', 'none', $5, $5, $5)",
            )
            .bind(&id)
            .bind(email)
            .bind(&org_id)
            .bind(&pending.password_hash)
            .bind(t)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(email_taken()),
                other => other?,
            };
            id
        }
    };
    // The creator of a new organisation is its admin; sign-ups into the default organisation
    // get no role (the operator makes admins: `auth-server admin create-user` / `grant-role`).
    let roles: Vec<String> = if pending.org_name.is_some() { vec![crate::authority::TENANT_ADMIN.to_string()] } else { Vec::new() };
    crate::members::add(&mut tx, &id, &org_id, &roles, t).await?;
    Event::new(Action::UserCreated, Some(&org_id), Who::Anonymous)
        .target("user", &id)
        .data(serde_json::json!({ "via": "sign_up", "new_org": pending.org_name.is_some(), "roles": roles }))
        .write(&mut tx)
        .await?;
    match tx.commit().await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(email_taken()),
        other => other.map(|_| id).map_err(ApiError::from),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// The `verification_id` of the sign-up whose code should be sent again.
    pub verification_id: String,
}

#[utoipa::path(post, path = "/v1/users/verify/resend", tag = "users", request_body = ResendRequest,
    responses((status = 202, body = VerificationResponse, description = "a new code for the same sign-up (the same answer for any id)")))]
pub async fn resend(State(app): State<AppState>, Json(req): Json<ResendRequest>) -> ApiResult<Response> {
    let (vid, ttl) = match codes::peek(&app, &req.verification_id, "signup").await? {
        // The same sign-up (its password and organisation) with a new code; a decoy of a taken
        // address gets another decoy, counted the same way, so the cap tells nothing either.
        Some(entry) => {
            account_rate_limit(&app, &entry.account).await?;
            let mail = if entry.data.is_some() { Some(SIGNUP_MAIL) } else { None };
            codes::issue(&app, NewCode { purpose: "signup", account: &entry.account, subject: &entry.subject, data: entry.data, mail })
                .await?
        }
        // Unknown or expired: an id of the same shape (only its holder could know it was live).
        None => (crypto::new_id("ver"), app.cfg.codes.ttl_s),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(VerificationResponse { verification_id: vid, expires_in: ttl })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub email: String,
}

/// A reset token's entry: the account, and its `password_changed_at` when the token was made
/// (a changed password invalidates every token made before).
#[derive(Serialize, Deserialize)]
struct ResetEntry {
    user_id: String,
    password_changed_at: i64,
}

fn reset_key(token: &str) -> String {
    format!("reset:{}", crypto::sha256_hex(token.as_bytes()))
}

#[utoipa::path(post, path = "/v1/password/forgot", tag = "users", request_body = EmailRequest,
    responses((status = 202, description = "a reset link was emailed if the account exists"), (status = 429, body = ErrorBody)))]
pub async fn forgot_password(State(app): State<AppState>, Json(req): Json<EmailRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    // One path for known and unknown addresses: the same lookup, the same cap, a token made and
    // stored either way (a decoy naming no account for unknown ones); only the email differs,
    // and emails leave from a queue.
    let user = users::by_email(&app.db, &email).await?.filter(|u| u.status == "active");
    codes::count_issued(&app, &email).await?;
    let token = crypto::new_secret("prt_");
    let ttl = app.cfg.codes.reset_ttl_s;
    let entry = ResetEntry {
        user_id: user.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
        password_changed_at: user.as_ref().map_or(0, |u| u.password_changed_at),
    };
    app.eph.put(&reset_key(&token), &serde_json::to_string(&entry).expect("serializes"), ttl).await?;
    if let Some(user) = user {
        let body = format!(
            "To choose a new {{product}} password, open {}/reset-password?token={token}\nor send this reset token to POST /v1/password/reset:\n\n{token}\n\nIt works once, within {} minutes. If you did not ask for it, ignore this email.",
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
    responses((status = 204, description = "password changed; every session and every other reset token revoked"), (status = 400, body = ErrorBody)))]
pub async fn reset_password(State(app): State<AppState>, Json(req): Json<ResetRequest>) -> ApiResult<StatusCode> {
    let invalid = || ApiError::bad_request("invalid_reset_token", "the reset token is invalid, used or expired");
    if !req.token.starts_with("prt_") || req.token.len() > 100 {
        return Err(invalid());
    }
    let key = reset_key(&req.token);
    let entry: ResetEntry = match app.eph.get(&key).await? {
        Some(raw) => serde_json::from_str(&raw).map_err(|_| invalid())?,
        None => return Err(invalid()),
    };
    let user = users::by_id(&app.db, &entry.user_id).await?.filter(|u| u.status == "active").ok_or_else(invalid)?;
    app.hasher.check_policy(&req.password, &user.email).map_err(|e| ApiError::bad_request("weak_password", e.message()))?;
    let hash = app.hasher.hash(&req.password).await?;
    // Single use: only the request that takes the token goes on.
    if app.eph.take(&key).await?.is_none() {
        return Err(invalid());
    }
    // Only while the password is the one the token was made for: a reset (with this token or
    // another) moves `password_changed_at` on, which invalidates every other outstanding token.
    let mut tx = crate::db::begin_write(&app.db).await?;
    let changed = sqlx::query(
        "UPDATE users SET password_hash = $1, \
           password_changed_at = CASE WHEN $2 > password_changed_at THEN $2 ELSE password_changed_at + 1 END \
         WHERE id = $3 AND password_changed_at = $4",
    )
    .bind(&hash)
    .bind(now())
    .bind(&user.id)
    .bind(entry.password_changed_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(invalid());
    }
    Event::new(Action::PasswordReset, user.event_org(), Who::Anonymous).target("user", &user.id).write(&mut tx).await?;
    tx.commit().await?;
    let n = sessions::revoke_all(&app, &user.id, None, "password_reset", Who::System).await?;
    lockout::clear(&app, &user.email).await?;
    tracing::info!(user_id = %user.id, sessions_revoked = n, "password reset");
    crate::notify::send(&app, &user.email, crate::notify::Notice::PasswordChanged);
    Ok(StatusCode::NO_CONTENT)
}
