//! Compact JWS parsing and JWT claim types. Parsing is strict: exactly three segments, strict
//! base64url, JSON objects, known algorithm names only, no critical extensions. Header fields
//! that point at keys (`jwk`, `jku`, `x5u`, `x5c`) are never read: keys come only from config.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::b64;
use crate::config::Alg;
use crate::error::ErrorCode;
use crate::keys::MAX_KID_LEN;

/// The JOSE header fields authgate looks at, borrowed from the decoded header where possible.
#[derive(Debug, Deserialize)]
pub(crate) struct Header<'a> {
    #[serde(borrow)]
    pub alg: Cow<'a, str>,
    #[serde(default, borrow)]
    pub kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub typ: Option<Cow<'a, str>>,
    #[serde(default)]
    pub crit: Option<serde::de::IgnoredAny>,
}

/// A compact JWS split into its parts, header decoded, signature decoded, payload still encoded.
pub(crate) struct Jws<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'t str,
    pub payload_b64: &'t str,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. Order of checks decides the error code for tokens that are
/// wrong in several ways; it follows the order a reader would notice them.
pub(crate) fn parse_jws(token: &str, max_len: usize) -> Result<Jws<'_>, ErrorCode> {
    if token.len() > max_len {
        return Err(ErrorCode::TokenTooLarge);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ErrorCode::TokenMalformed);
    };
    let header_bytes = b64::decode(header_b64.as_bytes()).ok_or(ErrorCode::TokenMalformed)?;
    if first_non_space(&header_bytes) != Some(b'{') {
        return Err(ErrorCode::TokenMalformed);
    }
    let header: Header = parse_json_text(&header_bytes).ok_or(ErrorCode::TokenMalformed)?;
    // "none" in any spelling, and every algorithm we do not implement.
    let alg = Alg::from_jose(&header.alg).ok_or(ErrorCode::AlgNotAllowed)?;
    if header.crit.is_some() {
        return Err(ErrorCode::CritUnsupported);
    }
    if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
        return Err(ErrorCode::TokenMalformed);
    }
    let signature = b64::decode(signature_b64.as_bytes()).ok_or(ErrorCode::TokenMalformed)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Jws { alg, kid: header.kid.map(Cow::into_owned), typ: header.typ.map(Cow::into_owned), signing_input, payload_b64, signature })
}

/// Decodes a JSON object payload into `T`: bad encoding or a non-object is `malformed`, a
/// well-formed object with wrong or duplicate claims is `invalid`.
pub(crate) fn decode_payload<T: for<'de> Deserialize<'de>>(
    payload_b64: &str,
    malformed: ErrorCode,
    invalid: ErrorCode,
) -> Result<T, ErrorCode> {
    let bytes = b64::decode(payload_b64.as_bytes()).ok_or(malformed)?;
    if first_non_space(&bytes) != Some(b'{') {
        return Err(malformed);
    }
    serde_json::from_str(json_text(&bytes).ok_or(malformed)?).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid,
        _ => malformed,
    })
}

/// The decoded segment as text: JSON is UTF-8, and validating it once here spares serde_json
/// validating each string on its own (a tenth of an HS256 decision's instructions).
fn json_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// `bytes` as JSON text parsed into `T`; `None` for bytes that are not UTF-8 or not a `T`.
pub(crate) fn parse_json_text<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    serde_json::from_str(json_text(bytes)?).ok()
}

fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The claims of an access token (RFC 9068 profile plus authgate's own).
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(a) => accepted.iter().any(|x| x == a),
            Audience::Many(list) => list.iter().any(|a| accepted.iter().any(|x| x == a)),
        }
    }
}

/// NumericDate: a JSON number of seconds (fractions allowed and truncated). Strings, booleans,
/// NaN and values outside ±2^53 are refused.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    let n = serde_json::Number::deserialize(d)?;
    let value = if let Some(i) = n.as_i64() {
        i as f64
    } else if let Some(u) = n.as_u64() {
        u as f64
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    };
    if !value.is_finite() || value.abs() > LIMIT {
        return Err(serde::de::Error::custom("NumericDate out of range"));
    }
    Ok(Some(value.floor() as i64))
}

/// `typ` values compare case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9).
pub(crate) fn typ_matches(typ: &str, accepted: &str) -> bool {
    fn bare(s: &str) -> &str {
        // `get` rather than indexing: byte 12 need not be a char boundary (found by fuzzing).
        match (s.get(..12), s.get(12..)) {
            (Some(prefix), Some(rest)) if !rest.is_empty() && prefix.eq_ignore_ascii_case("application/") => rest,
            _ => s,
        }
    }
    bare(typ).eq_ignore_ascii_case(bare(accepted))
}

/// The `typ` of the revocation feed; never accepted as a credential.
pub const FEED_TYP: &str = "revocations+jwt";

/// True if the value can go into an HTTP header unchanged: no control characters.
pub(crate) fn header_safe(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && !value.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// A role or scope name: visible ASCII, no comma (roles are comma-joined upstream) or space.
pub(crate) fn token_safe(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("application/", "at+jwt"));
        // Multi-byte characters around byte 12 must not panic.
        assert!(!typ_matches("revocations\u{62a}jwt", "at+jwt"));
        assert!(!typ_matches("ééééééé", "revocations+jwt"));
    }

    #[test]
    fn numeric_dates() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "numeric_date")]
            exp: Option<i64>,
        }
        let p = |s: &str| serde_json::from_str::<T>(s).map(|t| t.exp);
        assert_eq!(p(r#"{"exp": 10}"#).unwrap(), Some(10));
        assert_eq!(p(r#"{"exp": 10.9}"#).unwrap(), Some(10));
        assert_eq!(p(r#"{}"#).unwrap(), None);
        assert!(p(r#"{"exp": "10"}"#).is_err());
        assert!(p(r#"{"exp": 1e300}"#).is_err());
        assert_eq!(p(r#"{"exp": 9007199254740992}"#).unwrap(), Some(1 << 53), "2^53 is the largest taken");
        assert_eq!(p(r#"{"exp": -9007199254740992}"#).unwrap(), Some(-(1 << 53)));
        assert!(p(r#"{"exp": 9007199254740994}"#).is_err());
        assert!(p(r#"{"exp": 9007199254740993.5}"#).is_err());
        assert!(p(r#"{"exp": null}"#).is_err());
    }

    #[test]
    fn parse_rejects_shapes() {
        assert_eq!(parse_jws("a.b", 100).err(), Some(ErrorCode::TokenMalformed));
        assert_eq!(parse_jws("a.b.c.d", 100).err(), Some(ErrorCode::TokenMalformed));
        assert_eq!(parse_jws(&"a".repeat(101), 100).err(), Some(ErrorCode::TokenTooLarge));
        let none = format!("{}.{}.", b64::encode(br#"{"alg":"none"}"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&none, 1000).err(), Some(ErrorCode::AlgNotAllowed));
        let crit = format!("{}.{}.", b64::encode(br#"{"alg":"EdDSA","crit":["b64"]}"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&crit, 1000).err(), Some(ErrorCode::CritUnsupported));
        let arr = format!("{}.{}.", b64::encode(br#"["alg"]"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&arr, 1000).err(), Some(ErrorCode::TokenMalformed));
        let latin1 = format!("{}.{}.", b64::encode(b"{\"alg\":\"EdDSA\",\"kid\":\"k\xe9\"}"), b64::encode(b"{}"));
        assert_eq!(parse_jws(&latin1, 1000).err(), Some(ErrorCode::TokenMalformed), "a header that is not UTF-8");
        let with_kid = |n: usize| {
            format!("{}.{}.", b64::encode(format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, "k".repeat(n)).as_bytes()), b64::encode(b"{}"))
        };
        assert_eq!(parse_jws(&with_kid(MAX_KID_LEN), 4000).map(|j| j.kid.map(|k| k.len())), Ok(Some(256)));
        assert_eq!(parse_jws(&with_kid(MAX_KID_LEN + 1), 4000).err(), Some(ErrorCode::TokenMalformed));
    }

    #[test]
    fn header_values_are_one_to_1024_bytes_without_controls() {
        assert!(header_safe("a") && header_safe(&"a".repeat(1024)) && header_safe("usr é ~"));
        assert!(!header_safe("") && !header_safe(&"a".repeat(1025)));
        for bad in ["a\nb", "a\rb", "\0", "a\x1fb", "a\x7fb", "\t"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
        assert!(header_safe("a\x20b"), "space is fine");
    }

    /// Not JSON text (bytes that are not UTF-8, anywhere) is malformed; JSON with the wrong
    /// claims is invalid.
    #[test]
    fn payloads_are_utf8_json_objects() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            sub: String,
        }
        let judge =
            |bytes: &[u8]| decode_payload::<T>(&b64::encode(bytes), ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid).map(|_| ());
        assert_eq!(judge(br#"{"sub": "u1"}"#), Ok(()));
        assert_eq!(judge("{\"sub\": \"é\"}".as_bytes()), Ok(()));
        assert_eq!(judge(b"{\"sub\": \"\xe9\"}"), Err(ErrorCode::TokenMalformed), "Latin-1 in a string");
        assert_eq!(judge(b"{\"sub\": \"u1\"} \xff"), Err(ErrorCode::TokenMalformed), "a stray byte after the object");
        assert_eq!(judge(br#"{"sub": 5}"#), Err(ErrorCode::ClaimsInvalid));
        assert_eq!(judge(br#"["u1"]"#), Err(ErrorCode::TokenMalformed));
    }
}
