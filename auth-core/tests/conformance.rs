//! Runs the conformance data file (tests/conformance/vectors.json, minted by an independent
//! Python implementation) through `Gateway::decide`, case by case. `AUTHGATE_VECTORS` points at a
//! freshly minted file instead (CI mints one at test time).

use auth_core::{
    Alg, Decision, FetchResponse, Gateway, HostAlgs, HostCrypto, MaterialEvent, Request, SignatureCheck, Source, Step, UnixTime,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = std::env::var("AUTHGATE_VECTORS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json").to_string());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_slice(&bytes).expect("vectors are JSON")
}

#[test]
fn conformance_vectors() {
    run(|gw, request, now| gw.decide(request, now, "conformance-id"));
}

/// The same file with every EdDSA, ES256 and RS256 signature checked by a host: `ring` (an
/// independent implementation), answering from the SPKI key and, for ES256, the DER signature
/// the Envoy host sends BoringSSL. The core keeps every other rule. Each decision resumes from
/// where it stopped (what every host does).
#[test]
fn conformance_vectors_through_host_crypto() {
    let algs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);
    let mut asked = std::collections::BTreeMap::<&str, usize>::new();
    run(|gw, request, now| {
        let mut step = gw.decide_with(request, now, "conformance-id", HostCrypto { algs, answer: None });
        for _ in 0..2 {
            match step {
                Step::Decided(decision) => return decision,
                Step::CheckSignature(suspended) => {
                    *asked.entry(suspended.check().alg.as_str()).or_default() += 1;
                    let valid = ring_verify(suspended.check());
                    step = gw.resume(suspended, Some(valid), now, algs);
                }
            }
        }
        panic!("asked again after an answer for {:?}", request.headers);
    });
    for alg in ["EdDSA", "ES256", "RS256"] {
        assert!(asked.get(alg).is_some_and(|n| *n >= 3), "the host checked {alg} signatures: {asked:?}");
    }
}

/// The same through `decide_with` again with the answer, the path a resumed decision takes
/// when keys changed while the host checked.
#[test]
fn conformance_vectors_decided_again_with_the_answer() {
    let algs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);
    run(|gw, request, now| {
        let mut answer = None;
        for _ in 0..3 {
            match gw.decide_with(request, now, "conformance-id", HostCrypto { algs, answer: answer.as_ref() }) {
                Step::Decided(decision) => return decision,
                Step::CheckSignature(suspended) => {
                    assert!(answer.is_none(), "asked again after an answer for {:?}", request.headers);
                    let check = suspended.check().clone();
                    let valid = ring_verify(&check);
                    answer = Some(check.answer(valid));
                }
            }
        }
        panic!("no decision after the host answered");
    });
}

fn ring_verify(check: &SignatureCheck) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519, RSA_PKCS1_2048_8192_SHA256};
    let spki = spki::SubjectPublicKeyInfoRef::try_from(&check.key.spki[..]).expect("the core hands out DER SPKI");
    let key = spki.subject_public_key.raw_bytes();
    match check.alg {
        Alg::EdDSA => UnparsedPublicKey::new(&ED25519, key).verify(&check.message, &check.signature).is_ok(),
        Alg::ES256 => {
            let der = check.signature_der().expect("an ES256 check has a DER form");
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key).verify(&check.message, &der).is_ok()
        }
        Alg::RS256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key).verify(&check.message, &check.signature).is_ok(),
        Alg::HS256 => panic!("HS256 is never delegated"),
    }
}

fn run(mut decide: impl FnMut(&mut Gateway, &Request<'_>, UnixTime) -> Decision) {
    let v = vectors();
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    let config = serde_json::to_vec(&v["config"]).unwrap();
    let mut gw = Gateway::from_json(&config).expect("conformance config is valid");
    // The feed comes in through the same path a host uses.
    let fetch = std::iter::from_fn(|| gw.poll_fetch(now)).find(|f| f.source == Source::Revocations).expect("feed due");
    let feed = v["feed"].as_str().unwrap();
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: feed.as_bytes(), etag: None }, now);
    let applied = std::iter::from_fn(|| gw.poll_event()).any(|e| matches!(e, MaterialEvent::Applied { source: Source::Revocations, .. }));
    assert!(applied, "the conformance feed applies");

    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 60, "the suite has {} cases", cases.len());
    let mut failures = Vec::new();
    // Every case twice: the second pass hits the verified-token cache and must agree.
    for pass in 0..2 {
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let req = &case["request"];
            let headers: Vec<(&str, &str)> =
                req["headers"].as_array().unwrap().iter().map(|h| (h[0].as_str().unwrap(), h[1].as_str().unwrap())).collect();
            let request = Request { method: req["method"].as_str().unwrap(), path: req["path"].as_str().unwrap(), headers: &headers };
            let decision = decide(&mut gw, &request, now);
            let expect = &case["expect"];
            let want_status = expect["status"].as_u64().unwrap() as u16;
            for (spoofed, _) in headers.iter().filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-auth-")) {
                let spoofed = spoofed.to_ascii_lowercase();
                if !decision.headers_to_remove().iter().any(|r| *r == spoofed) {
                    failures.push(format!("{name} (pass {pass}): spoofed header {spoofed} is not removed"));
                }
            }
            match (&decision, expect["code"].as_str()) {
                (Decision::Allow(allow), None) if want_status == 200 => {
                    let set = allow.headers_to_set();
                    for (k, want) in expect["headers"].as_object().unwrap() {
                        let got = set.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref());
                        if got != want.as_str() {
                            failures.push(format!("{name} (pass {pass}): header {k} = {got:?}, want {want}"));
                        }
                    }
                    for absent in expect["absent_headers"].as_array().into_iter().flatten() {
                        let absent = absent.as_str().unwrap();
                        if set.iter().any(|(n, _)| n.eq_ignore_ascii_case(absent)) {
                            failures.push(format!("{name} (pass {pass}): header {absent} must not be set"));
                        }
                    }
                }
                (Decision::Deny(deny), Some(code)) => {
                    if deny.code.as_str() != code || deny.status() != want_status {
                        failures.push(format!("{name} (pass {pass}): denied {} {}, want {want_status} {code}", deny.status(), deny.code));
                    }
                    let headers = deny.response_headers();
                    let get = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
                    assert_eq!(get("x-error-code"), Some(code));
                    assert_eq!(get("x-error-id"), Some("conformance-id"));
                    assert!(get("x-error").is_some_and(|e| !e.is_empty()));
                    let body: Value = serde_json::from_str(&deny.body()).unwrap();
                    assert_eq!(body["error"], code);
                    if want_status == 401 && request.path.starts_with("/api") {
                        assert!(get("www-authenticate").is_some_and(|w| w.starts_with("Bearer")), "{name}: challenge");
                    }
                }
                (Decision::Allow(_), want) => failures.push(format!("{name} (pass {pass}): allowed, want {want_status} {want:?}")),
                (Decision::Deny(deny), None) => {
                    failures.push(format!("{name} (pass {pass}): denied {} {}, want {want_status}", deny.status(), deny.code))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} conformance failures:\n{}", failures.len(), failures.join("\n"));
}
