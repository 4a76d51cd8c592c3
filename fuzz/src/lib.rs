//! Shared set-up for the fuzz targets: the conformance gateway at the conformance `now`.

use auth_core::{Gateway, Source, UnixTime};
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

fn fixture_with(change: impl FnOnce(&mut Value)) -> Fixture {
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
