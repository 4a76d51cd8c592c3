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

/// Room for one decoded segment: `N` bytes inline (on the caller's stack), the heap only for a
/// segment longer than that. Every usual token decodes with no allocation.
pub(crate) struct SegmentBuf<const N: usize> {
    inline: [u8; N],
    spill: Vec<u8>,
}

impl<const N: usize> SegmentBuf<N> {
    pub(crate) fn new() -> Self {
        SegmentBuf { inline: [0; N], spill: Vec::new() }
    }

    /// The strict base64url decoding of `segment`, or `None`.
    pub(crate) fn decode(&mut self, segment: &str) -> Option<&[u8]> {
        let n = b64::decoded_len(segment.len())?;
        if n <= N {
            let n = b64::decode_into(segment.as_bytes(), &mut self.inline)?;
            Some(&self.inline[..n])
        } else {
            self.spill = b64::decode(segment.as_bytes())?;
            Some(&self.spill)
        }
    }
}

/// Where a token's decoded header and signature live while it is judged (a JOSE header with a
/// `kid` is well under 384 bytes; an RSA-4096 signature is 512).
pub(crate) struct JwsScratch {
    header: SegmentBuf<384>,
    signature: SegmentBuf<512>,
}

impl JwsScratch {
    pub(crate) fn new() -> Self {
        JwsScratch { header: SegmentBuf::new(), signature: SegmentBuf::new() }
    }
}

/// A compact JWS split into its parts, header and signature decoded, payload still encoded.
pub(crate) struct Jws<'t, 's> {
    pub alg: Alg,
    pub kid: Option<Cow<'s, str>>,
    pub typ: Option<Cow<'s, str>>,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'t str,
    pub payload_b64: &'t str,
    pub signature: &'s [u8],
}

/// Splits and decodes a compact JWS, its header and signature into `scratch`. Order of checks
/// decides the error code for tokens that are wrong in several ways; it follows the order a
/// reader would notice them.
pub(crate) fn parse_jws<'t, 's>(token: &'t str, max_len: usize, scratch: &'s mut JwsScratch) -> Result<Jws<'t, 's>, ErrorCode> {
    if token.len() > max_len {
        return Err(ErrorCode::TokenTooLarge);
    }
    // Exactly three segments: the first and last dot, and none between them.
    let bytes = token.as_bytes();
    let (Some(first), Some(last)) = (memchr::memchr(b'.', bytes), memchr::memrchr(b'.', bytes)) else {
        return Err(ErrorCode::TokenMalformed);
    };
    if first == last || memchr::memchr(b'.', &bytes[first + 1..last]).is_some() {
        return Err(ErrorCode::TokenMalformed);
    }
    let (header_b64, payload_b64, signature_b64) = (&token[..first], &token[first + 1..last], &token[last + 1..]);
    let JwsScratch { header: header_buf, signature: signature_buf } = scratch;
    let header_bytes = header_buf.decode(header_b64).ok_or(ErrorCode::TokenMalformed)?;
    let header: Header = parse_json_object(header_bytes).ok_or(ErrorCode::TokenMalformed)?;
    // "none" in any spelling, and every algorithm we do not implement.
    let alg = Alg::from_jose(&header.alg).ok_or(ErrorCode::AlgNotAllowed)?;
    if header.crit.is_some() {
        return Err(ErrorCode::CritUnsupported);
    }
    if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
        return Err(ErrorCode::TokenMalformed);
    }
    let signature = signature_buf.decode(signature_b64).ok_or(ErrorCode::TokenMalformed)?;
    Ok(Jws { alg, kid: header.kid, typ: header.typ, signing_input: &token[..last], payload_b64, signature })
}

/// Decodes a JSON object payload into `T`, which may borrow from `buf`: bad encoding or a
/// non-object is `malformed`, a well-formed object with wrong or duplicate claims is `invalid`.
pub(crate) fn decode_payload<'p, T: Deserialize<'p>, const N: usize>(
    payload_b64: &str,
    buf: &'p mut SegmentBuf<N>,
    malformed: ErrorCode,
    invalid: ErrorCode,
) -> Result<T, ErrorCode> {
    let bytes = buf.decode(payload_b64).ok_or(malformed)?;
    serde_json::from_str(object_text(bytes).ok_or(malformed)?).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid,
        _ => malformed,
    })
}

/// The decoded segment as text, if it can be a JSON object: serde would read a struct from an
/// array of its fields in order, so anything not starting with `{` is refused here. JSON is
/// UTF-8, and validating it once here spares serde_json validating each string on its own (a
/// tenth of an HS256 decision's instructions).
fn object_text(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().copied().find(|b| !b.is_ascii_whitespace()) != Some(b'{') {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// `bytes` as a JSON object parsed into `T`; `None` for bytes that are not UTF-8, not an object
/// or not a `T`.
pub(crate) fn parse_json_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    serde_json::from_str(object_text(bytes)?).ok()
}

/// The claims of an access token (RFC 9068 profile plus authgate's own), borrowed from the
/// decoded payload: only what the identity keeps is copied out.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims<'a> {
    #[serde(default, borrow)]
    pub iss: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub sub: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub aud: Option<Audience<'a>>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    #[serde(default, borrow)]
    pub jti: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub sid: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub org: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub email: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub roles: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    pub scope: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub client_id: Option<Text<'a>>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3). Read by its own visitor rather
/// than `#[serde(untagged)]`, which buffers the value to try each shape in turn.
#[derive(Debug)]
pub(crate) enum Audience<'a> {
    One(Text<'a>),
    Many(Vec<Text<'a>>),
}

impl Audience<'_> {
    pub(crate) fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(a) => accepted.iter().any(|x| **x == **a),
            Audience::Many(list) => list.iter().any(|a| accepted.iter().any(|x| **x == **a)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Audience::One(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Audience::One(Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(a) = seq.next_element()? {
                    all.push(a);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(Shape)
    }
}

/// A JSON string, borrowed from the decoded payload when it has no escapes. (serde borrows a
/// bare `Cow<str>` field, but not one inside an `Option` or a `Vec`.)
#[derive(Debug)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Text<'_> {
    pub(crate) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> serde::de::Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Str)
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
        assert_eq!(parse_jws("a.b", 100, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed));
        assert_eq!(parse_jws("a.b.c.d", 100, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed));
        assert_eq!(parse_jws(&"a".repeat(101), 100, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenTooLarge));
        let none = format!("{}.{}.", b64::encode(br#"{"alg":"none"}"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&none, 1000, &mut JwsScratch::new()).err(), Some(ErrorCode::AlgNotAllowed));
        let crit = format!("{}.{}.", b64::encode(br#"{"alg":"EdDSA","crit":["b64"]}"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&crit, 1000, &mut JwsScratch::new()).err(), Some(ErrorCode::CritUnsupported));
        let arr = format!("{}.{}.", b64::encode(br#"["alg"]"#), b64::encode(b"{}"));
        assert_eq!(parse_jws(&arr, 1000, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed));
        let latin1 = format!("{}.{}.", b64::encode(b"{\"alg\":\"EdDSA\",\"kid\":\"k\xe9\"}"), b64::encode(b"{}"));
        assert_eq!(parse_jws(&latin1, 1000, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed), "a header that is not UTF-8");
        let with_kid = |n: usize| {
            format!("{}.{}.", b64::encode(format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, "k".repeat(n)).as_bytes()), b64::encode(b"{}"))
        };
        assert_eq!(parse_jws(&with_kid(MAX_KID_LEN), 4000, &mut JwsScratch::new()).map(|j| j.kid.map(|k| k.len())), Ok(Some(256)));
        assert_eq!(parse_jws(&with_kid(MAX_KID_LEN + 1), 4000, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed));
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

    /// Claims are borrowed from the payload when they can be, copied when JSON escapes them,
    /// and read the same either way; `aud` takes exactly a string or an array of strings.
    #[test]
    fn claims_read_the_same_borrowed_escaped_or_spilled() {
        let claims = |json: &str| {
            let mut buf = SegmentBuf::<16>::new();
            decode_payload::<Claims, 16>(&b64::encode(json.as_bytes()), &mut buf, ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)
                .map(|c| (c.sub.map(Text::into_string), c.aud.map(|a| a.contains_any(&["api".to_string()])), c.roles.map(|r| r.len())))
        };
        assert_eq!(claims(r#"{"sub":"user","aud":"api"}"#), Ok((Some("user".into()), Some(true), None)));
        assert_eq!(claims(r#"{"sub":"us\u0065r","aud":"\u0061pi"}"#), Ok((Some("user".into()), Some(true), None)), "escaped");
        assert_eq!(claims(r#"{"aud":["web","a\u0070i"],"roles":["a","\u0062"]}"#), Ok((None, Some(true), Some(2))));
        assert_eq!(claims(r#"{"aud":["web"]}"#), Ok((None, Some(false), None)));
        assert_eq!(claims(r#"{"aud":null}"#), Ok((None, None, None)));
        for bad in
            [r#"{"aud":5}"#, r#"{"aud":[1]}"#, r#"{"aud":{"a":1}}"#, r#"{"sub":7}"#, r#"{"roles":"admin"}"#, r#"{"sub":"a","sub":"b"}"#]
        {
            assert_eq!(claims(bad).err(), Some(ErrorCode::ClaimsInvalid), "{bad}");
        }
    }

    #[test]
    fn tokens_split_into_exactly_three_segments() {
        let header = b64::encode(br#"{"alg":"HS256"}"#);
        let ok = format!("{header}.e30.c2ln");
        let mut scratch = JwsScratch::new();
        let jws = parse_jws(&ok, 1000, &mut scratch).unwrap();
        assert_eq!((jws.signing_input, jws.payload_b64, jws.signature), (&ok[..ok.len() - 5], "e30", &b"sig"[..]));
        for bad in [
            format!("{header}.e30"),
            format!("{header}.e.30.c2ln"),
            format!("{header}.e30.c2ln."),
            format!(".{header}.e30.c2ln"),
            header.clone(),
        ] {
            assert_eq!(parse_jws(&bad, 1000, &mut JwsScratch::new()).err(), Some(ErrorCode::TokenMalformed), "{bad}");
        }
        // A signature longer than the inline room (RSA-8192's 1024 bytes) is decoded all the same.
        let long = format!("{header}.e30.{}", b64::encode(&[7u8; 1024]));
        assert_eq!(parse_jws(&long, 4000, &mut JwsScratch::new()).unwrap().signature, &[7u8; 1024][..]);
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
        let judge = |bytes: &[u8]| {
            decode_payload::<T, 64>(&b64::encode(bytes), &mut SegmentBuf::new(), ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)
                .map(|_| ())
        };
        assert_eq!(judge(br#"{"sub": "u1"}"#), Ok(()));
        assert_eq!(judge("{\"sub\": \"é\"}".as_bytes()), Ok(()));
        assert_eq!(judge(b"{\"sub\": \"\xe9\"}"), Err(ErrorCode::TokenMalformed), "Latin-1 in a string");
        assert_eq!(judge(b"{\"sub\": \"u1\"} \xff"), Err(ErrorCode::TokenMalformed), "a stray byte after the object");
        assert_eq!(judge(br#"{"sub": 5}"#), Err(ErrorCode::ClaimsInvalid));
        assert_eq!(judge(br#"["u1"]"#), Err(ErrorCode::TokenMalformed));
    }
}
