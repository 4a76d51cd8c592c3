//! Changing the account's address: asked for with a recent sign-in and the current password,
//! confirmed with a code sent to the new address (so nobody moves an account to an address they
//! do not read, and nobody learns whether an address has an account without reading its mail),
//! then the old address is told and every other session signed out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::login::VerificationResponse;
use super::me::{load_me, require_recent_login};
use super::{account_rate_limit, Json};
use crate::app::AppState;
use crate::audit::{Action, Event, Who};
use crate::codes::{self, NewCode};
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::lockout;
use crate::notify::{self, Notice};
use crate::users::normalize_email;

const PURPOSE: &str = "email_change";

const MAIL: (&str, &str) = (
    "Confirm your new address",
    "Your {product} code to make this your account's address is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this email.",
);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    pub new_email: String,
    /// The current password (re-authentication).
    pub password: String,
}

#[utoipa::path(post, path = "/v1/me/email", tag = "me", request_body = EmailChange, security(("bearer" = [])),
    responses((status = 202, body = VerificationResponse, description = "a code was sent to the new address (whether or not it has an account)"),
              (status = 400, body = ErrorBody, description = "invalid_email, same_email, invalid_current_password"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "reauthentication_required, user_session_required"), (status = 429, body = ErrorBody)))]
pub async fn request(State(app): State<AppState>, caller: Caller, Json(req): Json<EmailChange>) -> ApiResult<Response> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    let new_email =
        normalize_email(&req.new_email).ok_or_else(|| ApiError::bad_request("invalid_email", "new_email: not a valid email address"))?;
    if new_email == user.email {
        return Err(ApiError::bad_request("same_email", "new_email is the account's address already"));
    }
    let attempt = lockout::attempt(&app, &user.email).await?;
    if !app.hasher.verify(&req.password, Some(&user.password_hash)).await? {
        attempt.failed(&app).await;
        return Err(ApiError::bad_request("invalid_current_password", "the current password is wrong"));
    }
    attempt.succeeded(&app).await?;
    account_rate_limit(&app, &new_email).await?;
    // The same code and mail whether or not the address has an account: only its reader learns
    // that, at confirmation.
    let code = NewCode { purpose: PURPOSE, account: &new_email, subject: &user.id, data: Some(new_email.clone()), mail: Some(MAIL) };
    let (verification_id, expires_in) = codes::issue(&app, code).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(VerificationResponse { verification_id, expires_in })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailVerify {
    pub verification_id: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChanged {
    pub email: String,
    /// Other sessions signed out.
    pub sessions_revoked: u64,
}

#[utoipa::path(post, path = "/v1/me/email/verify", tag = "me", request_body = EmailVerify, security(("bearer" = [])),
    responses((status = 200, body = EmailChanged, description = "the address changed; the old one is told; other sessions signed out"),
              (status = 400, body = ErrorBody, description = "invalid_code, code_attempts_exceeded"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "email_taken, email_changed"), (status = 429, body = ErrorBody)))]
pub async fn verify(State(app): State<AppState>, caller: Caller, Json(req): Json<EmailVerify>) -> ApiResult<axum::Json<EmailChanged>> {
    let user = load_me(&app, &caller).await?;
    let invalid = || ApiError::bad_request("invalid_code", "the code is invalid or has expired");
    // Only the account that asked uses (or counts against) the code.
    let pending = codes::peek(&app, &req.verification_id, PURPOSE).await?.ok_or_else(invalid)?;
    if pending.subject != user.id {
        return Err(invalid());
    }
    let entry = codes::verify(&app, &req.verification_id, &req.code, PURPOSE, StatusCode::BAD_REQUEST).await?;
    let new_email = entry.data.ok_or_else(invalid)?;
    let mut tx = db::begin_write(&app.db).await?;
    // Still the address the change was asked from (two changes racing: the first one wins).
    let changed = sqlx::query("UPDATE users SET email = $1 WHERE id = $2 AND email = $3")
        .bind(&new_email)
        .bind(&user.id)
        .bind(&user.email)
        .execute(&mut *tx)
        .await;
    let changed = match changed {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(email_taken()),
        other => other?.rows_affected(),
    };
    if changed == 0 {
        return Err(ApiError::conflict("email_changed", "the account's address changed since this code was asked for"));
    }
    // No addresses in the event: an erased account's events must not keep them.
    Event::new(Action::UserEmailChanged, Some(&user.org), Who::User(&user.id)).target("user", &user.id).write(&mut tx).await?;
    match tx.commit().await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(email_taken()),
        other => other?,
    }
    let revoked = crate::sessions::revoke_all(&app, &user.id, caller.sid.as_deref(), "email_changed", Who::User(&user.id)).await?;
    notify::send(&app, &user.email, Notice::EmailChanged { to: &mask(&new_email) });
    Ok(axum::Json(EmailChanged { email: new_email, sessions_revoked: revoked }))
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "this address already has an account")
}

/// `n•••@example.com`: enough for the owner to recognise, not the whole address to whoever
/// reads the old mailbox.
fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}•••@{domain}", local.chars().next().unwrap_or('•')),
        None => "•••".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_keep_the_first_letter_and_the_domain() {
        assert_eq!(super::mask("nina.smith@example.com"), "n•••@example.com");
        assert_eq!(super::mask("broken"), "•••");
    }
}
