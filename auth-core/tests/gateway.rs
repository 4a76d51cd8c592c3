//! Gateway behaviour over time with a fake clock: fetching, rotation, unknown kid, stale bounds,
//! the revocation feed and the token cache. Tokens are signed here with ed25519-dalek.

use auth_core::{
    b64, Decision, ErrorCode, FetchFailure, FetchResponse, Gateway, MaterialEvent, PendingReason, RejectReason, Request, Source, UnixTime,
    Via,
};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test";
const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> UnixTime {
    UnixTime::from_secs(secs)
}

/// Every event since the last call.
fn events(gw: &mut Gateway) -> Vec<MaterialEvent> {
    std::iter::from_fn(|| gw.poll_event()).collect()
}

/// The one event about `source` among what happened (panics on none or several).
fn event_of(gw: &mut Gateway, source: Source) -> MaterialEvent {
    let about: Vec<MaterialEvent> = events(gw)
        .into_iter()
        .filter(|e| match e {
            MaterialEvent::Applied { source: s, .. }
            | MaterialEvent::Confirmed { source: s, .. }
            | MaterialEvent::KeptPending { source: s, .. }
            | MaterialEvent::Rejected { source: s, .. }
            | MaterialEvent::FetchFailed { source: s, .. } => *s == source,
            _ => false,
        })
        .collect();
    assert_eq!(about.len(), 1, "{about:?}");
    about.into_iter().next().unwrap()
}

fn is_applied(e: &MaterialEvent) -> bool {
    matches!(e, MaterialEvent::Applied { .. })
}

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
    sign(
        kid,
        k,
        "at+jwt",
        &json!({"iss": ISS, "aud": "api", "sub": "u1", "sid": sid, "jti": format!("j-{sid}-{iat}"),
        "roles": ["reader"], "iat": iat, "exp": exp}),
    )
}

fn feed(k: &SigningKey, ver: u64, iat: i64, exp: i64, revoked_sids: &[&str]) -> String {
    let sids: Vec<Value> = revoked_sids.iter().map(|s| json!({"id": s, "exp": exp + 3600})).collect();
    sign(
        "k1",
        k,
        "revocations+jwt",
        &json!({"iss": ISS, "iat": iat, "exp": exp, "ver": ver, "watermark": iat,
        "revoked": {"sid": sids}}),
    )
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
    gw.decide(&Request { method: "GET", path, headers: &[("authorization", &auth)] }, at(now), "rid")
}

fn code(d: &Decision) -> Option<ErrorCode> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(d) => Some(d.code),
    }
}

/// Serves every due fetch of `source` with `body` at `now` (others fail); returns the event.
fn serve(gw: &mut Gateway, source: Source, status: u16, body: &[u8], now: i64) -> Option<MaterialEvent> {
    let mut served = false;
    let mut others = Vec::new();
    while let Some(f) = gw.poll_fetch(at(now)) {
        if f.source == source {
            gw.handle_fetch(f.id, FetchResponse { status, body, etag: Some("\"v1\"") }, at(now));
            served = true;
        } else {
            others.push(f);
        }
    }
    let event = served.then(|| event_of(gw, source));
    for f in others {
        gw.fetch_failed(f.id, at(now));
    }
    events(gw);
    event
}

/// Answers the one due fetch, which must be of `source`, leaving everything else alone.
fn answer(gw: &mut Gateway, source: Source, body: &[u8], now: i64) -> MaterialEvent {
    let f = gw.poll_fetch(at(now)).expect("a fetch is due");
    assert_eq!(f.source, source);
    gw.handle_fetch(f.id, FetchResponse { status: 200, body, etag: Some("\"v1\"") }, at(now));
    event_of(gw, source)
}

fn apply(gw: &mut Gateway, source: Source, body: &[u8], now: i64) -> MaterialEvent {
    gw.apply_material(source, body, at(now), at(now));
    event_of(gw, source)
}

#[test]
fn keys_unavailable_until_first_fetch_then_allowed() {
    let mut gw = gateway(false);
    let t = token("k1", &key(1), "s1", T0, T0 + 600);
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0)), Some(ErrorCode::KeysUnavailable));
    let f = gw.poll_fetch(at(T0)).expect("JWKS due at start");
    assert_eq!(f.source, Source::Jwks(0));
    assert_eq!(f.url, "https://issuer.test/jwks");
    assert!(gw.poll_fetch(at(T0)).is_none(), "one fetch in flight per source");
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, at(T0));
    let evs = events(&mut gw);
    assert!(
        matches!(&evs[0], MaterialEvent::Applied { source: Source::Jwks(0), via: Via::Fetch, copy } if copy.fetched_at == at(T0) && copy.keep_for_s == 600),
        "{evs:?}"
    );
    assert_eq!(evs[1], MaterialEvent::Ready);
    assert!(decide(&mut gw, "/api", &t, T0).is_allow());
    assert_eq!(gw.poll_timeout(), Some(at(T0 + 300)), "refresh before the keys go stale");
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
    let f = gw.poll_fetch(at(T0 + 10)).expect("refetch for the unknown kid");
    assert!(gw.poll_fetch(at(T0 + 10)).is_none());
    // The issuer has not published k2 yet: the same keys are confirmed, not applied again.
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, at(T0 + 10));
    assert!(matches!(event_of(&mut gw, Source::Jwks(0)), MaterialEvent::Confirmed { .. }));
    decide(&mut gw, "/api", &rotated, T0 + 20);
    assert!(gw.poll_fetch(at(T0 + 20)).is_none(), "within the cooldown: no second refetch");
    let f = gw.poll_fetch(at(T0 + 40)).expect("cooldown over");
    let both = jwks(&[("k1", &key(1)), ("k2", &key(2))]);
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &both, etag: None }, at(T0 + 40));
    assert!(is_applied(&event_of(&mut gw, Source::Jwks(0))));
    assert!(decide(&mut gw, "/api", &rotated, T0 + 41).is_allow());
}

/// A key replaced under the same `kid` (or in a set without kids) is a change: the new key
/// verifies, the old one no longer does, and its cached tokens go. (The change check once
/// compared only kids and types: a replaced key was "confirmed" and the old one kept working.)
#[test]
fn a_key_replaced_under_the_same_kid_is_applied() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let old = token("k1", &key(1), "s-old", T0, T0 + 3600);
    let new = token("k1", &key(2), "s-new", T0, T0 + 3600);
    assert!(decide(&mut gw, "/api", &old, T0).is_allow());
    assert_eq!(gw.status().cached_tokens, 1);
    // The scheduled refresh (jwks_refresh_s 300) serves the replaced key.
    assert!(is_applied(&serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(2))]), T0 + 300).expect("refresh due")));
    assert_eq!(code(&decide(&mut gw, "/api", &old, T0 + 301)), Some(ErrorCode::SignatureInvalid), "the replaced key, even cached");
    assert!(decide(&mut gw, "/api", &new, T0 + 301).is_allow());

    // Without kids, the same.
    let unkeyed = |k: &SigningKey| {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64::encode(k.verifying_key().as_bytes())});
        serde_json::to_vec(&json!({"keys": [jwk]})).unwrap()
    };
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &unkeyed(&key(1)), T0);
    let claims = json!({"iss": ISS, "aud": "api", "sub": "u1", "iat": T0, "exp": T0 + 3600});
    let header = |k: &SigningKey| {
        let input = format!("{}.{}", b64::encode(br#"{"alg":"EdDSA","typ":"at+jwt"}"#), b64::encode(&serde_json::to_vec(&claims).unwrap()));
        format!("{input}.{}", b64::encode(&k.sign(input.as_bytes()).to_bytes()))
    };
    assert!(decide(&mut gw, "/api", &header(&key(1)), T0).is_allow());
    assert!(is_applied(&serve(&mut gw, Source::Jwks(0), 200, &unkeyed(&key(2)), T0 + 300).expect("refresh due")));
    assert_eq!(code(&decide(&mut gw, "/api", &header(&key(1)), T0 + 301)), Some(ErrorCode::SignatureInvalid));
    assert!(decide(&mut gw, "/api", &header(&key(2)), T0 + 301).is_allow());
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
    match decide(&mut gw, "/api", &t, T0 + 601) {
        Decision::Deny(d) => assert_eq!(d.hold_until, None, "stale keys are not a cold start: no hold"),
        d => panic!("{d:?}"),
    }
    assert!(decide(&mut gw, "/open/x", &t, T0 + 601).is_allow(), "fail_open keeps the last good keys");
    // Recovery without restart.
    let f = std::iter::from_fn(|| gw.poll_fetch(at(T0 + 700))).find(|f| f.source == Source::Jwks(0)).unwrap();
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, at(T0 + 700));
    let t = token("k1", &key(1), "s", T0 + 700, T0 + 1300);
    assert!(decide(&mut gw, "/api", &t, T0 + 701).is_allow());
}

#[test]
fn revocation_feed_applies_flushes_cache_and_guards_rollback() {
    let mut gw = gateway(true);
    let k = key(1);
    let t = token("k1", &k, "s1", T0, T0 + 600);
    // Cold start: the feed waits for the keys that sign it.
    let first = gw.poll_fetch(at(T0)).unwrap();
    assert_eq!(first.source, Source::Jwks(0));
    assert!(gw.poll_fetch(at(T0)).is_none(), "the feed is not fetched before its keys");
    gw.handle_fetch(first.id, FetchResponse { status: 200, body: &jwks(&[("k1", &k)]), etag: None }, at(T0));
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0)), Some(ErrorCode::RevocationsStale), "fail closed before the first feed");
    let fetch = gw.poll_fetch(at(T0)).expect("the feed, now that its keys are in");
    assert_eq!(fetch.source, Source::Revocations);
    assert!(fetch.headers.contains(&("x-api-key".to_string(), "agk_gateway".to_string())));
    assert!(fetch.headers.contains(&("x-api-secret".to_string(), "s3cret".to_string())));
    let f1 = feed(&k, 1, T0, T0 + 60, &[]);
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: f1.as_bytes(), etag: Some("\"f1\"") }, at(T0 + 1));
    let evs = events(&mut gw);
    assert!(
        matches!(&evs[1], MaterialEvent::Applied { source: Source::Revocations, copy, .. } if copy.keep_for_s == 59),
        "kept until the feed's exp: {evs:?}"
    );
    assert_eq!(evs.last(), Some(&MaterialEvent::Ready));
    assert!(decide(&mut gw, "/api", &t, T0 + 1).is_allow());
    match decide(&mut gw, "/api", &t, T0 + 2) {
        Decision::Allow(a) => assert!(a.cache_hit, "second use is a cache hit"),
        d => panic!("{d:?}"),
    }
    // The session is revoked: the next feed flushes the cache and the token is denied.
    let f2 = feed(&k, 2, T0 + 5, T0 + 65, &["s1"]);
    let fetch = std::iter::from_fn(|| gw.poll_fetch(at(T0 + 6))).find(|f| f.source == Source::Revocations).unwrap();
    assert!(fetch.headers.contains(&("if-none-match".to_string(), "\"f1\"".to_string())));
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: f2.as_bytes(), etag: None }, at(T0 + 6));
    assert!(is_applied(&event_of(&mut gw, Source::Revocations)));
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 6)), Some(ErrorCode::SessionRevoked));
    // An older feed (rollback) is refused; the same version re-signed later extends freshness.
    assert_eq!(
        apply(&mut gw, Source::Revocations, f1.as_bytes(), T0 + 7),
        MaterialEvent::Rejected {
            source: Source::Revocations,
            via: Via::Host,
            reason: RejectReason::FeedRollback { applied: 2, received: 1 }
        }
    );
    let f2b = feed(&k, 2, T0 + 60, T0 + 120, &["s1"]);
    assert!(is_applied(&apply(&mut gw, Source::Revocations, f2b.as_bytes(), T0 + 60)));
    assert_eq!(gw.status().feed_expires_at, Some(at(T0 + 120)));
    // A forged feed (other key) and a feed presented as a token are refused.
    let forged = feed(&key(9), 3, T0 + 61, T0 + 200, &[]);
    assert!(matches!(
        apply(&mut gw, Source::Revocations, forged.as_bytes(), T0 + 61),
        MaterialEvent::Rejected { reason: RejectReason::FeedSignature, .. }
    ));
    assert_eq!(code(&decide(&mut gw, "/api", &f2b, T0 + 61)), Some(ErrorCode::TypNotAllowed));
}

#[test]
fn stale_feed_fail_closed_and_fail_open_still_honours_known_revocations() {
    let mut gw = gateway(true);
    let k = key(1);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k)]), T0);
    apply(&mut gw, Source::Revocations, feed(&k, 1, T0, T0 + 30, &["bad"]).as_bytes(), T0);
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
    assert_eq!(
        apply(&mut gw, Source::Revocations, f.as_bytes(), T0),
        MaterialEvent::KeptPending { source: Source::Revocations, via: Via::Host, reason: PendingReason::FeedKeyUnknown }
    );
    gw.apply_material(Source::Jwks(0), &jwks(&[("k1", &k)]), at(T0 + 1), at(T0 + 1));
    let evs = events(&mut gw);
    assert!(matches!(&evs[0], MaterialEvent::Applied { source: Source::Jwks(0), .. }), "{evs:?}");
    assert!(
        matches!(&evs[1], MaterialEvent::Applied { source: Source::Revocations, via: Via::Host, copy } if copy.body.as_ref() == f.as_bytes()),
        "{evs:?}"
    );
    assert_eq!(evs[2], MaterialEvent::Ready);
    assert_eq!(gw.status().feed_version, Some(4));
}

#[test]
fn a_feed_waiting_for_its_key_is_not_a_fetch_failure() {
    let mut gw = gateway(true);
    let (k1, k2) = (key(1), key(2));
    answer(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k1)]), T0);
    // The feed arrives signed by k2, which the gateway does not have: kept, keys refetched.
    let signed_by_k2 = {
        let claims = json!({"iss": ISS, "iat": T0, "exp": T0 + 60, "ver": 1, "watermark": T0, "revoked": {}});
        sign("k2", &k2, "revocations+jwt", &claims)
    };
    let f = gw.poll_fetch(at(T0)).unwrap();
    assert_eq!(f.source, Source::Revocations);
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: signed_by_k2.as_bytes(), etag: Some("\"p\"") }, at(T0));
    assert!(matches!(event_of(&mut gw, Source::Revocations), MaterialEvent::KeptPending { .. }));
    let refetch = gw.poll_fetch(at(T0)).expect("the feed's key is asked for at once");
    assert_eq!(refetch.source, Source::Jwks(0));
    assert_eq!(gw.status().sources[1].consecutive_failures, 0, "not counted as a failed feed fetch");
    gw.handle_fetch(refetch.id, FetchResponse { status: 200, body: &jwks(&[("k1", &k1), ("k2", &k2)]), etag: None }, at(T0 + 1));
    assert_eq!(gw.status().feed_version, Some(1));
    // The pending feed's ETag was not kept: the next poll asks for the feed afresh.
    let next = std::iter::from_fn(|| gw.poll_fetch(at(T0 + 5))).find(|f| f.source == Source::Revocations).unwrap();
    assert!(!next.headers.iter().any(|(k, _)| k == "if-none-match"), "{:?}", next.headers);
}

#[test]
fn cold_start_holds_requests_until_material_or_the_wait_ends() {
    let mut gw = gateway(true);
    let k = key(1);
    let t = token("k1", &k, "s1", T0, T0 + 600);
    let hold = |d: Decision| match d {
        Decision::Deny(d) => (d.code, d.hold_until),
        d => panic!("{d:?}"),
    };
    // Default fetch.cold_start_wait_ms = 3000, counted from the first thing the gateway heard.
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0)), (ErrorCode::KeysUnavailable, Some(UnixTime::from_millis(T0 * 1000 + 3000))));
    answer(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k)]), T0);
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0 + 1)), (ErrorCode::RevocationsStale, Some(UnixTime::from_millis(T0 * 1000 + 3000))));
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0 + 3)), (ErrorCode::RevocationsStale, None), "the wait is over");
    // A source whose first fetch failed is not on its way: no hold.
    let mut gw = gateway(true);
    decide(&mut gw, "/api", &t, T0);
    let f = gw.poll_fetch(at(T0)).unwrap();
    gw.fetch_failed(f.id, at(T0));
    assert_eq!(event_of(&mut gw, Source::Jwks(0)), MaterialEvent::FetchFailed { source: Source::Jwks(0), reason: FetchFailure::Transport });
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0)), (ErrorCode::KeysUnavailable, None));
    // Nothing but material-related denials are ever held.
    let mut gw = gateway(false);
    assert_eq!(hold(decide(&mut gw, "/api", "not-a-token", T0)), (ErrorCode::TokenMalformed, None));
    // Configured off: answered at once.
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks_uri": "https://issuer.test/jwks"}],
        "routes": [{"prefix": "/", "require": "authenticated"}], "fetch": {"cold_start_wait_ms": 0}});
    let mut gw = Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0)), (ErrorCode::KeysUnavailable, None));
}

#[test]
fn fetch_timeouts_are_failures_and_late_answers_are_ignored() {
    let mut gw = gateway(false);
    let f = gw.poll_fetch(at(T0)).unwrap();
    assert!(gw.poll_fetch(at(T0 + 10)).is_none(), "timed out at +10, retried after the 1 s backoff");
    assert_eq!(event_of(&mut gw, Source::Jwks(0)), MaterialEvent::FetchFailed { source: Source::Jwks(0), reason: FetchFailure::Timeout });
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &key(1))]), etag: None }, at(T0 + 10));
    assert_eq!(events(&mut gw), vec![MaterialEvent::Ignored { id: f.id }]);
    assert!(!gw.is_ready());
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
    match gw.decide(&Request { method: "GET", path: "/strip/a?q=1", headers: &headers }, at(T0), "r") {
        Decision::Allow(a) => {
            let removed: Vec<&str> = a.remove_headers.iter().map(|h| h.as_ref()).collect();
            assert!(removed.contains(&"authorization"));
            assert!(removed.contains(&"x-user"), "a configured identity header outside the prefix is stripped too");
            assert!(removed.contains(&"x-auth-roles"));
            assert!(a.headers_to_set().iter().any(|(n, v)| *n == "x-user" && v == "u1"));
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn http_errors_back_off_and_304_keeps_material() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let f = gw.poll_fetch(at(T0 + 300)).unwrap();
    assert!(f.headers.contains(&("if-none-match".to_string(), "\"v1\"".to_string())));
    gw.handle_fetch(f.id, FetchResponse { status: 304, body: b"", etag: None }, at(T0 + 300));
    match event_of(&mut gw, Source::Jwks(0)) {
        MaterialEvent::Confirmed { via: Via::Fetch, copy, .. } => {
            assert_eq!(copy.fetched_at, at(T0 + 300), "a 304 re-dates the copy for host caches");
            assert_eq!(copy.body.as_ref(), jwks(&[("k1", &key(1))]).as_slice());
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(gw.poll_timeout(), Some(at(T0 + 600)));
    let f = gw.poll_fetch(at(T0 + 600)).unwrap();
    gw.handle_fetch(f.id, FetchResponse { status: 500, body: b"", etag: None }, at(T0 + 600));
    assert_eq!(
        event_of(&mut gw, Source::Jwks(0)),
        MaterialEvent::FetchFailed { source: Source::Jwks(0), reason: FetchFailure::HttpStatus(500) }
    );
    assert_eq!(gw.poll_timeout(), Some(at(T0 + 601)));
    let f = gw.poll_fetch(at(T0 + 601)).unwrap();
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: b"{\"keys\":[]}", etag: None }, at(T0 + 601));
    assert!(matches!(event_of(&mut gw, Source::Jwks(0)), MaterialEvent::Rejected { reason: RejectReason::Jwks(_), .. }));
    assert_eq!(gw.poll_timeout(), Some(at(T0 + 603)));
    gw.handle_fetch(f.id, FetchResponse { status: 200, body: b"", etag: None }, at(T0 + 602));
    assert_eq!(events(&mut gw), vec![MaterialEvent::Ignored { id: f.id }]);
    let t = token("k1", &key(1), "s", T0 + 602, T0 + 900);
    assert!(decide(&mut gw, "/api", &t, T0 + 602).is_allow(), "last good keys still serve");
    // A 304 with nothing to confirm is a failed fetch.
    let mut fresh = gateway(false);
    let f = fresh.poll_fetch(at(T0)).unwrap();
    fresh.handle_fetch(f.id, FetchResponse { status: 304, body: b"", etag: None }, at(T0));
    assert_eq!(
        event_of(&mut fresh, Source::Jwks(0)),
        MaterialEvent::FetchFailed { source: Source::Jwks(0), reason: FetchFailure::HttpStatus(304) }
    );
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
    let d = gw.decide(&Request { method: "GET", path: "/api", headers: &[("authorization", &merged)] }, at(T0), "r");
    assert_eq!(code(&d), Some(ErrorCode::ConflictingCredentials));
    let d =
        gw.decide(&Request { method: "GET", path: "/api", headers: &[("x-api-key", "agk_a, agk_b"), ("x-api-secret", "s")] }, at(T0), "r");
    assert_eq!(code(&d), Some(ErrorCode::ConflictingCredentials));
    assert!(decide(&mut gw, "/api", &t, T0).is_allow(), "a single credential is unaffected");
}

fn inline_gateway(routes: Value, extra: Value) -> Gateway {
    let mut cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": {"keys": [jwk("k1", &key(1))]}}], "routes": routes});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap()
}

fn token_with(claims: Value) -> String {
    let mut c = json!({"iss": ISS, "aud": "api", "sub": "u1", "iat": T0, "exp": T0 + 600});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign("k1", &key(1), "at+jwt", &c)
}

fn request(gw: &mut Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    gw.decide(&Request { method, path, headers }, at(T0), "rid")
}

#[test]
fn method_override_headers_are_judged_as_the_method_they_ask_for() {
    let mut gw = inline_gateway(
        json!([{"prefix": "/admin", "methods": ["GET"], "require": "authenticated"},
               {"prefix": "/admin", "require": {"any_role": ["admin"]}},
               {"prefix": "/", "require": "anonymous"}]),
        json!({}),
    );
    let reader = format!("Bearer {}", token_with(json!({"roles": ["reader"]})));
    let admin = format!("Bearer {}", token_with(json!({"roles": ["admin"]})));
    assert!(request(&mut gw, "GET", "/admin/users", &[("authorization", &reader)]).is_allow());
    for header in ["X-HTTP-Method-Override", "x-http-method", "X-Method-Override"] {
        let d = request(&mut gw, "GET", "/admin/users", &[("authorization", &reader), (header, "DELETE")]);
        assert_eq!(code(&d), Some(ErrorCode::InsufficientRole), "{header}: a reader must not reach DELETE through GET");
        assert!(request(&mut gw, "POST", "/admin/users", &[("authorization", &admin), (header, "delete")]).is_allow());
    }
    // An anonymous route's request asking for a protected method needs the credential too.
    assert_eq!(code(&request(&mut gw, "GET", "/admin", &[("x-http-method-override", "PUT")])), Some(ErrorCode::CredentialMissing));
    for (bad, why) in [("DE LETE", "not a token"), ("", "empty")] {
        assert_eq!(code(&request(&mut gw, "GET", "/x", &[("x-http-method-override", bad)])), Some(ErrorCode::InvalidMethod), "{why}");
    }
    let two = [("x-http-method-override", "PUT"), ("x-method-override", "DELETE")];
    assert_eq!(code(&request(&mut gw, "GET", "/x", &two)), Some(ErrorCode::InvalidMethod), "two different overrides");
    assert_eq!(code(&request(&mut gw, "G ET", "/x", &[])), Some(ErrorCode::InvalidMethod));
}

#[test]
fn method_override_query_parameters_are_judged_as_the_method_they_ask_for() {
    let mut gw = inline_gateway(
        json!([{"prefix": "/admin", "methods": ["GET", "POST"], "require": "authenticated"},
               {"prefix": "/admin", "require": {"any_role": ["admin"]}},
               {"prefix": "/", "require": "anonymous"}]),
        json!({"cookie": {"name": "at", "csrf_cookie": "csrf"}}),
    );
    let reader = format!("Bearer {}", token_with(json!({"roles": ["reader"]})));
    let admin = format!("Bearer {}", token_with(json!({"roles": ["admin"]})));
    assert!(request(&mut gw, "POST", "/admin/users?x=1", &[("authorization", &reader)]).is_allow());
    // Laravel and Symfony run DELETE for a POST with `_method=DELETE` in the query; PHP reads
    // `.method` and `%5Fmethod` as `_method`.
    for target in ["/admin/users?_method=DELETE", "/admin/users?x=1&.method=delete", "/admin/users?%5Fmethod=Delete"] {
        let d = request(&mut gw, "POST", target, &[("authorization", &reader)]);
        assert_eq!(code(&d), Some(ErrorCode::InsufficientRole), "{target}: a reader must not reach DELETE through POST");
        assert!(request(&mut gw, "POST", target, &[("authorization", &admin)]).is_allow(), "{target}");
    }
    assert_eq!(code(&request(&mut gw, "POST", "/admin?_method=PUT", &[])), Some(ErrorCode::CredentialMissing));
    // Overrides that disagree, or are no method, are refused whatever the route.
    for target in ["/x?_method=DE%20LETE", "/x?_method=", "/x?_method=PUT&_method=DELETE"] {
        assert_eq!(code(&request(&mut gw, "POST", target, &[])), Some(ErrorCode::InvalidMethod), "{target}");
    }
    let header = [("x-http-method-override", "PUT")];
    assert_eq!(code(&request(&mut gw, "POST", "/x?_method=DELETE", &header)), Some(ErrorCode::InvalidMethod));
    assert!(request(&mut gw, "POST", "/x?_method=put", &header).is_allow(), "the same method twice is one override");
    // A GET asking for POST is a state change: a cookie credential needs its CSRF evidence.
    let jar = format!("at={}", token_with(json!({"roles": ["admin"]})));
    assert!(request(&mut gw, "GET", "/admin/users", &[("cookie", &jar)]).is_allow());
    let d = request(&mut gw, "GET", "/admin/users?_method=POST", &[("cookie", &jar)]);
    assert_eq!(code(&d), Some(ErrorCode::CsrfTokenInvalid));
}

#[test]
fn org_restricted_routes_refuse_other_tenants() {
    let mut gw = inline_gateway(
        json!([{"prefix": "/admin", "require": {"orgs": ["org_operator"], "any_role": ["admin"]}},
               {"prefix": "/ops", "require": {"orgs": ["org_operator", "org_partner"]}}]),
        json!({}),
    );
    let op = format!("Bearer {}", token_with(json!({"org": "org_operator", "roles": ["admin"]})));
    let tenant_admin = format!("Bearer {}", token_with(json!({"org": "org_tenant", "roles": ["admin"]})));
    let no_org = format!("Bearer {}", token_with(json!({"roles": ["admin"]})));
    let partner = format!("Bearer {}", token_with(json!({"org": "org_partner"})));
    assert!(request(&mut gw, "GET", "/admin", &[("authorization", &op)]).is_allow());
    assert_eq!(code(&request(&mut gw, "GET", "/admin", &[("authorization", &tenant_admin)])), Some(ErrorCode::OrgNotAllowed));
    assert_eq!(code(&request(&mut gw, "GET", "/admin", &[("authorization", &no_org)])), Some(ErrorCode::OrgNotAllowed));
    assert!(request(&mut gw, "GET", "/ops/x", &[("authorization", &partner)]).is_allow());
    assert_eq!(code(&request(&mut gw, "GET", "/admin", &[("authorization", &partner)])), Some(ErrorCode::OrgNotAllowed));
    for bad in [json!({"orgs": []}), json!({"orgs": [""]}), json!({"orgs": ["a\nb"]})] {
        let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": {"keys": [jwk("k1", &key(1))]}}],
            "routes": [{"prefix": "/", "require": bad}]});
        let err = Gateway::from_json(&serde_json::to_vec(&cfg).unwrap()).err().expect("refused");
        assert!(err.path.starts_with("routes[0].require"), "{err}");
    }
}

#[test]
fn strip_credential_removes_auth_cookies_but_keeps_the_others() {
    let cookie = json!({"name": "at", "csrf_cookie": "csrf"});
    let mut gw = inline_gateway(
        json!([{"prefix": "/strip", "require": "authenticated", "strip_credential": true},
               {"prefix": "/keep", "require": "authenticated"}]),
        json!({"cookie": cookie}),
    );
    let t = token_with(json!({}));
    let jar = format!("theme=dark; at={t}; csrf=c1");
    match request(&mut gw, "GET", "/strip", &[("cookie", &jar)]) {
        Decision::Allow(a) => {
            let set = a.headers_to_set();
            assert!(set.iter().any(|(n, v)| *n == "cookie" && v == "theme=dark"), "{set:?}");
        }
        d => panic!("{d:?}"),
    }
    let only_auth = format!("at={t}, csrf=c1");
    match request(&mut gw, "GET", "/strip", &[("cookie", &only_auth)]) {
        Decision::Allow(a) => {
            assert!(a.remove_headers.iter().any(|h| h == "cookie"));
            assert!(!a.headers_to_set().iter().any(|(n, _)| *n == "cookie"));
        }
        d => panic!("{d:?}"),
    }
    // A bearer request's unrelated cookies are left alone; a route that keeps credentials keeps cookies.
    let auth = format!("Bearer {t}");
    match request(&mut gw, "GET", "/strip", &[("authorization", &auth), ("cookie", "theme=dark")]) {
        Decision::Allow(a) => {
            assert!(!a.headers_to_set().iter().any(|(n, _)| *n == "cookie") && !a.remove_headers.iter().any(|h| h == "cookie"))
        }
        d => panic!("{d:?}"),
    }
    match request(&mut gw, "GET", "/keep", &[("cookie", &jar)]) {
        Decision::Allow(a) => assert!(!a.headers_to_set().iter().any(|(n, _)| *n == "cookie")),
        d => panic!("{d:?}"),
    }
}

#[test]
fn identity_values_are_forwarded_as_ascii_the_same_everywhere() {
    let mut gw = inline_gateway(json!([{"prefix": "/", "require": "authenticated"}]), json!({}));
    let auth = format!("Bearer {}", token_with(json!({"sub": "usr-é", "email": "josé@example.com", "org": "100%"})));
    match request(&mut gw, "GET", "/", &[("authorization", &auth)]) {
        Decision::Allow(a) => {
            let set = a.headers_to_set();
            let get = |n: &str| set.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
            assert_eq!(get("x-auth-subject").as_deref(), Some("usr-%C3%A9"));
            assert_eq!(get("x-auth-email").as_deref(), Some("jos%C3%A9@example.com"));
            assert_eq!(get("x-auth-org").as_deref(), Some("100%25"));
            assert_eq!(a.identity.as_ref().unwrap().email.as_deref(), Some("josé@example.com"), "the identity itself is not encoded");
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn feed_credentials_from_a_secret_store_are_checked() {
    let mut gw = gateway(true);
    assert!(gw.set_feed_credential("agk_new".into(), "s2".into()).is_ok());
    let f = std::iter::from_fn(|| gw.poll_fetch(at(T0))).find(|f| f.source == Source::Revocations);
    assert!(f.is_none(), "the feed still waits for its keys");
    for (key_id, secret, field) in [
        ("", "s", "revocations.credential.key_id"),
        ("agk\nx", "s", "revocations.credential.key_id"),
        ("k", "a b", "revocations.credential.secret"),
    ] {
        let err = gw.set_feed_credential(key_id.into(), secret.into()).unwrap_err();
        assert_eq!(err.path, field);
    }
    let mut no_feed = gateway(false);
    assert_eq!(no_feed.set_feed_credential("k".into(), "s".into()).unwrap_err().path, "revocations");
}

#[test]
fn an_instance_told_of_a_failure_elsewhere_stops_holding() {
    // An instance that does not fetch (another Envoy worker VM) hears of its fetcher's failure.
    let mut gw = gateway(false);
    let t = token("k1", &key(1), "s1", T0, T0 + 600);
    let hold = |d: Decision| match d {
        Decision::Deny(d) => d.hold_until,
        d => panic!("{d:?}"),
    };
    assert!(hold(decide(&mut gw, "/api", &t, T0)).is_some());
    gw.fetch_failed_elsewhere(Source::Jwks(0));
    assert_eq!(hold(decide(&mut gw, "/api", &t, T0)), None);
    assert!(events(&mut gw).is_empty(), "nothing of its own happened");
    // Its own schedule is untouched: were it to fetch, the first fetch is due at once.
    assert_eq!(gw.poll_fetch(at(T0)).map(|f| f.source), Some(Source::Jwks(0)));
}

/// A gateway with no provider and no HMAC key could verify nothing: refused unless every route
/// is anonymous. An API key sent to a gateway without keys is an unknown kid, however it looks.
#[test]
fn a_gateway_with_nothing_to_verify_with() {
    let err = Gateway::from_json(br#"{"routes":[{"prefix":"/","require":"authenticated"}]}"#).err().expect("refused");
    assert_eq!(err.path, "providers");
    assert!(Gateway::from_json(br#"{"routes":[{"prefix":"/","require":"anonymous"}]}"#).is_ok());
    let secret = "sGkBFmZwP6S4gbbps4ainVPLH4K_kPS3DyZ3P0YN9aM";
    let keys_only = format!(
        r#"{{"api_keys":{{"hmac_keys":[{{"kid":"hk1","secret":"{secret}"}}]}},"routes":[{{"prefix":"/","require":"authenticated"}}]}}"#
    );
    assert!(Gateway::from_json(keys_only.as_bytes()).is_ok());

    let providers_only = json!({
        "providers": [{"issuer": "https://issuer.test", "audiences": ["api"], "jwks": {"keys": [jwk("k1", &key(1))]}}],
        "routes": [{"prefix": "/", "require": "authenticated"}],
    });
    let mut gw = Gateway::from_json(&serde_json::to_vec(&providers_only).unwrap()).unwrap();
    for (key_id, secret) in [("agk_not-even-base64!", "x"), ("agk_e30", "AAAA")] {
        let headers = [("x-api-key", key_id), ("x-api-secret", secret)];
        let d = gw.decide(&Request { method: "GET", path: "/x", headers: &headers }, at(1_700_000_000), "r");
        match d {
            Decision::Deny(d) => assert_eq!(d.code, ErrorCode::ApiKeyUnknownKid, "{key_id}"),
            Decision::Allow(_) => panic!("allowed"),
        }
    }
}

/// What hosts write out of a decision: the scope header only when there are scopes, a challenge
/// only on 401s (and the RFC 6750 forms on bearer routes), descriptions, headers and bodies.
#[test]
fn answers_carry_exactly_what_hosts_write_out() {
    let mut gw = inline_gateway(
        json!([{"prefix": "/admin", "require": {"any_role": ["admin"]}},
               {"prefix": "/keys", "require": {"any_role": ["admin"]}, "credentials": ["api_key"]},
               {"prefix": "/", "require": "authenticated"}]),
        json!({"api_keys": {"hmac_keys": [{"kid": "hk1", "secret": b64::encode(&[7u8; 32])}]}}),
    );
    let header = |d: &Decision, name: &str| match d {
        Decision::Allow(a) => a.headers_to_set().iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()),
        Decision::Deny(d) => d.response_headers().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v),
    };
    let scoped = format!("Bearer {}", token_with(json!({"scope": "read write"})));
    let unscoped = format!("Bearer {}", token_with(json!({})));
    let d = request(&mut gw, "GET", "/x", &[("authorization", &scoped)]);
    assert_eq!(header(&d, "x-auth-scope").as_deref(), Some("read write"));
    let d = request(&mut gw, "GET", "/x", &[("authorization", &unscoped)]);
    assert!(d.is_allow() && header(&d, "x-auth-scope").is_none(), "no scopes, no header");

    // 403 on a bearer route: no challenge. The description, headers and body agree.
    let d = request(&mut gw, "GET", "/admin", &[("authorization", &unscoped)]);
    let Decision::Deny(deny) = &d else { panic!("{d:?}") };
    assert_eq!((deny.status(), deny.code, deny.www_authenticate.as_deref()), (403, ErrorCode::InsufficientRole, None));
    assert_eq!(deny.description(), ErrorCode::InsufficientRole.description());
    assert_eq!(header(&d, "x-error").as_deref(), Some(deny.description()));
    assert_eq!(header(&d, "x-error-code").as_deref(), Some("insufficient_role"));
    assert_eq!(header(&d, "x-error-id").as_deref(), Some("rid"));
    assert!(header(&d, "www-authenticate").is_none());
    let body: Value = serde_json::from_str(&deny.body()).unwrap();
    assert_eq!(body, json!({"error": "insufficient_role", "error_description": deny.description(), "error_id": "rid"}));
    let exact = format!(r#"{{"error":"insufficient_role","error_description":"{}","error_id":"rid"}}"#, deny.description());
    assert_eq!(deny.body(), exact, "compact, in this order");
    // 401 on a bearer route: the invalid_token challenge.
    let d = request(&mut gw, "GET", "/x", &[("authorization", "Bearer a.b.c")]);
    assert_eq!(
        header(&d, "www-authenticate").as_deref(),
        Some(r#"Bearer realm="authgate", error="invalid_token", error_description="the token is not a well-formed compact JWS""#)
    );
    // An API-key route: `ApiKey` challenges on 401s only.
    let d = request(&mut gw, "GET", "/keys", &[]);
    assert_eq!(header(&d, "www-authenticate").as_deref(), Some(r#"ApiKey realm="authgate""#));
    let ring = auth_core::apikey::HmacKeyRing::new([("hk1", &[7u8; 32][..])]);
    let claims = auth_core::apikey::ApiKeyClaims {
        v: 1,
        kid: "hk1".into(),
        id: "key-1".into(),
        sub: "u1".into(),
        org: None,
        roles: vec!["reader".into()],
        iat: T0,
        exp: None,
    };
    let (key_id, secret) = ring.mint(&claims).unwrap();
    let d = request(&mut gw, "GET", "/keys", &[("x-api-key", &key_id), ("x-api-secret", &secret)]);
    assert_eq!(code(&d), Some(ErrorCode::InsufficientRole));
    assert!(header(&d, "www-authenticate").is_none(), "a 403 has no challenge");
}

/// Hosts' own denials (a configuration that did not load, a failed host call): the detail
/// follows the description, as visible ASCII (anything else becomes `?`), at most 400 characters;
/// the error id is made safe.
#[test]
fn host_errors_carry_a_safe_detail() {
    let d = auth_core::host_error(ErrorCode::ConfigInvalid, "id 1\r\n", Some("routes[0].prefix: bad\n\"é\" value"));
    assert_eq!(d.status(), 500);
    assert_eq!(d.description(), "the gateway configuration is invalid: routes[0].prefix: bad?\"?\" value");
    assert_eq!(d.error_id, "id1");
    let long = auth_core::host_error(ErrorCode::ConfigInvalid, "r", Some(&"x".repeat(1000)));
    assert_eq!(long.description().len(), 400);
    assert_eq!(auth_core::host_error(ErrorCode::KeysUnavailable, "r", None).description(), ErrorCode::KeysUnavailable.description());
}

/// Which codes are 401s (they carry a challenge), and how codes and config errors print.
#[test]
fn error_codes_classify_and_print() {
    for (code, unauthenticated) in [
        (ErrorCode::TokenExpired, true),
        (ErrorCode::CredentialMissing, true),
        (ErrorCode::ApiKeyRevoked, true),
        (ErrorCode::InsufficientRole, false),
        (ErrorCode::ConflictingCredentials, false),
        (ErrorCode::KeysUnavailable, false),
    ] {
        assert_eq!(code.is_unauthenticated(), unauthenticated, "{code:?}");
    }
    assert_eq!(ErrorCode::TokenExpired.to_string(), "token_expired");
    assert_eq!(auth_core::ConfigError::new("routes[0]", "bad").to_string(), "routes[0]: bad");
}

/// The fetched sources a host serves: each with its URL and a stable key to share copies under
/// (the same URL gives the same key in every instance; another URL another key).
#[test]
fn sources_name_what_is_fetched() {
    let gw = gateway(true);
    let sources: Vec<(Source, String, String)> = gw.sources().iter().map(|s| (s.source, s.url.to_string(), s.key.clone())).collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert_eq!((sources[0].0, sources[0].1.as_str()), (Source::Jwks(0), "https://issuer.test/jwks"));
    assert_eq!((sources[1].0, sources[1].1.as_str()), (Source::Revocations, "https://issuer.test/v1/revocations"));
    assert!(sources.iter().all(|s| s.2.len() == 16 && s.2.bytes().all(|b| b.is_ascii_hexdigit())), "{sources:?}");
    assert_ne!(sources[0].2, sources[1].2);
    assert_eq!(gateway(true).sources()[0].key, sources[0].2, "stable across instances");
    assert!(
        inline_gateway(json!([{"prefix": "/", "require": "authenticated"}]), json!({})).sources().is_empty(),
        "inline keys are not fetched"
    );
}

/// RFC 6750's challenge forms on bearer routes: none but the realm without a credential,
/// `invalid_request` for two credentials, `insufficient_scope` naming the route's scopes.
#[test]
fn bearer_challenges_follow_rfc_6750() {
    let mut gw = inline_gateway(
        json!([{"prefix": "/scoped", "require": {"scopes": ["read", "write"]}}, {"prefix": "/", "require": "authenticated"}]),
        json!({}),
    );
    let challenge = |d: Decision| match d {
        Decision::Deny(d) => d.www_authenticate,
        d => panic!("{d:?}"),
    };
    assert_eq!(challenge(request(&mut gw, "GET", "/x", &[])).as_deref(), Some(r#"Bearer realm="authgate""#));
    let t = format!("Bearer {}", token_with(json!({"scope": "read"})));
    assert_eq!(
        challenge(request(&mut gw, "GET", "/scoped", &[("authorization", &t)])).as_deref(),
        Some(
            r#"Bearer realm="authgate", error="insufficient_scope", error_description="the credential lacks a required scope", scope="read write""#
        )
    );
    assert_eq!(
        challenge(request(&mut gw, "GET", "/x", &[("authorization", &t), ("authorization", &t)])).as_deref(),
        Some(r#"Bearer realm="authgate", error="invalid_request", error_description="the request carries more than one credential""#)
    );
}

/// Material for each source goes to that source: the feed is fetched from its own URL, and a
/// host handing in material for a source the config does not have is refused.
#[test]
fn each_source_gets_its_own_material() {
    let mut gw = gateway(true);
    let k = key(1);
    assert!(is_applied(&answer(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    let fetch = gw.poll_fetch(at(T0)).expect("the feed");
    assert_eq!((fetch.source, fetch.url.as_str()), (Source::Revocations, "https://issuer.test/v1/revocations"));
    gw.apply_material(Source::Jwks(3), &jwks(&[("k1", &k)]), at(T0), at(T0));
    assert!(matches!(event_of(&mut gw, Source::Jwks(3)), MaterialEvent::Rejected { reason: RejectReason::UnknownSource, .. }));
}

/// Size limits: a JWKS up to 1 MiB and a feed up to 16 MiB are taken (sizes well past a
/// kilobyte are ordinary), one byte more is refused.
#[test]
fn material_size_limits() {
    let k = key(1);
    let mut gw = gateway(true);
    let mut big: Value = serde_json::from_slice(&jwks(&[("k1", &k)])).unwrap();
    for i in 0..2000 {
        big["keys"].as_array_mut().unwrap().push(jwk(&format!("extra-{i}"), &key(2)));
    }
    let big = serde_json::to_vec(&big).unwrap();
    assert!(big.len() > 200_000 && big.len() < 1 << 20);
    assert!(is_applied(&answer(&mut gw, Source::Jwks(0), &big, T0)), "a {}-byte JWKS", big.len());
    let mut padded = big.clone();
    padded.truncate(padded.len() - 1);
    padded.extend(std::iter::repeat(b' ').take((1 << 20) + 1 - padded.len() - 1));
    padded.push(b'}');
    assert_eq!(padded.len(), (1 << 20) + 1);
    assert!(matches!(
        apply(&mut gw, Source::Jwks(0), &padded, T0),
        MaterialEvent::Rejected { reason: RejectReason::TooLarge { limit: 1_048_576 }, .. }
    ));

    let sids: Vec<String> = (0..60_000).map(|i| format!("session-{i:06}")).collect();
    let sid_refs: Vec<&str> = sids.iter().map(String::as_str).collect();
    let f = feed(&k, 1, T0, T0 + 60, &sid_refs);
    assert!(f.len() > 2_000_000, "{}", f.len());
    assert!(is_applied(&apply(&mut gw, Source::Revocations, f.as_bytes(), T0)), "a {}-byte feed", f.len());
    let huge = "a".repeat(16 * 1024 * 1024 + 1);
    assert!(matches!(
        apply(&mut gw, Source::Revocations, huge.as_bytes(), T0),
        MaterialEvent::Rejected { reason: RejectReason::TooLarge { limit: 16_777_216 }, .. }
    ));
}

/// For an instance that does not fetch: an unknown `kid` raises a refetch request it can take
/// once and forward; the instance that fetches takes a forwarded request as its own. Readiness
/// follows the material.
#[test]
fn refetch_requests_travel_between_instances() {
    let k = key(1);
    let mut fetcher = gateway(false);
    let mut other = gateway(false);
    assert!(!fetcher.is_ready() && !other.is_ready());
    assert!(is_applied(&answer(&mut fetcher, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    assert!(is_applied(&apply(&mut other, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    assert!(fetcher.is_ready() && other.is_ready());
    let rotated = token("k2", &key(2), "s1", T0, T0 + 600);
    assert_eq!(code(&decide(&mut other, "/api", &rotated, T0 + 100)), Some(ErrorCode::UnknownKid));
    assert_eq!(other.take_refetch_requests(), vec![Source::Jwks(0)]);
    assert!(other.take_refetch_requests().is_empty(), "taken once");
    assert!(fetcher.poll_fetch(at(T0 + 100)).is_none(), "nothing due before the request arrives");
    fetcher.request_refetch(Source::Jwks(0));
    assert_eq!(fetcher.poll_fetch(at(T0 + 100)).map(|f| f.source), Some(Source::Jwks(0)));
}

/// A JWKS answer's ETag comes back as `if-none-match` only when it can go into a header: at
/// most 256 bytes, no control characters.
#[test]
fn etags_are_repeated_only_when_header_safe() {
    let k = key(1);
    for (etag, repeated) in [
        ("\"v1\"".to_string(), true),
        (format!("\"{}\"", "e".repeat(254)), true),
        (format!("\"{}\"", "e".repeat(255)), false),
        ("\"v1\"\r\nx-injected: 1".to_string(), false),
    ] {
        let mut gw = gateway(false);
        let f = gw.poll_fetch(at(T0)).expect("JWKS due");
        gw.handle_fetch(f.id, FetchResponse { status: 200, body: &jwks(&[("k1", &k)]), etag: Some(&etag) }, at(T0));
        let next = gw.poll_fetch(at(T0 + 300)).expect("the refresh");
        let sent = next.headers.iter().find(|(n, _)| n == "if-none-match").map(|(_, v)| v.clone());
        assert_eq!(sent, repeated.then(|| etag.clone()), "{} bytes", etag.len());
    }
}

/// A copy handed in by the host is kept for what is left of the stale bound since it was
/// fetched, not since it arrived.
#[test]
fn a_host_copy_is_kept_for_the_rest_of_its_stale_bound() {
    let mut gw = gateway(false);
    gw.apply_material(Source::Jwks(0), &jwks(&[("k1", &key(1))]), at(T0 - 100), at(T0));
    match event_of(&mut gw, Source::Jwks(0)) {
        MaterialEvent::Applied { copy, .. } => assert_eq!((copy.fetched_at, copy.keep_for_s), (at(T0 - 100), 500)),
        e => panic!("{e:?}"),
    }
}

/// Feeds within one version: a later `iat` is applied without flushing the token cache (nothing
/// was revoked), an earlier or the same one changes nothing; a new version flushes the cache.
#[test]
fn feed_versions_and_the_token_cache() {
    let k = key(1);
    let mut gw = gateway(true);
    assert!(is_applied(&answer(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    assert!(is_applied(&apply(&mut gw, Source::Revocations, feed(&k, 1, T0 + 10, T0 + 70, &[]).as_bytes(), T0 + 10)));
    let t = token("k1", &k, "s1", T0, T0 + 600);
    let hit = |gw: &mut Gateway, now: i64| match decide(gw, "/api", &t, now) {
        Decision::Allow(a) => a.cache_hit,
        d => panic!("{d:?}"),
    };
    assert!(!hit(&mut gw, T0 + 11));
    assert!(hit(&mut gw, T0 + 11));
    let older = apply(&mut gw, Source::Revocations, feed(&k, 1, T0, T0 + 60, &[]).as_bytes(), T0 + 12);
    assert!(matches!(older, MaterialEvent::Confirmed { .. }), "an older feed of the same version: {older:?}");
    let same = apply(&mut gw, Source::Revocations, feed(&k, 1, T0 + 10, T0 + 70, &[]).as_bytes(), T0 + 12);
    assert!(matches!(same, MaterialEvent::Confirmed { .. }), "{same:?}");
    assert_eq!(gw.status().feed_expires_at, Some(at(T0 + 70)), "the newer feed stays in use");
    assert!(is_applied(&apply(&mut gw, Source::Revocations, feed(&k, 1, T0 + 20, T0 + 80, &[]).as_bytes(), T0 + 20)));
    assert!(hit(&mut gw, T0 + 20), "same version: the cache stays");
    assert!(is_applied(&apply(&mut gw, Source::Revocations, feed(&k, 2, T0 + 30, T0 + 90, &[]).as_bytes(), T0 + 30)));
    assert!(!hit(&mut gw, T0 + 30), "a new version flushes the cache");
}

/// Size limits at the byte: exactly 1 MiB of JWKS and 16 MiB of feed get past the size check
/// (and are judged on their content), one more byte does not.
#[test]
fn material_size_limits_are_exact() {
    let mut gw = gateway(true);
    let reason = |e: MaterialEvent| match e {
        MaterialEvent::Rejected { reason, .. } => reason,
        e => panic!("{e:?}"),
    };
    let jwks_of = |n: usize| vec![b'x'; n];
    assert!(!matches!(reason(apply(&mut gw, Source::Jwks(0), &jwks_of(1 << 20), T0)), RejectReason::TooLarge { .. }));
    assert!(matches!(reason(apply(&mut gw, Source::Jwks(0), &jwks_of((1 << 20) + 1), T0)), RejectReason::TooLarge { .. }));
    let k = key(1);
    assert!(is_applied(&apply(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    let feed_of = |n: usize| vec![b'x'; n];
    assert!(!matches!(reason(apply(&mut gw, Source::Revocations, &feed_of(16 << 20), T0)), RejectReason::TooLarge { .. }));
    assert!(matches!(reason(apply(&mut gw, Source::Revocations, &feed_of((16 << 20) + 1), T0)), RejectReason::TooLarge { .. }));
}

/// A token verified while the keys were fresh is not served from the cache once they are past
/// their stale bound on a fail-closed route; a fail-open route still takes it.
#[test]
fn cached_tokens_follow_the_stale_policy_of_the_route() {
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &key(1))]), T0);
    let t = token("k1", &key(1), "s", T0, T0 + 2000);
    assert!(decide(&mut gw, "/api", &t, T0).is_allow());
    serve(&mut gw, Source::Jwks(0), 503, b"", T0 + 300);
    match decide(&mut gw, "/api", &t, T0 + 599) {
        Decision::Allow(a) => assert!(a.cache_hit),
        d => panic!("{d:?}"),
    }
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 601)), Some(ErrorCode::KeysUnavailable), "fail closed, stale keys");
    match decide(&mut gw, "/open", &t, T0 + 601) {
        Decision::Allow(a) => assert!(a.cache_hit, "fail open: served from the cache"),
        d => panic!("{d:?}"),
    }
}

/// A token without `kid` is checked against the keys of its algorithm only: verified by the
/// right one, refused as an unknown key when there is none of its algorithm, and with exactly
/// one candidate the check goes to the host like any other.
#[test]
fn tokens_without_kid_try_the_keys_of_their_algorithm() {
    let mut gw = inline_gateway(json!([{"prefix": "/", "require": "authenticated"}]), json!({}));
    let unkeyed = |alg: &str, k: &SigningKey| {
        let header = b64::encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt"}}"#).as_bytes());
        let claims = json!({"iss": ISS, "aud": "api", "sub": "u1", "iat": T0, "exp": T0 + 600});
        let input = format!("{header}.{}", b64::encode(&serde_json::to_vec(&claims).unwrap()));
        format!("Bearer {input}.{}", b64::encode(&k.sign(input.as_bytes()).to_bytes()))
    };
    let right = unkeyed("EdDSA", &key(1));
    assert!(request(&mut gw, "GET", "/x", &[("authorization", &right)]).is_allow());
    assert_eq!(code(&request(&mut gw, "GET", "/x", &[("authorization", &unkeyed("EdDSA", &key(2)))])), Some(ErrorCode::SignatureInvalid));
    assert_eq!(code(&request(&mut gw, "GET", "/x", &[("authorization", &unkeyed("ES256", &key(1)))])), Some(ErrorCode::UnknownKid));

    let mut fresh = inline_gateway(json!([{"prefix": "/", "require": "authenticated"}]), json!({}));
    let host = auth_core::HostCrypto { algs: auth_core::HostAlgs::NONE.with(auth_core::Alg::EdDSA), answer: None };
    let step = fresh.decide_with(&Request { method: "GET", path: "/x", headers: &[("authorization", &right)] }, at(T0), "rid", host);
    assert!(matches!(step, auth_core::Step::CheckSignature(_)), "the one candidate is asked of the host: {step:?}");
}

/// Every host logs the same line for an event, with stable codes for metrics.
#[test]
fn events_print_one_line_each_with_stable_codes() {
    let k = key(1);
    let body = jwks(&[("k1", &k)]);
    let jwks_key = Source::Jwks(0).key();
    let mut gw = gateway(true);
    let fetched = answer(&mut gw, Source::Jwks(0), &body, T0);
    assert_eq!(fetched.to_string(), format!("{jwks_key} updated, fetched ({} bytes)", body.len()));
    let mut other = gateway(false);
    let handed = apply(&mut other, Source::Jwks(0), &body, T0);
    assert_eq!(handed.to_string(), format!("{jwks_key} updated, handed over by the host ({} bytes)", body.len()));
    let again = apply(&mut other, Source::Jwks(0), &body, T0 + 5);
    assert_eq!(again.to_string(), format!("{jwks_key} current as of {}", T0 + 5));
    let rejected = apply(&mut other, Source::Jwks(0), &vec![b' '; (1 << 20) + 1], T0 + 6);
    assert_eq!(rejected.to_string(), format!("{jwks_key} handed over by the host but not applied: larger than 1048576 bytes"));
    match rejected {
        MaterialEvent::Rejected { reason, .. } => assert_eq!(reason.code(), "too_large"),
        e => panic!("{e:?}"),
    }
    for (failure, code, line) in [
        (FetchFailure::Transport, "transport", "transport"),
        (FetchFailure::Timeout, "timeout", "timeout"),
        (FetchFailure::HttpStatus(503), "http_status", "http_status 503"),
    ] {
        assert_eq!((failure.code(), failure.to_string().as_str()), (code, line));
        let event = MaterialEvent::FetchFailed { source: Source::Revocations, reason: failure };
        assert_eq!(event.to_string(), format!("{} fetch failed: {line}", Source::Revocations.key()));
    }
    for (reason, code) in [
        (RejectReason::FeedNotJws, "feed_not_jws"),
        (RejectReason::FeedTyp, "feed_typ"),
        (RejectReason::FeedAlg, "feed_alg"),
        (RejectReason::FeedSignature, "feed_signature"),
        (RejectReason::FeedClaims, "feed_claims"),
        (RejectReason::FeedIssuer, "feed_issuer"),
        (RejectReason::FeedRollback { applied: 3, received: 2 }, "feed_rollback"),
        (RejectReason::UnknownSource, "unknown_source"),
    ] {
        assert_eq!(reason.code(), code);
        assert!(!reason.to_string().is_empty());
    }
    assert_eq!(RejectReason::FeedRollback { applied: 3, received: 2 }.to_string(), "feed version 2 is older than 3 in use");
}

// ----- a decision suspended at the host's signature check, resumed with the verdict ---------

const HOST_EDDSA: auth_core::HostAlgs = auth_core::HostAlgs::NONE.with(auth_core::Alg::EdDSA);

fn suspend(gw: &mut Gateway, method: &str, path: &str, headers: &[(&str, &str)], now: i64) -> auth_core::SuspendedDecision {
    let host = auth_core::HostCrypto { algs: HOST_EDDSA, answer: None };
    match gw.decide_with(&Request { method, path, headers }, at(now), "rid", host) {
        auth_core::Step::CheckSignature(s) => s,
        other => panic!("not asked of the host: {other:?}"),
    }
}

fn resumed(step: auth_core::Step) -> Decision {
    match step {
        auth_core::Step::Decided(d) => d,
        other => panic!("asked again: {other:?}"),
    }
}

/// Resumed without the request, a decision is the one the core makes on its own: the rules the
/// request was judged by (a stripped route), the spoofed identity header and the credential
/// cookie removed, the other cookies kept, the challenge of the route on a bad verdict.
#[test]
fn a_resumed_decision_is_the_one_the_core_makes_on_its_own() {
    let cookie = json!({"name": "at", "csrf_cookie": "csrf"});
    let routes = json!([{"prefix": "/strip", "require": "authenticated", "strip_credential": true}]);
    let mut own = inline_gateway(routes.clone(), json!({"cookie": cookie}));
    let mut host = inline_gateway(routes, json!({"cookie": cookie}));
    let jar = format!("theme=dark; at={}; csrf=c1", token_with(json!({"roles": ["reader"]})));
    let headers = [("cookie", jar.as_str()), ("x-auth-subject", "admin")];
    let expected = request(&mut own, "GET", "/strip", &headers);
    let suspended = suspend(&mut host, "GET", "/strip", &headers, T0);
    drop(jar); // the request is gone: the suspension owns what it needs
    let got = resumed(host.resume(suspended.clone(), Some(true), at(T0), HOST_EDDSA));
    match (&expected, &got) {
        (Decision::Allow(e), Decision::Allow(g)) => {
            assert_eq!((e.route, &e.remove_headers, e.headers_to_set()), (g.route, &g.remove_headers, g.headers_to_set()));
            assert!(g.headers_to_set().iter().any(|(n, v)| *n == "cookie" && v == "theme=dark"));
            assert!(g.remove_headers.iter().any(|h| h == "x-auth-subject"));
            assert!(!g.cache_hit);
        }
        other => panic!("{other:?}"),
    }
    match resumed(host.resume(suspended, Some(false), at(T0), HOST_EDDSA)) {
        Decision::Deny(d) => {
            assert_eq!(d.code, ErrorCode::SignatureInvalid);
            assert_eq!(d.error_id, "rid");
            assert!(d.remove_headers.iter().any(|h| h == "x-auth-subject"));
        }
        other => panic!("{other:?}"),
    }
}

/// Keys applied while the host checks: the verdict counts only for the key it was given. The
/// same key still there → decided; the kid naming another key now → that key is asked about;
/// the kid gone → unknown key.
#[test]
fn keys_applied_while_the_host_checks_decide_what_the_verdict_is_worth() {
    let (k1, k2, k3) = (key(1), key(2), key(3));
    // A token per case: a good verdict caches its token.
    let auth: Vec<String> = ["s1", "s2", "s3"].iter().map(|sid| format!("Bearer {}", token("k1", &k1, sid, T0, T0 + 600))).collect();
    let headers = |i: usize| [("authorization", auth[i].as_str())];
    let mut gw = gateway(false);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k1)]), T0);

    let s = suspend(&mut gw, "GET", "/api", &headers(0), T0);
    assert!(is_applied(&apply(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k1), ("k2", &k2)]), T0)));
    assert!(resumed(gw.resume(s, Some(true), at(T0), HOST_EDDSA)).is_allow(), "the same key under the new set");

    let s = suspend(&mut gw, "GET", "/api", &headers(1), T0 + 1);
    let first_key = s.check().key.clone();
    assert!(is_applied(&apply(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k3)]), T0 + 1)));
    let again = match gw.resume(s, Some(true), at(T0 + 1), HOST_EDDSA) {
        auth_core::Step::CheckSignature(again) => again,
        other => panic!("a good verdict for the old key decided: {other:?}"),
    };
    assert_ne!(again.check().key, first_key, "asked about the key the kid names now");
    assert_eq!(code(&resumed(gw.resume(again, Some(false), at(T0 + 1), HOST_EDDSA))), Some(ErrorCode::SignatureInvalid));

    let e = apply(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k1)]), T0 + 2);
    assert!(is_applied(&e), "{e:?}");
    let s = suspend(&mut gw, "GET", "/api", &headers(2), T0 + 2);
    assert!(is_applied(&apply(&mut gw, Source::Jwks(0), &jwks(&[("k2", &k2)]), T0 + 2)));
    assert_eq!(code(&resumed(gw.resume(s, Some(true), at(T0 + 2), HOST_EDDSA))), Some(ErrorCode::UnknownKid));
}

/// Time and the feed move on while the host checks: a token that expired meanwhile and a
/// session revoked meanwhile are refused after a good verdict; a good answer is not cached
/// past either.
#[test]
fn expiry_and_revocation_are_judged_when_the_decision_resumes() {
    let k1 = key(1);
    let mut gw = gateway(true);
    serve(&mut gw, Source::Jwks(0), 200, &jwks(&[("k1", &k1)]), T0);
    serve(&mut gw, Source::Revocations, 200, feed(&k1, 1, T0, T0 + 600, &[]).as_bytes(), T0);

    let short = token("k1", &k1, "s-short", T0, T0 + 10);
    let auth = format!("Bearer {short}");
    let s = suspend(&mut gw, "GET", "/api", &[("authorization", &auth)], T0);
    // Past `exp` and the default clock skew (60 s) by the time the host answers.
    assert_eq!(code(&resumed(gw.resume(s, Some(true), at(T0 + 71), HOST_EDDSA))), Some(ErrorCode::TokenExpired));

    let t = token("k1", &k1, "s-revoked", T0, T0 + 600);
    let auth = format!("Bearer {t}");
    let s = suspend(&mut gw, "GET", "/api", &[("authorization", &auth)], T0);
    serve(&mut gw, Source::Revocations, 200, feed(&k1, 2, T0 + 1, T0 + 600, &["s-revoked"]).as_bytes(), T0 + 1);
    assert_eq!(code(&resumed(gw.resume(s, Some(true), at(T0 + 1), HOST_EDDSA))), Some(ErrorCode::SessionRevoked));
    assert_eq!(code(&decide(&mut gw, "/api", &t, T0 + 1)), Some(ErrorCode::SessionRevoked), "nothing cached for it");
}

/// A suspended decision belongs to the gateway that made it: another gateway (a host's
/// mistake) refuses it rather than apply its rule numbers or its verdict.
#[test]
fn a_decision_resumed_on_another_gateway_is_refused() {
    let routes = json!([{"prefix": "/x", "require": "authenticated"}]);
    let mut a = inline_gateway(routes.clone(), json!({}));
    let mut b = inline_gateway(routes, json!({}));
    let auth = format!("Bearer {}", token_with(json!({})));
    let s = suspend(&mut a, "GET", "/x", &[("authorization", &auth)], T0);
    assert_eq!(code(&resumed(b.resume(s.clone(), Some(true), at(T0), HOST_EDDSA))), Some(ErrorCode::ConfigInvalid));
    assert!(resumed(a.resume(s, Some(true), at(T0), HOST_EDDSA)).is_allow());
}

/// A feed's entries are objects, as its lists are: an entry written as an array of its fields
/// (`["s1", exp]`) or lists written as an array is refused as the feed's claims, even signed by
/// the issuer, and the feed in use stays.
#[test]
fn a_feed_with_arrays_for_objects_is_refused_and_changes_nothing() {
    let mut gw = gateway(true);
    let k = key(1);
    assert!(is_applied(&apply(&mut gw, Source::Jwks(0), &jwks(&[("k1", &k)]), T0)));
    assert!(is_applied(&apply(&mut gw, Source::Revocations, feed(&k, 1, T0, T0 + 60, &["s1"]).as_bytes(), T0)));
    let signed = |revoked: Value| {
        sign("k1", &k, "revocations+jwt", &json!({"iss": ISS, "iat": T0, "exp": T0 + 60, "ver": 2, "watermark": T0, "revoked": revoked}))
    };
    for revoked in [json!({"sid": [["s2", T0 + 3600]]}), json!({"sub": [["u1", T0, T0 + 3600]]}), json!([[["s2", T0 + 3600]]])] {
        let event = apply(&mut gw, Source::Revocations, signed(revoked.clone()).as_bytes(), T0 + 1);
        assert!(matches!(event, MaterialEvent::Rejected { reason: RejectReason::FeedClaims, .. }), "{revoked}: {event:?}");
    }
    assert_eq!(code(&decide(&mut gw, "/api", &token("k1", &k, "s1", T0, T0 + 600), T0 + 2)), Some(ErrorCode::SessionRevoked));
    assert!(decide(&mut gw, "/api", &token("k1", &k, "s2", T0, T0 + 600), T0 + 2).is_allow(), "version 1 still applies");
    let ok = signed(json!({"sid": [{"id": "s2", "exp": T0 + 3600}]}));
    assert!(is_applied(&apply(&mut gw, Source::Revocations, ok.as_bytes(), T0 + 3)));
    assert_eq!(code(&decide(&mut gw, "/api", &token("k1", &k, "s2", T0, T0 + 600), T0 + 3)), Some(ErrorCode::SessionRevoked));
}
