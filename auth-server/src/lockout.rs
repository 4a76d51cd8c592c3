//! Account lockout: failed passwords, emailed codes and TOTP codes per account (normalised
//! email, known or not), counted atomically *before* the check, so parallel attempts cannot
//! exceed `login.lockout_threshold`.
//!
//! One counter per account, `fail:<sha256(email)>`. Each attempt increments it first and goes on
//! only if the count it got back is within the threshold; a right credential takes its count
//! back. The increment that reaches the threshold makes the counter live `login.lockout_s`, so
//! "locked" is simply "the counter is at or above the threshold": there is no separate lock to
//! check and then set, and no window in which parallel requests slip through.

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::error::ApiError;

fn key(email: &str) -> String {
    format!("fail:{}", crypto::sha256_hex(email.as_bytes()))
}

fn locked(retry_after: i64) -> ApiError {
    ApiError::too_many("account_locked", "too many failed attempts: try again later", retry_after)
}

/// One reserved attempt. Call [`Attempt::succeeded`] when the credential was right; a dropped
/// attempt stays counted as a failure.
#[must_use = "an attempt counts as a failure unless it is marked as succeeded"]
pub struct Attempt {
    key: String,
    email: String,
    n: i64,
    threshold: i64,
}

/// Reserves an attempt for `email`; 429 `account_locked` once the threshold is used up.
pub async fn attempt(app: &App, email: &str) -> Result<Attempt, ApiError> {
    let cfg = &app.cfg.login;
    let key = key(email);
    let (n, ttl) = app.eph.incr_hold(&key, cfg.lockout_window_s, cfg.lockout_threshold, cfg.lockout_s).await?;
    if n > cfg.lockout_threshold {
        return Err(locked(ttl));
    }
    Ok(Attempt { key, email: email.to_string(), n, threshold: cfg.lockout_threshold })
}

impl Attempt {
    /// The credential was right: the attempt does not count.
    pub async fn succeeded(self, app: &App) -> Result<(), ApiError> {
        app.eph.decr(&self.key).await?;
        Ok(())
    }

    /// The credential was wrong (the count stays). An account's failures go to the audit log
    /// of its organisation, and the failure that locks it tells its owner (an address without
    /// an account leaves no event and gets no mail; the answer is the same).
    pub async fn failed(self, app: &App) {
        metrics::counter!("authgate_login_failures_total").increment(1);
        let locks = self.n == self.threshold;
        if locks {
            metrics::counter!("authgate_lockouts_total").increment(1);
            tracing::warn!(account_hash = &self.key[5..17], "account locked out after repeated failures");
        }
        let user = match crate::users::by_email(&app.db, &self.email).await {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(e) => return tracing::warn!(error = %e, "failed attempt not audited"),
        };
        let failure = Event::new(Action::LoginFailed, user.event_org(), Who::Anonymous)
            .target("user", &user.id)
            .data(serde_json::json!({ "failures": self.n, "threshold": self.threshold }));
        if let Err(e) = failure.write_alone(&app.db).await {
            tracing::warn!(error = %e, "failed attempt not audited");
        }
        if locks {
            let lock = Event::new(Action::AccountLocked, user.event_org(), Who::System)
                .target("user", &user.id)
                .data(serde_json::json!({ "lockout_s": app.cfg.login.lockout_s }));
            if let Err(e) = lock.write_alone(&app.db).await {
                tracing::warn!(error = %e, "lockout not audited");
            }
            if user.status == "active" {
                crate::notify::send(app, &user.email, crate::notify::Notice::Lockout);
            }
        }
    }
}

/// Refuses while the account is locked (for steps that check no credential themselves, such as
/// asking for an emailed code).
pub async fn check(app: &App, email: &str) -> Result<(), ApiError> {
    let (n, ttl) = app.eph.count(&key(email)).await?;
    if n >= app.cfg.login.lockout_threshold {
        return Err(locked(ttl));
    }
    Ok(())
}

/// Forgets the account's failures (a completed login, a password reset).
pub async fn clear(app: &App, email: &str) -> Result<(), ApiError> {
    app.eph.del(&key(email)).await?;
    Ok(())
}
