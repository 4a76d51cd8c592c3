//! The host-crypto step of `decide_with`: what is asked, and that an answer vouches only for the
//! exact key, message and signature it was asked about.

use auth_core::{Alg, Decision, ErrorCode, Gateway, HostAlgs, HostCrypto, Request, Step, UnixTime};
use serde_json::Value;

fn setup() -> (Value, Gateway, UnixTime) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut config = v["config"].clone();
    // Without the feed: these tests are about signatures.
    config.as_object_mut().unwrap().remove("revocations");
    let gw = Gateway::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
    (v.clone(), gw, UnixTime::from_secs(v["now"].as_i64().unwrap()))
}

fn case_headers(v: &Value, name: &str) -> Vec<(String, String)> {
    let case = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("case {name}"));
    case["request"]["headers"].as_array().unwrap().iter().map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into())).collect()
}

fn req<'a>(headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request { method: "GET", path: "/api/items", headers }
}

const ALL: HostAlgs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);

#[test]
fn an_answer_vouches_only_for_its_own_token() {
    let (v, mut gw, now) = setup();
    let good = case_headers(&v, "es256_valid");
    let tampered = case_headers(&v, "es256_tampered_payload");
    let good: Vec<(&str, &str)> = good.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let tampered: Vec<(&str, &str)> = tampered.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();

    let Step::CheckSignature(suspended) = gw.decide_with(&req(&good), now, "r", HostCrypto { algs: ALL, answer: None }) else {
        panic!("an ES256 token is asked of the host");
    };
    let check = suspended.check().clone();
    assert_eq!(check.alg, Alg::ES256);
    assert_eq!(check.signature.len(), 64);
    let yes = check.answer(true);
    // The "valid" answer for the genuine token, replayed with the tampered one: asked again.
    match gw.decide_with(&req(&tampered), now, "r", HostCrypto { algs: ALL, answer: Some(&yes) }) {
        Step::CheckSignature(c) => assert_ne!(c.check().message, yes.check().message),
        Step::Decided(d) => panic!("decided on another token's answer: {d:?}"),
    }
    // And for its own token it decides.
    assert!(matches!(
        gw.decide_with(&req(&good), now, "r", HostCrypto { algs: ALL, answer: Some(&yes) }),
        Step::Decided(Decision::Allow(_))
    ));
}

#[test]
fn a_no_answer_denies_and_high_s_stays_the_cores_rule() {
    let (v, mut gw, now) = setup();
    for (name, host_says, want) in [
        ("eddsa_valid", false, ErrorCode::SignatureInvalid),
        ("rs256_valid", false, ErrorCode::SignatureInvalid),
        // A host library accepts both ECDSA forms: the core still refuses the high one.
        ("es256_high_s", true, ErrorCode::SignatureNotCanonical),
    ] {
        let headers = case_headers(&v, name);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let Step::CheckSignature(suspended) = gw.decide_with(&req(&headers), now, "r", HostCrypto { algs: ALL, answer: None }) else {
            panic!("{name}: asked of the host");
        };
        // Decided again with the answer, and resumed with the verdict: the same denial.
        let answer = suspended.check().clone().answer(host_says);
        match gw.decide_with(&req(&headers), now, "r", HostCrypto { algs: ALL, answer: Some(&answer) }) {
            Step::Decided(Decision::Deny(d)) => assert_eq!(d.code, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        match gw.resume(suspended, Some(host_says), now, ALL) {
            Step::Decided(Decision::Deny(d)) => assert_eq!(d.code, want, "{name}, resumed"),
            other => panic!("{name}, resumed: {other:?}"),
        }
    }
}

#[test]
fn malformed_signatures_and_other_algorithms_never_reach_the_host() {
    let (v, mut gw, now) = setup();
    for name in ["es256_der_signature", "es256_stripped_signature", "rs256_stripped_signature", "eddsa_stripped_signature"] {
        let headers = case_headers(&v, name);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        match gw.decide_with(&req(&headers), now, "r", HostCrypto { algs: ALL, answer: None }) {
            Step::Decided(Decision::Deny(d)) => assert_eq!(d.code, ErrorCode::SignatureInvalid, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Only the algorithms the host named are asked: ES256 alone leaves EdDSA in the core.
    let only_es = HostAlgs::NONE.with(Alg::ES256);
    let headers = case_headers(&v, "eddsa_valid");
    let headers: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert!(matches!(
        gw.decide_with(&req(&headers), now, "r", HostCrypto { algs: only_es, answer: None }),
        Step::Decided(Decision::Allow(_))
    ));
}

/// `check_token_with` (a token judged outside any route) answers as a fail-closed route would:
/// the feed first (missing → stale), then signature, claims and revocation.
#[test]
fn a_token_checked_outside_any_route_is_judged_like_a_fail_closed_route() {
    use auth_core::{FetchResponse, Source, TokenCheck};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    let mut gw = Gateway::from_json(&serde_json::to_vec(&v["config"]).unwrap()).unwrap();
    let token = |name: &str| case_headers(&v, name)[0].1.strip_prefix("Bearer ").unwrap().to_string();

    // No feed yet: refused as stale, and the core says how long a host may wait for it.
    match gw.check_token_with(&token("eddsa_valid"), now, HostCrypto::default()) {
        TokenCheck::Invalid { code: ErrorCode::RevocationsStale, hold_until } => assert!(hold_until.is_some_and(|t| t > now)),
        other => panic!("before the feed: {other:?}"),
    }
    let fetch = std::iter::from_fn(|| gw.poll_fetch(now)).find(|f| f.source == Source::Revocations).unwrap();
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: v["feed"].as_str().unwrap().as_bytes(), etag: None }, now);

    match gw.check_token_with(&token("eddsa_valid"), now, HostCrypto::default()) {
        TokenCheck::Valid(id) => assert_eq!((id.subject.as_str(), id.session_id.as_deref()), ("user-1", Some("sid-1"))),
        other => panic!("valid token: {other:?}"),
    }
    for (name, want) in [
        ("revoked_sid", ErrorCode::SessionRevoked),
        ("revoked_jti", ErrorCode::TokenRevoked),
        ("expired_31s", ErrorCode::TokenExpired),
        ("eddsa_tampered_payload", ErrorCode::SignatureInvalid),
    ] {
        match gw.check_token_with(&token(name), now, HostCrypto::default()) {
            TokenCheck::Invalid { code, hold_until: None } => assert_eq!(code, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Through the host: asked, then judged on the answer.
    let TokenCheck::CheckSignature(suspended) = gw.check_token_with(&token("es256_valid"), now, HostCrypto { algs: ALL, answer: None })
    else {
        panic!("an ES256 token is asked of the host");
    };
    let no = suspended.check().clone().answer(false);
    assert!(matches!(
        gw.check_token_with(&token("es256_valid"), now, HostCrypto { algs: ALL, answer: Some(&no) }),
        TokenCheck::Invalid { code: ErrorCode::SignatureInvalid, .. }
    ));
    assert!(matches!(
        gw.resume_token(suspended.clone(), Some(false), now, ALL),
        TokenCheck::Invalid { code: ErrorCode::SignatureInvalid, .. }
    ));
    match gw.resume_token(suspended, Some(true), now, ALL) {
        TokenCheck::Valid(id) => assert_eq!(id.subject, "user-1"),
        other => panic!("resumed with a good verdict: {other:?}"),
    }
    // A revoked session is refused after the host's good verdict as well.
    let TokenCheck::CheckSignature(revoked) = gw.check_token_with(&token("revoked_sid"), now, HostCrypto { algs: ALL, answer: None })
    else {
        panic!("an EdDSA token is asked of the host");
    };
    assert!(matches!(gw.resume_token(revoked, Some(true), now, ALL), TokenCheck::Invalid { code: ErrorCode::SessionRevoked, .. }));
}
