//! Decoding credentials without verifying them, for `authgate inspect` and debugging. Nothing
//! here says whether a credential is valid.

use serde_json::{json, Value};

use crate::apikey;
use crate::b64;

/// Decodes a JWT (header and claims) or an API key id (claims) without verifying anything.
pub fn decode_unverified(credential: &str) -> Result<Value, &'static str> {
    let credential = credential.trim();
    if credential.starts_with(apikey::KEY_ID_PREFIX) {
        let key_id = apikey::split_combined(credential).map_or(credential, |(k, _)| k);
        let claims = apikey::decode_key_id(key_id).map_err(|_| "not a valid agk_ API key id")?;
        return Ok(json!({"kind": "api_key", "verified": false, "claims": claims}));
    }
    let parts: Vec<&str> = credential.split('.').collect();
    if parts.len() != 3 {
        return Err("not a compact JWS (expected three dot-separated segments)");
    }
    let decode = |s: &str| -> Result<Value, &'static str> {
        let bytes = b64::decode(s.as_bytes()).ok_or("a segment is not strict base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "a segment is not JSON")
    };
    Ok(json!({
        "kind": "jwt",
        "verified": false,
        "header": decode(parts[0])?,
        "claims": decode(parts[1])?,
        "signature_bytes": b64::decode(parts[2].as_bytes()).map(|s| s.len()),
    }))
}
