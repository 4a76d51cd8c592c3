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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_and_key_ids_decode_without_verifying() {
        let jwt =
            format!("{}.{}.{}", b64::encode(br#"{"alg":"EdDSA","kid":"k1"}"#), b64::encode(br#"{"sub":"u1"}"#), b64::encode(&[0; 64]));
        let v = decode_unverified(&format!("  {jwt}\n")).unwrap();
        assert_eq!(
            v,
            json!({"kind": "jwt", "verified": false, "header": {"alg": "EdDSA", "kid": "k1"}, "claims": {"sub": "u1"}, "signature_bytes": 64})
        );
        let ring = apikey::HmacKeyRing::new([("hk1", &[5u8; 32][..])]);
        let claims = apikey::ApiKeyClaims {
            v: 1,
            kid: "hk1".into(),
            id: "key-1".into(),
            sub: "u1".into(),
            org: None,
            roles: vec![],
            iat: 1,
            exp: None,
        };
        let (key_id, secret) = ring.mint(&claims).unwrap();
        for form in [key_id.clone(), format!("{key_id}.{secret}")] {
            let v = decode_unverified(&form).unwrap();
            assert_eq!(
                (v["kind"].as_str(), v["verified"].as_bool(), v["claims"]["id"].as_str()),
                (Some("api_key"), Some(false), Some("key-1"))
            );
        }
        assert_eq!(decode_unverified("a.b"), Err("not a compact JWS (expected three dot-separated segments)"));
        assert_eq!(decode_unverified("a.b.c.d"), Err("not a compact JWS (expected three dot-separated segments)"));
        assert_eq!(decode_unverified("a+.b.c"), Err("a segment is not strict base64url"));
        assert_eq!(decode_unverified(&format!("{}.e30.", b64::encode(b"nope"))), Err("a segment is not JSON"));
        assert_eq!(decode_unverified("agk_%%%"), Err("not a valid agk_ API key id"));
    }
}
