//! Shared set-up for the fuzz targets: the conformance gateway at the conformance `now`.

use auth_core::{Alg, Gateway, SignatureCheck, Source, UnixTime};
use serde_json::Value;

pub const VECTORS: &str = include_str!("../../tests/conformance/vectors.json");

pub struct Fixture {
    pub gateway: Gateway,
    pub now: UnixTime,
}

pub fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// The conformance gateway whose first provider also fetches its keys (its inline ones stay):
/// what a fetch brings reaches the JWKS parser.
pub fn fixture_fetching_jwks() -> Fixture {
    fixture_with(|config| config["providers"][0]["jwks_uri"] = "https://auth.authgate.test/.well-known/jwks.json".into())
}

/// The conformance gateway with `change` made to its config first.
pub fn fixture_with(change: impl FnOnce(&mut Value)) -> Fixture {
    let mut v: Value = serde_json::from_str(VECTORS).expect("vectors");
    change(&mut v["config"]);
    let now = UnixTime::from_secs(v["now"].as_i64().expect("now"));
    let mut gateway = Gateway::from_json(&serde_json::to_vec(&v["config"]).unwrap()).expect("config");
    gateway.apply_material(Source::Revocations, v["feed"].as_str().unwrap().as_bytes(), now, now);
    assert!(matches!(gateway.poll_event(), Some(auth_core::MaterialEvent::Applied { .. })), "feed");
    while gateway.poll_event().is_some() {}
    Fixture { gateway, now }
}

/// The headers of a conformance case by name (a credential the gateway accepts).
pub fn case_headers(name: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(VECTORS).expect("vectors");
    let case = v["cases"].as_array().expect("cases").iter().find(|c| c["name"] == name).expect("case");
    case["request"]["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| (h[0].as_str().expect("name").to_string(), h[1].as_str().expect("value").to_string()))
        .collect()
}

/// A host's answer to a signature check, by `ring` (BoringSSL-derived, independent of the
/// RustCrypto code auth-core verifies with itself), from the SPKI key and, for ES256, the DER
/// signature the Envoy host hands BoringSSL.
pub fn ring_verify(check: &SignatureCheck) -> bool {
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
