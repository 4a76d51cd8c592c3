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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{insert_user, outbox_mails, test_app_with};

    async fn locked_out(app: &App, email: &str) -> bool {
        check(app, email).await.is_err()
    }

    async fn audited(app: &App, action: &str, user: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = $1 AND target_id = $2")
            .bind(action)
            .bind(user)
            .fetch_one(&app.db)
            .await
            .unwrap()
    }

    /// Exactly `lockout_threshold` failures are allowed; the attempt after them is refused with
    /// a retry-after of the lockout, and `check` agrees from the last failure on. The lockout
    /// is per account.
    #[tokio::test]
    async fn the_threshold_is_exact_and_per_account() {
        let (app, dir) = test_app_with(|c| {
            c.login.lockout_threshold = 3;
            c.login.lockout_s = 600;
        })
        .await;
        for n in 1..=3 {
            assert!(!locked_out(&app, "a@x.test").await, "before failure {n}");
            attempt(&app, "a@x.test").await.unwrap_or_else(|e| panic!("attempt {n}: {}", e.code)).failed(&app).await;
        }
        assert!(locked_out(&app, "a@x.test").await, "locked at the threshold");
        let e = attempt(&app, "a@x.test").await.err().expect("the attempt past the threshold");
        assert_eq!((e.status.as_u16(), e.code), (429, "account_locked"));
        assert!(e.retry_after.is_some_and(|s| s > 500 && s <= 600), "{:?}", e.retry_after);
        assert!(!locked_out(&app, "b@x.test").await, "another account");
        attempt(&app, "b@x.test").await.unwrap().failed(&app).await;
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A right credential takes its attempt back: any number of successes between failures
    /// never lock; a dropped attempt counts as a failure; `clear` forgets every failure.
    #[tokio::test]
    async fn successes_give_their_attempt_back_and_clear_forgets() {
        let (app, dir) = test_app_with(|c| c.login.lockout_threshold = 2).await;
        attempt(&app, "a@x.test").await.unwrap().failed(&app).await;
        for _ in 0..5 {
            attempt(&app, "a@x.test").await.unwrap().succeeded(&app).await.unwrap();
        }
        assert!(!locked_out(&app, "a@x.test").await, "one failure and five successes");
        drop(attempt(&app, "a@x.test").await.unwrap());
        assert!(locked_out(&app, "a@x.test").await, "a dropped attempt is a failure");
        clear(&app, "a@x.test").await.unwrap();
        assert!(!locked_out(&app, "a@x.test").await);
        attempt(&app, "a@x.test").await.unwrap().failed(&app).await;
        assert!(!locked_out(&app, "a@x.test").await, "counting starts again from zero");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An account's failures are audited, one event each with the count, and the failure that
    /// locks it once more as `login.locked`; an address without an account leaves nothing.
    #[tokio::test]
    async fn failures_and_the_lockout_are_audited_for_accounts_only() {
        let (app, dir) = test_app_with(|c| c.login.lockout_threshold = 2).await;
        let user = insert_user(&app, "usr_lock", "lock@x.test").await;
        attempt(&app, "lock@x.test").await.unwrap().failed(&app).await;
        assert_eq!((audited(&app, "login.failed", &user.id).await, audited(&app, "login.locked", &user.id).await), (1, 0));
        attempt(&app, "lock@x.test").await.unwrap().failed(&app).await;
        assert_eq!((audited(&app, "login.failed", &user.id).await, audited(&app, "login.locked", &user.id).await), (2, 1));
        let data: String =
            sqlx::query_scalar("SELECT data FROM audit_events WHERE action = 'login.failed' AND target_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(&user.id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&data).unwrap(), serde_json::json!({"failures": 2, "threshold": 2}));
        attempt(&app, "nobody@x.test").await.unwrap().failed(&app).await;
        let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action IN ('login.failed', 'login.locked')")
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(all, 3);
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The failure that locks an active account tells its owner by email; a suspended
    /// account's owner is not written to.
    #[tokio::test]
    async fn the_locking_failure_mails_active_owners_only() {
        let (app, dir) = test_app_with(|c| c.login.lockout_threshold = 1).await;
        insert_user(&app, "usr_active", "active@x.test").await;
        insert_user(&app, "usr_off", "off@x.test").await;
        sqlx::query("UPDATE users SET status = 'suspended' WHERE id = 'usr_off'").execute(&app.db).await.unwrap();
        attempt(&app, "off@x.test").await.unwrap().failed(&app).await;
        attempt(&app, "active@x.test").await.unwrap().failed(&app).await;
        outbox_mails(&app).await;
        // The queue is drained in order: the suspended account's mail would be there first.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mails = outbox_mails(&app).await;
        assert_eq!(mails.len(), 1, "{mails:?}");
        assert!(mails[0].contains("active@x.test") && !mails[0].contains("off@x.test"));
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }
}
