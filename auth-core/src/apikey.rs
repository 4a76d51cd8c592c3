//! HMAC'd API keys (DESIGN.md "API key"): `key_id = "agk_" + base64url(JSON claims)`,
//! `secret = base64url(HMAC-SHA256(hmac_key[kid], key_id))`. Verifiable with no lookup; the
//! server never stores the secret. This module both verifies and (for the auth-server) mints.

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::error::ErrorCode;
use crate::jwt::{SegmentBuf, Text};
use crate::mac::HmacSha256;

/// Prefix of every key id.
pub const KEY_ID_PREFIX: &str = "agk_";
/// Current claims version.
pub const API_KEY_VERSION: u32 = 1;

/// The claims carried in a key id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyClaims {
    pub v: u32,
    /// Names the HMAC key of the ring that made the secret.
    pub kid: String,
    /// 128 random bits, hex or base64url; what revocation lists name.
    pub id: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iat: i64,
    /// No expiry when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// The claims of a key id as verification reads them: the same fields and rules as
/// [`ApiKeyClaims`], borrowed from the decoded JSON rather than copied.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyIdClaims<'a> {
    pub v: u32,
    #[serde(borrow)]
    pub kid: Text<'a>,
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub sub: Text<'a>,
    #[serde(default, borrow)]
    pub org: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub roles: Vec<Text<'a>>,
    pub iat: i64,
    #[serde(default)]
    pub exp: Option<i64>,
}

impl KeyIdClaims<'_> {
    pub(crate) fn to_owned(&self) -> ApiKeyClaims {
        ApiKeyClaims {
            v: self.v,
            kid: self.kid.to_string(),
            id: self.id.to_string(),
            sub: self.sub.to_string(),
            org: self.org.as_deref().map(str::to_string),
            roles: self.roles.iter().map(|r| r.to_string()).collect(),
            iat: self.iat,
            exp: self.exp,
        }
    }
}

/// Room for a key id's decoded claims (a usual key id is well under 512 bytes of JSON).
pub(crate) type KeyIdBuf = SegmentBuf<512>;

/// An HMAC key ring, keyed state precomputed per key.
#[derive(Clone, Default)]
pub struct HmacKeyRing {
    keys: Vec<(String, HmacSha256)>,
}

impl HmacKeyRing {
    /// Builds a ring from `(kid, raw key bytes)` pairs.
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> HmacKeyRing {
        let keys = keys.into_iter().map(|(kid, secret)| (kid.to_string(), HmacSha256::new(secret))).collect();
        HmacKeyRing { keys }
    }

    fn get(&self, kid: &str) -> Option<&HmacSha256> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, m)| m)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Mints a key: returns `(key_id, secret)`. Used by the auth-server and by tests.
    pub fn mint(&self, claims: &ApiKeyClaims) -> Option<(String, String)> {
        let mac = self.get(&claims.kid)?;
        let json = serde_json::to_vec(claims).ok()?;
        let key_id = format!("{KEY_ID_PREFIX}{}", b64::encode(&json));
        let secret = b64::encode(&mac.sign(key_id.as_bytes()));
        Some((key_id, secret))
    }

    /// Verifies a presented key id and secret; returns the authenticated claims, decoded into
    /// `buf`. Expiry and revocation are the caller's: they need the clock and the feed.
    pub(crate) fn verify<'b>(
        &self,
        key_id: &str,
        secret: &str,
        max_len: usize,
        buf: &'b mut KeyIdBuf,
    ) -> Result<KeyIdClaims<'b>, ErrorCode> {
        if key_id.len() > max_len || secret.len() > max_len {
            return Err(ErrorCode::ApiKeyMalformed);
        }
        let claims = read_key_id(key_id, buf)?;
        let mac = self.get(&claims.kid).ok_or(ErrorCode::ApiKeyUnknownKid)?;
        let presented = b64::decode_array::<32>(secret.as_bytes()).ok_or(ErrorCode::ApiKeyInvalid)?;
        // Constant-time comparison of the whole tag.
        if !mac.verify(key_id.as_bytes(), &presented) {
            return Err(ErrorCode::ApiKeyInvalid);
        }
        if claims.v != API_KEY_VERSION {
            return Err(ErrorCode::ApiKeyMalformed);
        }
        Ok(claims)
    }
}

/// Decodes the claims of a key id without authenticating them (`authgate inspect`).
pub fn decode_key_id(key_id: &str) -> Result<ApiKeyClaims, ErrorCode> {
    read_key_id(key_id, &mut KeyIdBuf::new()).map(|claims| claims.to_owned())
}

/// The claims a key id carries, decoded into `buf`, not yet authenticated.
fn read_key_id<'b>(key_id: &str, buf: &'b mut KeyIdBuf) -> Result<KeyIdClaims<'b>, ErrorCode> {
    let encoded = key_id.strip_prefix(KEY_ID_PREFIX).ok_or(ErrorCode::ApiKeyMalformed)?;
    let json = buf.decode(encoded).ok_or(ErrorCode::ApiKeyMalformed)?;
    crate::jwt::parse_json_object(json).ok_or(ErrorCode::ApiKeyMalformed)
}

/// Splits `authorization: ApiKey <key_id>.<secret>`'s credential. Key ids and secrets are
/// base64url, which has no `.`, so the split is unambiguous.
pub fn split_combined(credential: &str) -> Option<(&str, &str)> {
    let (key_id, secret) = credential.split_once('.')?;
    (!key_id.is_empty() && !secret.is_empty() && !secret.contains('.')).then_some((key_id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> HmacKeyRing {
        HmacKeyRing::new([("hk1", &[7u8; 32][..])])
    }

    fn claims() -> ApiKeyClaims {
        ApiKeyClaims {
            v: 1,
            kid: "hk1".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            sub: "user-1".into(),
            org: Some("org-1".into()),
            roles: vec!["reader".into()],
            iat: 1_700_000_000,
            exp: None,
        }
    }

    #[test]
    fn mint_then_verify() {
        let (id, secret) = ring().mint(&claims()).unwrap();
        assert!(id.starts_with("agk_"));
        assert_eq!(ring().verify(&id, &secret, 4096, &mut KeyIdBuf::new()).unwrap().to_owned(), claims());
        let combined = format!("{id}.{secret}");
        let (a, b) = split_combined(&combined).unwrap();
        assert_eq!((a, b), (id.as_str(), secret.as_str()));
    }

    #[test]
    fn escalation_and_forgery_fail() {
        let (_, secret) = ring().mint(&claims()).unwrap();
        let mut escalated = claims();
        escalated.roles.push("admin".into());
        let forged_id = format!("agk_{}", b64::encode(&serde_json::to_vec(&escalated).unwrap()));
        assert_eq!(ring().verify(&forged_id, &secret, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyInvalid));
        let other = HmacKeyRing::new([("hk1", &[8u8; 32][..])]);
        let (id2, secret2) = other.mint(&claims()).unwrap();
        assert_eq!(ring().verify(&id2, &secret2, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyInvalid));
        let mut unknown = claims();
        unknown.kid = "hk9".into();
        let (id3, secret3) = other_ring_with("hk9").mint(&unknown).unwrap();
        assert_eq!(ring().verify(&id3, &secret3, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyUnknownKid));
        assert_eq!(ring().verify("nope", "x", 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyMalformed));
    }

    /// Claims written as an array of the fields in order, with a correct MAC (whoever holds the
    /// HMAC key could mint one): malformed, never read field by field.
    #[test]
    fn claims_as_an_array_are_malformed_even_when_authentic() {
        let c = claims();
        let fields = serde_json::json!([c.v, c.kid, c.id, c.sub, c.org, ["admin"], c.iat, c.exp]);
        for json in [fields.to_string(), format!(" {fields}")] {
            let key_id = format!("{KEY_ID_PREFIX}{}", b64::encode(json.as_bytes()));
            let secret = b64::encode(&ring().get("hk1").unwrap().sign(key_id.as_bytes()));
            assert_eq!(ring().verify(&key_id, &secret, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyMalformed));
            assert_eq!(decode_key_id(&key_id), Err(ErrorCode::ApiKeyMalformed));
        }
        // The same claims as an object, with whitespace before it, still verify.
        let json = format!(" {}", serde_json::to_string(&c).unwrap());
        let key_id = format!("{KEY_ID_PREFIX}{}", b64::encode(json.as_bytes()));
        let secret = b64::encode(&ring().get("hk1").unwrap().sign(key_id.as_bytes()));
        assert_eq!(ring().verify(&key_id, &secret, 4096, &mut KeyIdBuf::new()).unwrap().to_owned(), c);
    }

    fn other_ring_with(kid: &str) -> HmacKeyRing {
        HmacKeyRing::new([(kid, &[9u8; 32][..])])
    }

    /// The length bound holds for the key id and the secret alike, exactly at `max_len`.
    #[test]
    fn length_bounds_are_exact_and_apply_to_both_parts() {
        let (id, secret) = ring().mint(&claims()).unwrap();
        let longest = id.len().max(secret.len());
        assert!(ring().verify(&id, &secret, longest, &mut KeyIdBuf::new()).map(|c| c.to_owned()).is_ok(), "at the bound");
        assert_eq!(
            ring().verify(&id, &secret, id.len() - 1, &mut KeyIdBuf::new()).map(|c| c.to_owned()),
            Err(ErrorCode::ApiKeyMalformed),
            "key id one over"
        );
        // A secret longer than the key id: over the bound while the key id is within it (a
        // secret that long is refused as malformed before any decoding).
        let long_secret = format!("{secret}{}", "A".repeat(id.len()));
        assert_eq!(
            ring().verify(&id, &long_secret, id.len(), &mut KeyIdBuf::new()).map(|c| c.to_owned()),
            Err(ErrorCode::ApiKeyMalformed),
            "secret over, key id within"
        );
        // A secret exactly at the bound passes the length check (and then fails as the tag it is not).
        let at_bound = format!("{secret}{}", "A".repeat(id.len() - secret.len()));
        assert_eq!(at_bound.len(), id.len());
        assert_eq!(
            ring().verify(&id, &at_bound, id.len(), &mut KeyIdBuf::new()).map(|c| c.to_owned()),
            Err(ErrorCode::ApiKeyInvalid),
            "secret at the bound"
        );
    }

    #[test]
    fn a_ring_is_empty_only_without_keys() {
        assert!(HmacKeyRing::default().is_empty());
        assert!(HmacKeyRing::new([]).is_empty());
        assert!(!ring().is_empty());
    }

    #[test]
    fn a_valid_mac_over_another_version_is_refused() {
        let mut v2 = claims();
        v2.v = 2;
        let (id, secret) = ring().mint(&v2).unwrap();
        assert_eq!(ring().verify(&id, &secret, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyMalformed));
    }

    #[test]
    fn secrets_of_the_wrong_size_or_encoding_are_invalid() {
        let (id, secret) = ring().mint(&claims()).unwrap();
        for bad in
            [&secret[..secret.len() - 1], &format!("{secret}A"), "", "!!!!", &secret.replace(|c: char| c.is_ascii_alphanumeric(), "+")]
        {
            assert_eq!(ring().verify(&id, bad, 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyInvalid), "{bad:?}");
        }
        // One bit off in the tag.
        let mut tag = b64::decode(secret.as_bytes()).unwrap();
        tag[31] ^= 1;
        assert_eq!(ring().verify(&id, &b64::encode(&tag), 4096, &mut KeyIdBuf::new()).map(|c| c.to_owned()), Err(ErrorCode::ApiKeyInvalid));
    }

    #[test]
    fn key_ids_decode_only_with_prefix_encoding_and_json() {
        let (id, _) = ring().mint(&claims()).unwrap();
        assert_eq!(decode_key_id(&id), Ok(claims()));
        for bad in [&id[4..], "agk_", "agk_!!", "AGK_e30", &format!("agk_{}", b64::encode(b"[1]")), &format!("agk_{}", b64::encode(b"{}"))]
        {
            assert_eq!(decode_key_id(bad), Err(ErrorCode::ApiKeyMalformed), "{bad:?}");
        }
    }

    #[test]
    fn the_combined_form_splits_once_into_two_non_empty_parts() {
        assert_eq!(split_combined("agk_x.sec"), Some(("agk_x", "sec")));
        for bad in ["agk_xsec", ".sec", "agk_x.", ".", "agk_x.s.c", "a..b", ""] {
            assert_eq!(split_combined(bad), None, "{bad:?}");
        }
    }
}
