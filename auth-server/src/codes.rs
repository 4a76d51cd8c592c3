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
