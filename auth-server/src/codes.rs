//! Emailed one-time codes: random digits, stored only as an HMAC (peppered with a key derived
//! from the master key) under a random verification id, single use (atomic take), short-lived,
//! attempt-limited per code, counted towards the account's lockout across codes, and capped per
//! account (`codes.issue_limit` emailed secrets per `codes.issue_window_s`).

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::crypto;
use crate::db::now;
use crate::error::ApiError;
use crate::lockout;

#[derive(Serialize, Deserialize)]
pub struct CodeEntry {
    pub purpose: String,
    /// What the code proves something about (user id, API-key request id, the email of a
    /// pending sign-up); empty for decoys.
    pub subject: String,
    /// The account (normalised email) whose lockout wrong codes count towards.
    pub account: String,
    hash: String,
    pub exp: i64,
    /// What the verified code applies (a pending sign-up's password hash and organisation).
    #[serde(default)]
    pub data: Option<String>,
}

fn code_hash(app: &App, vid: &str, code: &str) -> String {
    hex::encode(crypto::hmac_sha256(&app.master.code_pepper[..], format!("{vid}:{code}").as_bytes()))
}

/// A code to create.
pub struct NewCode<'a> {
    pub purpose: &'a str,
    /// The normalised email: the code is sent there, and it counts towards that account's cap.
    pub account: &'a str,
    pub subject: &'a str,
    pub data: Option<String>,
    /// `(subject line, text)`; `{code}` and `{minutes}` in the text are filled in. `None` makes a
    /// decoy (same work, nothing sent) for accounts that do not exist.
    pub mail: Option<(&'a str, &'a str)>,
}

/// Counts one emailed secret (a code, a reset link, a decoy of either) towards the account's
/// cap: 429 `too_many_codes` beyond it, and then nothing is stored or sent.
pub async fn count_issued(app: &App, account: &str) -> Result<(), ApiError> {
    let (n, ttl) = app.eph.incr(&format!("issued:{}", crypto::sha256_hex(account.as_bytes())), app.cfg.codes.issue_window_s).await?;
    if n > app.cfg.codes.issue_limit {
        metrics::counter!("authgate_rate_limited_total", "scope" => "codes").increment(1);
        return Err(ApiError::too_many("too_many_codes", "too many codes were sent to this address: wait before asking for another", ttl));
    }
    Ok(())
}

/// Creates a code (and emails it); returns `(verification id, lifetime)`.
pub async fn issue(app: &App, new: NewCode<'_>) -> Result<(String, i64), ApiError> {
    count_issued(app, new.account).await?;
    let vid = crypto::new_id("ver");
    let code = crypto::numeric_code(app.cfg.codes.digits);
    let ttl = app.cfg.codes.ttl_s;
    let entry = CodeEntry {
        purpose: new.purpose.into(),
        subject: new.subject.into(),
        account: new.account.into(),
        hash: code_hash(app, &vid, &code),
        exp: now() + ttl,
        data: new.data,
    };
    app.eph.put(&format!("code:{vid}"), &serde_json::to_string(&entry).expect("serializes"), ttl).await?;
    if let Some((subject_line, text)) = new.mail {
        let body = text.replace("{code}", &code).replace("{minutes}", &(ttl / 60).max(1).to_string());
        app.mailer.send(new.account, subject_line, body);
    }
    Ok((vid, ttl))
}

/// Reads a live entry without using it (to issue a new code for the same pending operation).
pub async fn peek(app: &App, vid: &str, purpose: &str) -> Result<Option<CodeEntry>, ApiError> {
    if vid.len() > 100 || !vid.starts_with("ver_") {
        return Ok(None);
    }
    let Some(raw) = app.eph.get(&format!("code:{vid}")).await? else { return Ok(None) };
    let entry: CodeEntry = serde_json::from_str(&raw).map_err(|e| ApiError::internal(format!("code entry: {e}")))?;
    Ok((entry.purpose == purpose && entry.exp > now()).then_some(entry))
}

/// Checks a code; on success it is consumed. Wrong, expired, used, or for another purpose: all
/// the same `invalid_code`, with `status`. A wrong code counts against the code (burnt after
/// `codes.max_attempts`) and against its account's lockout, whichever code it was.
pub async fn verify(app: &App, vid: &str, code: &str, purpose: &str, status: StatusCode) -> Result<CodeEntry, ApiError> {
    let invalid = || ApiError::new(status, "invalid_code", "the code is invalid or has expired");
    if code.len() > 20 {
        return Err(invalid());
    }
    let Some(entry) = peek(app, vid, purpose).await? else { return Err(invalid()) };
    let key = format!("code:{vid}");
    let (attempts, _) = app.eph.incr(&format!("codeatt:{vid}"), app.cfg.codes.ttl_s).await?;
    if attempts > app.cfg.codes.max_attempts {
        app.eph.del(&key).await?;
        return Err(ApiError::new(status, "code_attempts_exceeded", "too many wrong attempts: request a new code"));
    }
    let attempt = lockout::attempt(app, &entry.account).await?;
    let presented = code_hash(app, vid, code.trim());
    if !crypto::ct_eq(presented.as_bytes(), entry.hash.as_bytes()) {
        attempt.failed(&app).await;
        return Err(invalid());
    }
    // Single use: of concurrent correct attempts exactly one takes the entry.
    match app.eph.take(&key).await? {
        Some(_) => {
            attempt.succeeded(app).await?;
            Ok(entry)
        }
        None => {
            attempt.succeeded(app).await?;
            Err(invalid())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{outbox_mails, test_app_with};

    /// Stores a code as `issue` does, with a code the test knows.
    async fn put_code(app: &App, vid: &str, code: &str, purpose: &str, account: &str, exp: i64) {
        let entry = CodeEntry {
            purpose: purpose.into(),
            subject: "usr_1".into(),
            account: account.into(),
            hash: code_hash(app, vid, code),
            exp,
            data: Some("payload".into()),
        };
        app.eph.put(&format!("code:{vid}"), &serde_json::to_string(&entry).unwrap(), 600).await.unwrap();
    }

    async fn try_code(app: &App, vid: &str, code: &str, purpose: &str) -> Result<CodeEntry, &'static str> {
        verify(app, vid, code, purpose, StatusCode::UNAUTHORIZED).await.map_err(|e| e.code)
    }

    #[tokio::test]
    async fn a_right_code_is_taken_once_and_only_for_its_purpose() {
        let (app, dir) = test_app_with(|_| {}).await;
        put_code(&app, "ver_a", "123456", "login", "a@x.test", now() + 300).await;
        assert_eq!(try_code(&app, "ver_a", "123456", "reset").await.err(), Some("invalid_code"), "another purpose");
        let entry = try_code(&app, "ver_a", " 123456\n", "login").await.expect("right code, whitespace trimmed");
        assert_eq!((entry.subject.as_str(), entry.account.as_str(), entry.data.as_deref()), ("usr_1", "a@x.test", Some("payload")));
        assert_eq!(try_code(&app, "ver_a", "123456", "login").await.err(), Some("invalid_code"), "single use");
        assert!(peek(&app, "ver_a", "login").await.unwrap().is_none());
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn expired_malformed_and_oversized_are_invalid_without_counting() {
        let (app, dir) = test_app_with(|c| c.codes.max_attempts = 1).await;
        put_code(&app, "ver_old", "111111", "login", "a@x.test", now()).await;
        assert_eq!(try_code(&app, "ver_old", "111111", "login").await.err(), Some("invalid_code"), "at its exp");
        put_code(&app, "ver_b", "222222", "login", "a@x.test", now() + 300).await;
        // Refused before anything is counted: these do not use the code's one attempt.
        assert_eq!(try_code(&app, "ver_b", &format!("{:<21}", "222222"), "login").await.err(), Some("invalid_code"), "over 20 characters");
        let long_vid = format!("ver_{}", "b".repeat(97));
        put_code(&app, &long_vid, "222222", "login", "a@x.test", now() + 300).await;
        assert_eq!(try_code(&app, &long_vid, "222222", "login").await.err(), Some("invalid_code"), "a 101-character id");
        put_code(&app, "xver_c", "333333", "login", "a@x.test", now() + 300).await;
        assert_eq!(try_code(&app, "xver_c", "333333", "login").await.err(), Some("invalid_code"), "an id not starting ver_");
        assert!(try_code(&app, "ver_b", "222222", "login").await.is_ok(), "the code's attempt was still there");
        let at_limit = format!("ver_{}", "d".repeat(96));
        put_code(&app, &at_limit, "444444", "login", "a@x.test", now() + 300).await;
        assert!(try_code(&app, &at_limit, &format!("{:<20}", "444444"), "login").await.is_ok(), "a 100-character id, a 20-character code");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `max_attempts` wrong codes are allowed; the attempt after them burns the code (the right
    /// code no longer works).
    #[tokio::test]
    async fn a_code_is_burnt_after_max_attempts() {
        let (app, dir) = test_app_with(|c| c.codes.max_attempts = 3).await;
        put_code(&app, "ver_a", "123456", "login", "a@x.test", now() + 300).await;
        for _ in 0..2 {
            assert_eq!(try_code(&app, "ver_a", "000000", "login").await.err(), Some("invalid_code"));
        }
        assert!(try_code(&app, "ver_a", "123456", "login").await.is_ok(), "the third attempt is within the limit");
        put_code(&app, "ver_b", "123456", "login", "b@x.test", now() + 300).await;
        for _ in 0..3 {
            assert_eq!(try_code(&app, "ver_b", "000000", "login").await.err(), Some("invalid_code"));
        }
        assert_eq!(try_code(&app, "ver_b", "123456", "login").await.err(), Some("code_attempts_exceeded"));
        assert_eq!(try_code(&app, "ver_b", "123456", "login").await.err(), Some("invalid_code"), "burnt");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Wrong codes count towards the account's lockout whichever code they were for; a locked
    /// account's right code is refused; a right code gives its attempt back.
    #[tokio::test]
    async fn wrong_codes_lock_the_account_across_codes() {
        let (app, dir) = test_app_with(|c| {
            c.login.lockout_threshold = 2;
            c.codes.max_attempts = 10;
        })
        .await;
        put_code(&app, "ver_a", "123456", "login", "a@x.test", now() + 300).await;
        put_code(&app, "ver_b", "654321", "login", "a@x.test", now() + 300).await;
        assert_eq!(try_code(&app, "ver_a", "000000", "login").await.err(), Some("invalid_code"));
        assert!(lockout::check(&app, "a@x.test").await.is_ok());
        assert_eq!(try_code(&app, "ver_b", "000000", "login").await.err(), Some("invalid_code"));
        assert!(lockout::check(&app, "a@x.test").await.is_err(), "two wrong codes, two different codes");
        assert_eq!(try_code(&app, "ver_b", "654321", "login").await.err(), Some("account_locked"));
        lockout::clear(&app, "a@x.test").await.unwrap();
        assert_eq!(try_code(&app, "ver_a", "000000", "login").await.err(), Some("invalid_code"));
        assert!(try_code(&app, "ver_b", "654321", "login").await.is_ok());
        assert!(lockout::check(&app, "a@x.test").await.is_ok(), "the right code's attempt was given back");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `issue_limit` secrets per window per address; the one past it is 429 `too_many_codes` and
    /// stores nothing. An issued code is stored under its id for its purpose and lifetime.
    #[tokio::test]
    async fn issuing_is_capped_per_address() {
        let (app, dir) = test_app_with(|c| c.codes.issue_limit = 2).await;
        let new = |account| NewCode { purpose: "login", account, subject: "usr_1", data: None, mail: None };
        let (vid, ttl) = issue(&app, new("a@x.test")).await.unwrap();
        assert_eq!(ttl, app.cfg.codes.ttl_s);
        let entry = peek(&app, &vid, "login").await.unwrap().expect("stored");
        assert_eq!((entry.account.as_str(), entry.subject.as_str()), ("a@x.test", "usr_1"));
        assert!(entry.exp > now() && entry.exp <= now() + ttl);
        assert!(peek(&app, &vid, "reset").await.unwrap().is_none());
        issue(&app, new("a@x.test")).await.unwrap();
        let e = issue(&app, new("a@x.test")).await.expect_err("past the cap");
        assert_eq!((e.status.as_u16(), e.code), (429, "too_many_codes"));
        assert!(e.retry_after.is_some());
        assert!(issue(&app, new("b@x.test")).await.is_ok(), "another address");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The email carries the code and its lifetime in whole minutes.
    #[tokio::test]
    async fn the_mail_says_the_code_and_its_minutes() {
        let (app, dir) = test_app_with(|c| c.codes.ttl_s = 600).await;
        let mail = Some(("Your code", "Code {code}, valid for {minutes} minutes."));
        issue(&app, NewCode { purpose: "login", account: "a@x.test", subject: "usr_1", data: None, mail }).await.unwrap();
        let text = outbox_mails(&app).await.concat();
        assert!(text.contains("valid for 10 minutes."), "{text}");
        let code = text.split("Code ").nth(1).and_then(|r| r.split(',').next()).unwrap_or_default();
        assert!(code.len() == app.cfg.codes.digits as usize && code.bytes().all(|b| b.is_ascii_digit()), "{code:?}");
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }
}
