//! Gateway behaviour over time with a fake clock: fetching, rotation, unknown kid, stale bounds,
//! the revocation feed and the token cache. Tokens are signed here with ed25519-dalek.

use auth_core::{b64, Applied, Decision, ErrorCode, FetchResponse, Gateway, MaterialError, Request, Source};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test";
const T0: i64 = 1_700_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn jwk(kid: &str, k: &SigningKey) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": b64::encode(k.verifying_key().as_bytes())})
}

fn jwks(keys: &[(&str, &SigningKey)]) -> Vec<u8> {
    serde_json::to_vec(&json!({"keys": keys.iter().map(|(kid, k)| jwk(kid, k)).collect::<Vec<_>>()})).unwrap()
}

fn sign(kid: &str, k: &SigningKey, typ: &str, claims: &Value) -> String {
    let header = b64::encode(&serde_json::to_vec(&json!({"alg": "EdDSA", "kid": kid, "typ": typ})).unwrap());
    let payload = b64::encode(&serde_json::to_vec(claims).unwrap());
    let input = format!("{header}.{payload}");
    let sig = k.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn token(kid: &str, k: &SigningKey, sid: &str, iat: i64, exp: i64) -> String {
    sign(kid, k, "at+jwt", &json!({"iss": ISS, "aud": "api", "sub": "u1", "sid": sid, "jti": format!("j-{sid}-{iat}"),
        "roles": ["reader"], "iat": iat, "exp": exp}))
}

fn feed(k: &SigningKey, ver: u64, iat: i64, exp: i64, revoked_sids: &[&str]) -> String {
    let sids: Vec<Value> = revoked_sids.iter().map(|s| json!({"id": s, "exp": exp + 3600})).collect();
    sign("k1", k, "revocations+jwt", &json!({"iss": ISS, "iat": iat, "exp": exp, "ver": ver, "watermark": iat,
        "revoked": {"sid": sids}}))
}

fn gateway(with_feed: bool) -> Gateway {
    let mut cfg = json!({
        "providers": [{"issuer": ISS, "audiences": ["api"], "jwks_uri": "https://issuer.test/jwks", "algorithms": ["EdDSA"]}],
        "routes": [
            {"prefix": "/open", "require": "authenticated", "on_stale": "fail_open"},
            {"prefix": "/strip", "require": "authenticated", "strip_credential": true},
            {"prefix": "/anon", "require": "anonymous"},
            {"prefix": "/api", "require": "authenticated"}],
        "fetch": {"jwks_refresh_s": 300, "jwks_max_stale_s": 600, "unknown_kid_cooldown_s": 30}
    });
    if with_feed {
        cfg["revocations"] = json!({"uri": "https://issuer.test/v1/revocations", "refresh_s": 5,
            "credential": {"key_id": "agk_gateway", "secret": "s3cret"}});
    }
    Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap()
}

fn decide(gw: &mut Gateway, path: &str, token: &str, now: i64) -> Decision {
    let auth = format!("Bearer {token}");
    gw.decide(&Request { method: "GET", path, headers: &[("authorization", &auth)] }, now, "rid")
}

fn code(d: &Decision) -> Option<ErrorCode> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(d) => Some(d.code),
    }
}

/// Serves every due fetch of `source` with `body` at `now`.
fn serve(gw: &mut Gateway, source: Source, status: u16, body: &[u8], now: i64) -> Option<Result<Applied, MaterialError>> {
    let mut result = None;
    let mut others = Vec::new();
    while let Some(f) = gw.poll_fetch(now) {
        if f.source == source {
            result = Some(gw.handle_fetch(f.id, FetchResponse { status, body, etag: Some("\"v1\"") }, now));
        } else {
            others.push(f);
        }
    }
    for f in others {
        gw.fetch_failed(f.id, now);
    }
    result
}

#[test]
fn keys_unavailable_until_first_fetch_then_allowed() {
    let mut gw = gateway(false);
    let t = token("k1", &key(1), "s1", T0, T0 + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0)), Some(ErrorCode::KeysUnavailable));
    let f = gw.poll_fetch(T0).expect("JWKS due at start");
    assert_eq!(f.source, Source::Jwks(0));
    assert_eq!(f.url, "https://issuer.test/jwks");
    assert!(gw.poll_fetch(T0).is_none(), "one fetch in flight per source");
    let applied = gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, T0);
    assert_eq!(applied, Ok(Applied::Updated));
    assert!(decide(&mut gw, "/api", &t, T0).is_allow());
    assert_eq!(gw.poll_timeout(), Some(T0 + 300), "refresh before the keys go stale");
}

#[test]
fn rotation_unknown_kid_refetches_once_per_cooldown() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let rotated = token("k2", &key(2), "s1", T0, T0 + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &rotated, T0 + 10)), Some(ErrorCode::UnknownKid));
    // Many requests with the unknown kid: still exactly one refetch.
    for _ in 0..50 {
        decide(&mut gw, "/api", &rotated, T0 + 10);
    }
    let f = gw.poll_fetch(T0 + 10).expect("refetch for the unknown kid");
    assert!(gw.poll_fetch(T0 + 10).is_none());
    // The issuer has not published k2 yet.
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, T0 + 10).unwrap();
    decide(&mut gw, "/api", &rotated, T0 + 20);
    assert!(gw.poll_fetch(T0 + 20).is_none(), "within the cooldown: no second refetch");
    let f = gw.poll_fetch(T0 + 40).expect("cooldown over");
    let both = jwks(&[("k1", &key(1)), ("k2", &key(2))]);
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &both, etag: None }, T0 + 40).unwrap();
    assert!(decide(&mut gw, "/api", &rotated, T0 + 41).is_allow());
}

#[test]
fn stale_keys_serve_within_bound_then_policy_applies() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let mut now = T0 + 300;
    // The issuer is down from here on: every refresh fails.
    while now < T0 + 600 {
        serve(&mut gw, Source::Jwks(0), 503, b"", now);
        let t = token("k1", &key(1), "s", now, now + 600);
        assert!(decide(&mut gw, "/api", &t, now).is_allow(), "cached keys within the stale bound at {now}");
        now += 7;
    }
    let t = token("k1", &key(1), "s", now + 10, now + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 601)), Some(ErrorCode::KeysUnavailable));
    assert!(decide(&mut gw, "/open/x", &t, T0 + 601).is_allow(), "fail_open keeps the last good keys");
    // Recovery without restart.
    let f = std::iter::from_fn(|| gw.poll_fetch(T0 + 700)).find(|f| f.source == Source::Jwks(0)).unwrap();
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, T0 + 700).unwrap();
    let t = token("k1", &key(1), "s", T0 + 700, T0 + 1300);
    assert!(decide(&mut gw, "/api", &t, T0 + 701).is_allow());
}

#[test]
fn revocation_feed_applies_flushes_cache_and_guards_rollback() {
    let mut gw = gateway(true);
    let k = key(1);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k)]), T0);
    let t = token("k1", &k, "s1", T0, T0 + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0)), Some(ErrorCode::RevocationsStale), "fail closed before the first feed");
    // `serve` failed the feed fetch at T0: it is retried after the 1 s backoff.
    assert!(gw.poll_fetch(T0).is_none());
    let fetch = std::iter::from_fn(|| gw.poll_fetch(T0 + 1)).find(|f| f.source == Source::Revocations).unwrap();
    assert!(fetch.headers.contains(&("x-api-key".to_string(), "agk_gateway".to_string())));
    assert!(fetch.headers.contains(&("x-api-secret".to_string(), "s3cret".to_string())));
    let f1 = feed(&k, 1, T0, T0 + 60, &[]);
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: f1.as_bytes(), etag: Some("\"f1\"") }, T0 + 1).unwrap();
    assert!(decide(&mut gw, "/api", &t, T0 + 1).is_allow());
    match decide(&mut gw, "/api", &t, T0 + 2) {
        Decision::Allow(a) => assert!(a.cache_hit, "second use is a cache hit"),
        d => panic!("{d:?}"),
    }
    // The session is revoked: the next feed flushes the cache and the token is denied.
    let f2 = feed(&k, 2, T0 + 5, T0 + 65, &["s1"]);
    let fetch = std::iter::from_fn(|| gw.poll_fetch(T0 + 6)).find(|f| f.source == Source::Revocations).unwrap();
    assert!(fetch.headers.contains(&("if-none-match".to_string(), "\"f1\"".to_string())));
    assert_eq!(gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: f2.as_bytes(), etag: None }, T0 + 6), Ok(Applied::Updated));
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 6)), Some(ErrorCode::SessionRevoked));
    // An older feed (rollback) is refused; the same version re-signed later extends freshness.
    assert!(matches!(gw.apply_material(Source::Revocations, f1.as_bytes(), T0 + 7, T0 + 7), Err(MaterialError::FeedRollback { .. })));
    let f2b = feed(&k, 2, T0 + 60, T0 + 120, &["s1"]);
    assert_eq!(gw.apply_material(Source::Revocations, f2b.as_bytes(), T0 + 60, T0 + 60), Ok(Applied::Updated));
    assert_eq!(gw.status().feed_expires_at, Some(T0 + 120));
    // A forged feed (other key) and a feed presented as a token are refused.
    let forged = feed(&key(9), 3, T0 + 61, T0 + 200, &[]);
    assert!(matches!(gw.apply_material(Source::Revocations, forged.as_bytes(), T0 + 61, T0 + 61), Err(MaterialError::FeedInvalid(_))));
    assert_eq!(code(&decide(&mut gw, "/api", &f2b, T0 + 61)), Some(ErrorCode::TypNotAllowed));
}

#[test]
fn stale_feed_fail_closed_and_fail_open_still_honours_known_revocations() {
    let mut gw = gateway(true);
    let k = key(1);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k)]), T0);
    gw.apply_material(Source::Revocations, feed(&k, 1, T0, T0 + 30, &["bad"]).as_bytes(), T0, T0).unwrap();
    let now = T0 + 31;
    let good = token("k1", &k, "good", now, now + 600);
    let bad = token("k1", &k, "bad", now, now + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &good, now)), Some(ErrorCode::RevocationsStale));
    assert!(decide(&mut gw, "/open", &good, now).is_allow());
    assert_eq!(code(&decide(&mut gw, "/open", &bad, now)), Some(ErrorCode::SessionRevoked));
    // Results checked against a stale feed are not cached.
    match decide(&mut gw, "/open", &good, now) {
        Decision::Allow(a) => assert!(!a.cache_hit),
        d => panic!("{d:?}"),
    }
}

#[test]
fn feed_signed_by_a_key_not_yet_fetched_is_applied_when_keys_arrive() {
    let mut gw = gateway(true);
    let k = key(1);
    let f = feed(&k, 4, T0, T0 + 60, &[]);
    assert_eq!(gw.apply_material(Source::Revocations, f.as_bytes(), T0, T0), Err(MaterialError::FeedKeysUnavailable));
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k)]), T0 + 1);
    assert_eq!(gw.status().feed_version, Some(4));
}

#[test]
fn cache_entries_end_at_token_expiry() {
    let mut gw = gateway(false);
    let k = key(1);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k)]), T0);
    let t = token("k1", &k, "s", T0, T0 + 10);
    assert!(decide(&mut gw, "/api", &t, T0).is_allow());
    match decide(&mut gw, "/api", &t, T0 + 11) {
        // Past exp but within the 30 s skew: verified afresh, not served from the cache.
        Decision::Allow(a) => assert!(!a.cache_hit),
        d => panic!("{d:?}"),
    }
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 41)), Some(ErrorCode::TokenExpired));
}

#[test]
fn cache_is_bounded() {
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": {"keys": [jwk("k1", &key(1))]}}],
        "routes": [{"prefix": "/", "require": "authenticated"}], "cache": {"max_entries": 3}});
    let mut gw = Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    for i in 0..20 {
        assert!(decide(&mut gw, "/", &token("k1", &key(1), &format!("s{i}"), T0, T0 + 600), T0).is_allow());
        assert!(gw.status().cached_tokens <= 3);
    }
    assert_eq!(gw.status().cached_tokens, 3);
}

#[test]
fn routes_strip_and_default_deny() {
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": {"keys": [jwk("k1", &key(1))]}}],
        "headers": {"subject": "x-user"},
        "routes": [{"prefix": "/strip", "require": "authenticated", "strip_credential": true},
                   {"path": "/anon", "require": "anonymous"}]});
    let mut gw = Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    let t = token("k1", &key(1), "s", T0, T0 + 600);
    assert_eq!(code(&decide(&mut gw, "/other", &t, T0)), Some(ErrorCode::NoMatchingRoute));
    assert_eq!(code(&decide(&mut gw, "/anon/x", &t, T0)), Some(ErrorCode::NoMatchingRoute), "exact path only");
    let auth = format!("Bearer {t}");
    let headers = [("authorization", auth.as_str()), ("X-User", "admin"), ("x-auth-roles", "admin")];
    match gw.decide(&Request { method: "GET", path: "/strip/a?q=1", headers: &headers }, T0, "r") {
        Decision::Allow(a) => {
            let removed: Vec<&str> = a.remove_headers.iter().map(|h| h.as_ref()).collect();
            assert!(removed.contains(&"authorization"));
            assert!(removed.contains(&"x-user"), "a configured identity header outside the prefix is stripped too");
            assert!(removed.contains(&"x-auth-roles"));
            assert!(a.headers_to_set().contains(&("x-user", "u1")));
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn http_errors_back_off_and_304_keeps_material() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let f = gw.poll_fetch(T0 + 300).unwrap();
    assert!(f.headers.contains(&("if-none-match".to_string(), "\"v1\"".to_string())));
    assert_eq!(gw.handle_fetch(f.id, FetchResponse { status: 304, body: b"", etag: None }, T0 + 300), Ok(Applied::NotModified));
    assert_eq!(gw.poll_timeout(), Some(T0 + 600));
    let f = gw.poll_fetch(T0 + 600).unwrap();
    assert_eq!(gw.handle_fetch(f.id, FetchResponse { status: 500, body: b"", etag: None }, T0 + 600), Err(MaterialError::HttpStatus(500)));
    assert_eq!(gw.poll_timeout(), Some(T0 + 601));
    let f = gw.poll_fetch(T0 + 601).unwrap();
    assert!(matches!(gw.handle_fetch(f.id, FetchResponse { status: 200, body: b"{\"keys\":[]}", etag: None }, T0 + 601), Err(MaterialError::Jwks(_))));
    assert_eq!(gw.poll_timeout(), Some(T0 + 603));
    assert_eq!(gw.handle_fetch(f.id, FetchResponse { status: 200, body: b"", etag: None }, T0 + 602), Err(MaterialError::UnknownFetch));
    let t = token("k1", &key(1), "s", T0 + 602, T0 + 900);
    assert!(decide(&mut gw, "/api", &t, T0 + 602).is_allow(), "last good keys still serve");
}

#[test]
fn fetched_jwks_never_supply_symmetric_keys() {
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks_uri": "https://issuer.test/jwks", "algorithms": ["HS256", "EdDSA"]}],
        "routes": [{"prefix": "/", "require": "authenticated"}]});
    let mut gw = Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    let secret = [5u8; 32];
    let body = serde_json::to_vec(&json!({"keys": [{"kty": "oct", "kid": "h", "k": b64::encode(&secret)}, jwk("k1", &key(1))]})).unwrap();
    serve(&mut gw, Source::Jwks(0), 200, &body, T0);
    use hmac::{Hmac, Mac};
    let header = b64::encode(br#"{"alg":"HS256","kid":"h","typ":"at+jwt"}"#);
    let payload = b64::encode(&serde_json::to_vec(&json!({"iss": ISS, "aud": "api", "sub": "x", "exp": T0 + 60})).unwrap());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let forged = format!("{header}.{payload}.{}", b64::encode(&mac.finalize().into_bytes()));
    assert_eq!(code(&decide(&mut gw, "/", &forged, T0)), Some(ErrorCode::UnknownKid));
}

#[test]
fn merged_credential_headers_stay_conflicting() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let t = token("k1", &key(1), "s", T0, T0 + 600);
    // What Envoy or the Fetch API hand over for two `authorization` fields.
    let merged = format!("Bearer {t}, Bearer {t}");
    let d = gw.decide(&Request { method: "GET", path: "/api", headers: &[("authorization", &merged)] }, T0, "r");
    assert_eq!(code(&d), Some(ErrorCode::ConflictingCredentials));
    let d = gw.decide(&Request { method: "GET", path: "/api", headers: &[("x-api-key", "agk_a, agk_b"), ("x-api-secret", "s")] }, T0, "r");
    assert_eq!(code(&d), Some(ErrorCode::ConflictingCredentials));
    assert!(decide(&mut gw, "/api", &t, T0).is_allow(), "a single credential is unaffected");
}
