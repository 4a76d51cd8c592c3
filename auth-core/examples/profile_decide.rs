//! Runs one decision kind in a loop, for profilers (`valgrind --tool=callgrind`):
//! `cargo run --release -p auth-core --example profile_decide -- hs256_valid 20000 [cache]`.

use auth_core::{Gateway, Request, Source, UnixTime};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case_name = args.get(1).map(String::as_str).unwrap_or("hs256_valid");
    let iterations: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let use_cache = args.get(3).is_some_and(|a| a == "cache");
    let v: Value = serde_json::from_str(include_str!("../../tests/conformance/vectors.json")).unwrap();
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    let mut config = v["config"].clone();
    if !use_cache {
        config["cache"] = serde_json::json!({"max_entries": 0});
    }
    let mut gw = Gateway::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
    gw.apply_material(Source::Revocations, v["feed"].as_str().unwrap().as_bytes(), now, now);
    let case = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == case_name).expect("case");
    let headers: Vec<(String, String)> = case["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path = case["request"]["path"].as_str().unwrap();
    let mut allowed = 0;
    for _ in 0..iterations {
        allowed += gw.decide(&Request { method: "GET", path, headers: &refs }, now, "p").is_allow() as usize;
    }
    println!("{case_name}: {allowed}/{iterations} allowed");
}
