//! The routeless verifier (the auth-server's): config checks, verification through the shared
//! token cache, the revocation verdict.

use auth_core::apikey::{ApiKeyClaims, HmacKeyRing};
use auth_core::formats::{RevocationFeedClaims, RevokedEntry, RevokedLists};
use auth_core::{b64, ErrorCode, RevocationList, StalePolicy, TokenCache, UnixTime, Verifier, VerifierConfig};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

const ISS: &str = "https://auth.test";
const T0: i64 = 1_700_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn config() -> Value {
    json!({
        "providers": [{"issuer": ISS, "audiences": ["api"], "typ": ["at+jwt"],
            "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64::encode(key().verifying_key().as_bytes())}]}}],
        "api_keys": {"hmac_keys": [{"kid": "hk1", "secret": b64::encode(&[9u8; 32])}]}
    })
}

fn verifier() -> Verifier {
    Verifier::new(&serde_json::from_value::<VerifierConfig>(config()).unwrap()).unwrap()
}

fn token(claims: Value) -> String {
    token_from_payload(&serde_json::to_vec(&claims).unwrap())
}

fn token_from_payload(payload: &[u8]) -> String {
    let header = b64::encode(br#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#);
    let input = format!("{header}.{}", b64::encode(payload));
    format!("{input}.{}", b64::encode(&key().sign(input.as_bytes()).to_bytes()))
}

fn at(secs: i64) -> UnixTime {
    UnixTime::from_secs(secs)
}

#[test]
fn a_verifier_without_a_gateway_takes_inline_keys_only() {
    let mut cfg = config();
    cfg["providers"][0]["jwks_uri"] = json!("https://auth.test/jwks");
    let err = Verifier::new(&serde_json::from_value::<VerifierConfig>(cfg).unwrap()).err().expect("refused");
    assert_eq!(err.path, "providers[0].jwks_uri");
    let mut cfg = config();
    cfg["limits"] = json!({"max_token_bytes": 10});
    assert_eq!(Verifier::new(&serde_json::from_value::<VerifierConfig>(cfg).unwrap()).err().unwrap().path, "limits.max_token_bytes");
}

#[test]
fn tokens_verify_once_then_come_from_the_cache_until_they_expire() {
    let v = verifier();
    let mut cache = TokenCache::new(100);
    let t = token(json!({"iss": ISS, "aud": "api", "sub": "u1", "sid": "s1", "jti": "j1", "iat": T0, "exp": T0 + 60}));
    let first = v.verify_token_cached(&t, at(T0), StalePolicy::FailClosed, &mut cache).unwrap();
    assert!(!first.cache_hit);
    assert_eq!(first.identity.subject, "u1");
    assert!(cache.is_empty(), "nothing is kept before the caller's revocation check passed");
    cache.remember(&first, at(T0));
    let second = v.verify_token_cached(&t, at(T0 + 1), StalePolicy::FailClosed, &mut cache).unwrap();
    assert!(second.cache_hit);
    cache.remember(&second, at(T0 + 1));
    assert_eq!(cache.len(), 1);
    // Past exp (within the skew) it is verified afresh; past exp + skew it is refused.
    assert!(!v.verify_token_cached(&t, at(T0 + 61), StalePolicy::FailClosed, &mut cache).unwrap().cache_hit);
    let late = v.verify_token_cached(&t, at(T0 + 91), StalePolicy::FailClosed, &mut cache).unwrap_err();
    assert_eq!(late.code, ErrorCode::TokenExpired);
    // The same rules as the gateways: a duplicate claim, a foreign typ, a huge token.
    let dup = {
        let header = b64::encode(br#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#);
        let payload = b64::encode(format!(r#"{{"iss":"{ISS}","aud":"api","sub":"u1","sub":"admin","exp":{}}}"#, T0 + 60).as_bytes());
        let input = format!("{header}.{payload}");
        format!("{input}.{}", b64::encode(&key().sign(input.as_bytes()).to_bytes()))
    };
    assert_eq!(v.verify_token(&dup, at(T0), StalePolicy::FailClosed).unwrap_err().code, ErrorCode::ClaimsInvalid);
    assert_eq!(v.verify_token(&"a".repeat(9000), at(T0), StalePolicy::FailClosed).unwrap_err().code, ErrorCode::TokenTooLarge);
}

/// Without `clock_skew_s` a provider allows 30 seconds: a token is good 30 s past its `exp` and
/// refused at 31, and refused until 30 s before its `nbf`.
#[test]
fn the_default_clock_skew_is_thirty_seconds() {
    let v = verifier();
    let t = token(json!({"iss": ISS, "aud": "api", "sub": "u1", "iat": T0, "nbf": T0, "exp": T0 + 60}));
    let judge = |now: i64| v.verify_token(&t, at(now), StalePolicy::FailClosed).map(|_| ()).map_err(|e| e.code);
    assert_eq!(judge(T0 + 90), Ok(()));
    assert_eq!(judge(T0 + 91), Err(ErrorCode::TokenExpired));
    assert_eq!(judge(T0 - 30), Ok(()));
    assert!(judge(T0 - 31).is_err());
}

/// What is kept: nothing with the cache off, nothing verified with stale keys, nothing already
/// expired when it would be kept; `clear` empties it.
#[test]
fn the_cache_keeps_only_what_may_be_reused() {
    let v = verifier();
    let t = token(json!({"iss": ISS, "aud": "api", "sub": "u1", "jti": "j1", "iat": T0, "exp": T0 + 60}));
    let verify = |cache: &mut TokenCache, now: i64| v.verify_token_cached(&t, at(now), StalePolicy::FailClosed, cache).unwrap();

    let mut off = TokenCache::new(0);
    let first = verify(&mut off, T0);
    off.remember(&first, at(T0));
    assert!(off.is_empty() && !verify(&mut off, T0).cache_hit, "max_entries 0 keeps nothing");

    let mut cache = TokenCache::new(10);
    let mut stale = verify(&mut cache, T0);
    stale.stale_keys = true;
    cache.remember(&stale, at(T0));
    assert!(cache.is_empty(), "verified with keys past their stale bound");
    // Past `exp` but within the clock skew: verified, not kept.
    let late = verify(&mut cache, T0 + 61);
    cache.remember(&late, at(T0 + 61));
    assert!(cache.is_empty(), "already expired");
    cache.remember(&late, at(T0 + 59));
    assert!(!cache.is_empty() && cache.len() == 1);
    assert_eq!(format!("{cache:?}"), "TokenCache { max_entries: 10, len: 1 }");
    assert!(verify(&mut cache, T0 + 59).cache_hit);
    cache.clear();
    assert!(cache.is_empty() && !verify(&mut cache, T0 + 59).cache_hit, "cleared");
}

/// A cache hit needs the very token that was verified: a payload changed under the genuine
/// signature, a token cut short, one with more after it, or one differing in its last byte is
/// verified afresh (and refused), never served the genuine token's identity.
#[test]
fn only_the_exact_token_hits_its_cache_entry() {
    let v = verifier();
    let mut cache = TokenCache::new(100);
    let claims = json!({"iss": ISS, "aud": "api", "sub": "u1", "roles": ["reader"], "jti": "j1", "iat": T0, "exp": T0 + 60});
    let t = token(claims.clone());
    let first = v.verify_token_cached(&t, at(T0), StalePolicy::FailClosed, &mut cache).unwrap();
    cache.remember(&first, at(T0));
    assert!(v.verify_token_cached(&t, at(T0), StalePolicy::FailClosed, &mut cache).unwrap().cache_hit);

    let (input, signature) = t.rsplit_once('.').unwrap();
    let header = input.split('.').next().unwrap();
    let mut admin = claims;
    admin["roles"] = json!(["admin"]);
    let tampered = format!("{header}.{}.{signature}", b64::encode(&serde_json::to_vec(&admin).unwrap()));
    let mut last_byte = t.clone().into_bytes();
    let last = last_byte.last_mut().unwrap();
    *last = if *last == b'A' { b'B' } else { b'A' };
    let last_byte = String::from_utf8(last_byte).unwrap();
    for (name, other) in [("tampered payload", tampered), ("cut short", t[..t.len() - 1].to_string()), ("last byte", last_byte)] {
        let err = v.verify_token_cached(&other, at(T0), StalePolicy::FailClosed, &mut cache).expect_err(name);
        assert!(matches!(err.code, ErrorCode::SignatureInvalid | ErrorCode::TokenMalformed), "{name}: {:?}", err.code);
    }
    let longer = format!("{t}A");
    assert!(v.verify_token_cached(&longer, at(T0), StalePolicy::FailClosed, &mut cache).is_err(), "one byte more");
    assert_eq!(cache.len(), 1);
}

#[test]
fn revocation_lists_judge_tokens_keys_and_subjects() {
    let v = verifier();
    let t = token(json!({"iss": ISS, "aud": "api", "sub": "u1", "sid": "s1", "jti": "j1", "iat": T0, "exp": T0 + 60}));
    let id = v.verify_token(&t, at(T0), StalePolicy::FailClosed).unwrap().identity;
    let ring = HmacKeyRing::new([("hk1", &[9u8; 32][..])]);
    let claims =
        ApiKeyClaims { v: 1, kid: "hk1".into(), id: "key-1".into(), sub: "u1".into(), org: None, roles: vec![], iat: T0, exp: None };
    let (key_id, secret) = ring.mint(&claims).unwrap();
    let key = v.verify_api_key(&key_id, &secret, at(T0)).unwrap().identity;
    let list = |revoked: RevokedLists, watermark: i64| {
        RevocationList::from_claims(RevocationFeedClaims { iss: ISS.into(), iat: T0, exp: T0 + 60, ver: 1, watermark, revoked })
    };
    let entry = |id: &str| RevokedEntry { id: id.into(), exp: T0 + 600 };
    assert_eq!(list(RevokedLists::default(), T0).check(&id, true), Ok(()));
    assert_eq!(list(RevokedLists { sid: vec![entry("s1")], ..Default::default() }, T0).check(&id, true), Err(ErrorCode::SessionRevoked));
    assert_eq!(list(RevokedLists { jti: vec![entry("j1")], ..Default::default() }, T0).check(&id, true), Err(ErrorCode::TokenRevoked));
    assert_eq!(
        list(RevokedLists { api_key: vec![entry("key-1")], ..Default::default() }, T0).check(&key, true),
        Err(ErrorCode::ApiKeyRevoked)
    );
    assert_eq!(list(RevokedLists::default(), T0 - 1).check(&key, true), Err(ErrorCode::ApiKeyPending));
    assert_eq!(list(RevokedLists::default(), T0 - 1).check(&key, false), Ok(()), "a stale list says nothing of newer keys");
    let cut = auth_core::formats::RevokedSubject { id: "u1".into(), iat_before: T0, exp: T0 + 600 };
    let subject = list(RevokedLists { sub: vec![cut], ..Default::default() }, T0);
    assert_eq!(subject.check(&id, true), Err(ErrorCode::SubjectRevoked));
    assert_eq!(subject.check_subject(&key), Err(ErrorCode::SubjectRevoked));
}

#[test]
fn es256_high_s_is_refused_unless_the_issuer_opts_in() {
    use p256::ecdsa::signature::Signer as _;
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap())});
    let verifier = |accept: bool| {
        let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "algorithms": ["ES256"], "jwks": {"keys": [jwk.clone()]},
            "es256_accept_high_s": accept}]});
        Verifier::new(&serde_json::from_value::<VerifierConfig>(cfg).unwrap()).unwrap()
    };
    let header = b64::encode(br#"{"alg":"ES256","kid":"e1"}"#);
    let input =
        format!("{header}.{}", b64::encode(&serde_json::to_vec(&json!({"iss": ISS, "aud": "api", "sub": "u", "exp": T0 + 60})).unwrap()));
    let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    let low = sig.normalize_s().unwrap_or(sig);
    // n - s: the other valid encoding.
    let (r, s) = low.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert!(high.normalize_s().is_some(), "the flipped signature is the high-s one");
    let token = |sig: &p256::ecdsa::Signature| format!("{input}.{}", b64::encode(&sig.to_bytes()));
    let strict = verifier(false);
    assert!(strict.verify_token(&token(&low), at(T0), StalePolicy::FailClosed).is_ok());
    assert_eq!(strict.verify_token(&token(&high), at(T0), StalePolicy::FailClosed).unwrap_err().code, ErrorCode::SignatureNotCanonical);
    let lenient = verifier(true);
    assert!(lenient.verify_token(&token(&high), at(T0), StalePolicy::FailClosed).is_ok());
    assert!(lenient.verify_token(&token(&low), at(T0), StalePolicy::FailClosed).is_ok());
    // A forged signature is invalid in either form.
    let mut forged = high.to_bytes();
    forged[5] ^= 1;
    let forged = format!("{input}.{}", b64::encode(&forged));
    assert_eq!(strict.verify_token(&forged, at(T0), StalePolicy::FailClosed).unwrap_err().code, ErrorCode::SignatureInvalid);
}

/// An API key whose MAC is right but whose claims could not go into a header (a control
/// character in the subject, id or organisation, a role with a comma) is refused, each alone;
/// it expires at its `exp`.
#[test]
fn api_key_claims_must_be_forwardable() {
    let v = verifier();
    let ring = HmacKeyRing::new([("hk1", &[9u8; 32][..])]);
    let good = ApiKeyClaims {
        v: 1,
        kid: "hk1".into(),
        id: "key-1".into(),
        sub: "u1".into(),
        org: Some("org-1".into()),
        roles: vec!["reader".into()],
        iat: T0,
        exp: Some(T0 + 60),
    };
    let judge = |claims: &ApiKeyClaims, now: i64| {
        let (key_id, secret) = ring.mint(claims).unwrap();
        v.verify_api_key(&key_id, &secret, at(now)).map(|_| ()).map_err(|e| e.code)
    };
    assert_eq!(judge(&good, T0), Ok(()));
    assert_eq!(judge(&good, T0 + 59), Ok(()));
    assert_eq!(judge(&good, T0 + 60), Err(ErrorCode::ApiKeyExpired));
    let bad: [(&str, ApiKeyClaims); 4] = [
        ("subject", ApiKeyClaims { sub: "u1\nx-admin: 1".into(), ..good.clone() }),
        ("id", ApiKeyClaims { id: "key\r1".into(), ..good.clone() }),
        ("org", ApiKeyClaims { org: Some("org\u{7f}".into()), ..good.clone() }),
        ("role", ApiKeyClaims { roles: vec!["reader".into(), "a,admin".into()], ..good.clone() }),
    ];
    for (what, claims) in bad {
        assert_eq!(judge(&claims, T0), Err(ErrorCode::ClaimsInvalid), "{what}");
    }
}

/// The cache evicts the oldest entry first; an expired entry is never used and leaves in its
/// turn.
#[test]
fn the_cache_evicts_oldest_first() {
    let v = verifier();
    let mut cache = TokenCache::new(2);
    let t = |jti: &str, exp: i64| token(json!({"iss": ISS, "aud": "api", "sub": "u1", "jti": jti, "iat": T0, "exp": exp}));
    let (a, b, c) = (t("a", T0 + 10), t("b", T0 + 600), t("c", T0 + 600));
    let use_at = |token: &str, now: i64, cache: &mut TokenCache| {
        let verified = v.verify_token_cached(token, at(now), StalePolicy::FailClosed, cache).unwrap();
        cache.remember(&verified, at(now));
        verified.cache_hit
    };
    assert!(!use_at(&a, T0, &mut cache) && !use_at(&b, T0, &mut cache));
    assert!(use_at(&a, T0 + 9, &mut cache), "a is in");
    assert!(!use_at(&a, T0 + 10, &mut cache), "a expired at its exp (verified afresh within the skew)");
    assert_eq!(cache.len(), 2);
    assert!(!use_at(&c, T0 + 11, &mut cache), "c takes the oldest slot, a's");
    assert!(use_at(&b, T0 + 12, &mut cache) && use_at(&c, T0 + 12, &mut cache));
    let d = t("d", T0 + 600);
    assert!(!use_at(&d, T0 + 13, &mut cache), "d evicts b, now the oldest");
    assert!(use_at(&c, T0 + 14, &mut cache) && use_at(&d, T0 + 14, &mut cache));
    assert!(!use_at(&b, T0 + 15, &mut cache), "b was evicted");
}

/// The identity carries what the token said, in its order, whether JSON escaped the strings or
/// not: roles comma-joined and scopes space-joined for the headers, and the same as lists.
#[test]
fn identities_carry_roles_and_scopes_in_order_escaped_or_not() {
    let v = verifier();
    let t = token(json!({
        "iss": ISS, "aud": ["web", "api"], "sub": "us\u{e9}r", "roles": ["reader", "writer"],
        "scope": " items:read  items:write ", "email": "a@example.com", "iat": T0, "exp": T0 + 60
    }));
    let id = v.verify_token(&t, at(T0), StalePolicy::FailClosed).unwrap().identity;
    assert_eq!(id.roles_header, "reader,writer");
    assert_eq!(id.roles().collect::<Vec<_>>(), ["reader", "writer"]);
    assert_eq!(id.scope_header, "items:read items:write");
    assert_eq!(id.scopes().collect::<Vec<_>>(), ["items:read", "items:write"]);
    assert_eq!((id.subject.as_str(), id.email.as_deref()), ("us\u{e9}r", Some("a@example.com")));

    // The same claims with every string escaped in the JSON text.
    let escaped = r#"{"iss":"ISS","aud":"\u0061pi","sub":"u\u0031","roles":["re\u0061der"],"scope":"a\u003ab","iat":T0,"exp":T1}"#
        .replace("ISS", ISS)
        .replace("T0", &T0.to_string())
        .replace("T1", &(T0 + 60).to_string());
    let t = token_from_payload(escaped.as_bytes());
    let id = v.verify_token(&t, at(T0), StalePolicy::FailClosed).unwrap().identity;
    assert_eq!((id.subject.as_str(), id.roles_header.as_str(), id.scope_header.as_str()), ("u1", "reader", "a:b"));

    let none =
        v.verify_token(&token(json!({"iss": ISS, "aud": "api", "sub": "u1", "iat": T0, "exp": T0 + 60})), at(T0), StalePolicy::FailClosed);
    let id = none.unwrap().identity;
    assert_eq!((id.roles().count(), id.scopes().count(), id.roles_header.as_str()), (0, 0, ""));
}
