//! Shared set-up for the fuzz targets: the conformance gateway at the conformance `now`.

use auth_core::{Gateway, Source};
use serde_json::Value;

pub const VECTORS: &str = include_str!("../../tests/conformance/vectors.json");

pub struct Fixture {
    pub gateway: Gateway,
    pub now: i64,
}

pub fn fixture() -> Fixture {
    let v: Value = serde_json::from_str(VECTORS).expect("vectors");
    let now = v["now"].as_i64().expect("now");
    let mut gateway = Gateway::from_json(&serde_json::to_vec(&v["config"]).unwrap()).expect("config");
    gateway.apply_material(Source::Revocations, v["feed"].as_str().unwrap().as_bytes(), now, now).expect("feed");
    Fixture { gateway, now }
}
