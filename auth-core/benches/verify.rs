//! Verification cost per algorithm, beside the raw primitive and beside `jsonwebtoken`
//! (rust_crypto backend) on the same input, in the same run. Tokens and keys come from the
//! conformance vectors, and `ring`'s raw verify beside each (the native baseline). Run:
//! `cargo bench -p auth-core --bench verify` (RustCrypto, what WebAssembly hosts fall back to)
//! and `cargo bench -p auth-core --features ring --bench verify` (native builds).

use auth_core::{b64, Gateway, MaterialEvent, Request, Source, UnixTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use signature::Verifier;

/// The signature backend auth-core was built with.
const BACKEND: &str = if cfg!(feature = "ring") { "ring" } else { "RustCrypto" };

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/conformance/vectors.json")).unwrap()
}

fn case_headers(v: &Value, name: &str) -> Vec<(String, String)> {
    let case = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    case["request"]["headers"].as_array().unwrap().iter().map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into())).collect()
}

fn gateway(v: &Value, config: &Value) -> Gateway {
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    let mut gw = Gateway::from_json(&serde_json::to_vec(config).unwrap()).unwrap();
    gw.apply_material(Source::Revocations, v["feed"].as_str().unwrap().as_bytes(), now, now);
    assert!(matches!(gw.poll_event(), Some(MaterialEvent::Applied { .. })));
    while gw.poll_event().is_some() {}
    gw
}

fn key_jwk<'a>(v: &'a Value, kid: &str) -> &'a Value {
    v["config"]["providers"][0]["jwks"]["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap()
}

fn field(jwk: &Value, name: &str) -> Vec<u8> {
    b64::decode(jwk[name].as_str().unwrap().as_bytes()).unwrap()
}

fn bench(c: &mut Criterion) {
    let v = vectors();
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    let mut uncached = v["config"].clone();
    uncached["cache"] = json!({"max_entries": 0});
    let mut gw = gateway(&v, &uncached);

    for (alg, case, kid) in
        [("EdDSA", "eddsa_valid", "ed1"), ("ES256", "es256_valid", "es1"), ("RS256", "rs256_valid", "rs1"), ("HS256", "hs256_valid", "hs1")]
    {
        let headers = case_headers(&v, case);
        let token = headers[0].1.trim_start_matches("Bearer ").to_string();
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = b64::decode(sig.as_bytes()).unwrap();
        let jwk = key_jwk(&v, kid);
        let mut group = c.benchmark_group(format!("verify/{alg}"));
        group.bench_function(format!("authgate decide (uncached, {BACKEND})"), |b| {
            b.iter(|| {
                let d = gw.decide(black_box(&Request { method: "GET", path: "/api/items", headers: &refs }), now, "b");
                assert!(d.is_allow());
            })
        });
        match alg {
            "EdDSA" => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&field(jwk, "x").try_into().unwrap()).unwrap();
                let sig = ed25519_dalek::Signature::from_bytes(&sig.clone().try_into().unwrap());
                group.bench_function("raw ed25519-dalek verify_strict", |b| {
                    b.iter(|| key.verify_strict(black_box(input.as_bytes()), &sig).unwrap())
                });
                let ring_key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, field(jwk, "x"));
                let raw_sig = sig.to_bytes();
                group.bench_function("raw ring ED25519", |b| b.iter(|| ring_key.verify(black_box(input.as_bytes()), &raw_sig).unwrap()));
            }
            "ES256" => {
                let (x, y) = (field(jwk, "x"), field(jwk, "y"));
                let point = p256::EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
                let raw_sig = sig.clone();
                let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                group.bench_function("raw p256 verify", |b| b.iter(|| key.verify(black_box(input.as_bytes()), &sig).unwrap()));
                let ring_key =
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point.as_bytes().to_vec());
                group.bench_function("raw ring ECDSA_P256_SHA256_FIXED", |b| {
                    b.iter(|| ring_key.verify(black_box(input.as_bytes()), &raw_sig).unwrap())
                });
            }
            "RS256" => {
                let key =
                    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&field(jwk, "n")), rsa::BigUint::from_bytes_be(&field(jwk, "e")))
                        .unwrap();
                let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
                let raw_sig = sig.clone();
                let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
                group.bench_function("raw rsa pkcs1v15 verify", |b| b.iter(|| key.verify(black_box(input.as_bytes()), &sig).unwrap()));
                let ring_key = ring::signature::RsaPublicKeyComponents { n: field(jwk, "n"), e: field(jwk, "e") };
                group.bench_function("raw ring RSA_PKCS1_2048_8192_SHA256", |b| {
                    b.iter(|| ring_key.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, black_box(input.as_bytes()), &raw_sig).unwrap())
                });
            }
            _ => {
                use hmac::{Hmac, Mac};
                let k = field(jwk, "k");
                group.bench_function("raw HMAC-SHA256", |b| {
                    b.iter(|| {
                        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&k).unwrap();
                        mac.update(black_box(input.as_bytes()));
                        mac.verify_slice(&sig).unwrap()
                    })
                });
                let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k);
                group.bench_function("raw ring HMAC_SHA256", |b| {
                    b.iter(|| ring::hmac::verify(&ring_key, black_box(input.as_bytes()), &sig).unwrap())
                });
            }
        }
        let jwt_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let decoding_key = jsonwebtoken::DecodingKey::from_jwk(&jwt_jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg.parse::<jsonwebtoken::Algorithm>().unwrap());
        validation.set_audience(&["api"]);
        validation.set_issuer(&["https://auth.authgate.test"]);
        validation.validate_exp = false; // the vectors' `now` is in the past; claims checks are not what is compared
        group.bench_function("jsonwebtoken decode (rust_crypto)", |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &decoding_key, &validation).unwrap())
        });
        group.finish();
    }

    let headers = case_headers(&v, "api_key_valid_headers");
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let key_id = headers.iter().find(|h| h.0 == "x-api-key").unwrap().1.clone();
    let hk = b64::decode(v["config"]["api_keys"]["hmac_keys"][0]["secret"].as_str().unwrap().as_bytes()).unwrap();
    let mut group = c.benchmark_group("verify/api_key");
    group.bench_function(format!("authgate decide ({BACKEND})"), |b| {
        b.iter(|| assert!(gw.decide(black_box(&Request { method: "GET", path: "/api/items", headers: &refs }), now, "b").is_allow()))
    });
    group.bench_function("raw HMAC-SHA256", |b| {
        use hmac::{Hmac, Mac};
        b.iter(|| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&hk).unwrap();
            mac.update(black_box(key_id.as_bytes()));
            mac.finalize()
        })
    });
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hk);
    group.bench_function("raw ring HMAC_SHA256", |b| b.iter(|| ring::hmac::sign(&ring_key, black_box(key_id.as_bytes()))));
    group.finish();

    let mut cached = gateway(&v, &v["config"]);
    let headers = case_headers(&v, "eddsa_valid");
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Warm the cache: the first decision verifies and stores.
    assert!(cached.decide(&Request { method: "GET", path: "/api/items", headers: &refs }, now, "b").is_allow());
    let mut group = c.benchmark_group("cache");
    group.bench_function("decide, verified-token cache hit (EdDSA)", |b| {
        b.iter(|| {
            let d = cached.decide(black_box(&Request { method: "GET", path: "/api/items", headers: &refs }), now, "b");
            assert!(matches!(d, auth_core::Decision::Allow(ref a) if a.cache_hit));
        })
    });
    group.finish();

    // 20 routes; the request matches the last, so every rule is tried.
    let mut twenty = v["config"].clone();
    let mut routes: Vec<Value> = (0..19)
        .map(|i| json!({"prefix": format!("/service-{i}/v1"), "methods": ["GET", "POST"], "require": {"any_role": ["admin"]}}))
        .collect();
    routes.push(json!({"prefix": "/api", "require": {"any_role": ["reader", "admin"]}}));
    twenty["routes"] = Value::Array(routes);
    let mut gw20 = gateway(&v, &twenty);
    let mut group = c.benchmark_group("decide");
    group.bench_function("20 routes, last matches, cache hit", |b| {
        b.iter(|| assert!(gw20.decide(black_box(&Request { method: "GET", path: "/api/items?x=1", headers: &refs }), now, "b").is_allow()))
    });
    let spoof: Vec<(&str, &str)> =
        refs.iter().copied().chain([("x-auth-subject", "admin"), ("x-request-id", "abc"), ("user-agent", "bench")]).collect();
    group.bench_function("20 routes, spoofed identity headers stripped", |b| {
        b.iter(|| assert!(gw20.decide(black_box(&Request { method: "GET", path: "/api/items", headers: &spoof }), now, "b").is_allow()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
