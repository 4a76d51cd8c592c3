//! Emailed one-time codes: random digits, stored only as an HMAC (peppered with a key derived
//! from the master key) under a random verification id, single use (atomic take), short-lived,
//! and attempt-limited.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::crypto;
use crate::db::now;
use crate::error::ApiError;

#[derive(Serialize, Deserialize)]
pub struct CodeEntry {
    pub purpose: String,
    /// What the code proves something about (user id, API key id); empty for decoys.
    pub subject: String,
    hash: String,
    pub exp: i64,
}

fn code_hash(app: &App, vid: &str, code: &str) -> String {
    hex::encode(crypto::hmac_sha256(&app.master.code_pepper[..], format!("{vid}:{code}").as_bytes()))
}

/// Creates a code. `email` = (address, subject line, text with `{code}`); `None` makes a decoy
/// (same shape, never sent) for accounts that do not exist.
pub async fn issue(app: &App, purpose: &str, subject: &str, email: Option<(&str, &str, &str)>) -> Result<(String, i64), ApiError> {
    let vid = crypto::new_id("ver");
    let code = crypto::numeric_code(app.cfg.codes.digits);
    let ttl = app.cfg.codes.ttl_s;
    let entry = CodeEntry { purpose: purpose.into(), subject: subject.into(), hash: code_hash(app, &vid, &code), exp: now() + ttl };
    app.eph.put(&format!("code:{vid}"), &serde_json::to_string(&entry).expect("serializes"), ttl).await?;
    if let Some((to, subject_line, text)) = email {
        let body = text.replace("{code}", &code).replace("{minutes}", &(ttl / 60).max(1).to_string());
        app.mailer.send(to, subject_line, body);
    }
    Ok((vid, ttl))
}

/// Checks a code; on success it is consumed. Wrong, expired, used, or for another purpose: all
/// the same `invalid_code`, with `status`.
pub async fn verify(app: &App, vid: &str, code: &str, purpose: &str, status: StatusCode) -> Result<CodeEntry, ApiError> {
    let invalid = || ApiError::new(status, "invalid_code", "the code is invalid or has expired");
    if vid.len() > 100 || code.len() > 20 || !vid.starts_with("ver_") {
        return Err(invalid());
    }
    let key = format!("code:{vid}");
    let Some(raw) = app.eph.get(&key).await? else { return Err(invalid()) };
    let entry: CodeEntry = serde_json::from_str(&raw).map_err(|e| ApiError::internal(format!("code entry: {e}")))?;
    if entry.purpose != purpose || entry.exp <= now() {
        return Err(invalid());
    }
    let (attempts, _) = app.eph.incr(&format!("codeatt:{vid}"), app.cfg.codes.ttl_s).await?;
    if attempts > app.cfg.codes.max_attempts {
        app.eph.del(&key).await?;
        return Err(ApiError::new(status, "code_attempts_exceeded", "too many wrong attempts: request a new code"));
    }
    let presented = code_hash(app, vid, code.trim());
    if !crypto::ct_eq(presented.as_bytes(), entry.hash.as_bytes()) {
        return Err(invalid());
    }
    // Single use: of concurrent correct attempts exactly one takes the entry.
    match app.eph.take(&key).await? {
        Some(_) => Ok(entry),
        None => Err(invalid()),
    }
}
