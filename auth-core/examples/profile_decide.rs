//! Runs one decision kind in a loop, for profilers (`valgrind --tool=callgrind`):
//! `cargo run --release -p auth-core --example profile_decide -- hs256_valid 20000 [cache] [resume|again]`.
//! `resume` and `again` hand EdDSA/ES256/RS256 signatures to a host that answers "valid" at
//! once (the core's own work around a host's check): the decision resumed from where it
//! stopped, or decided again with the answer.

use auth_core::{Alg, Decision, Gateway, HostAlgs, HostCrypto, Request, Source, Step, UnixTime};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case_name = args.get(1).map(String::as_str).unwrap_or("hs256_valid");
    let iterations: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let use_cache = args[3.min(args.len())..].iter().any(|a| a == "cache");
    let host = args[3.min(args.len())..].iter().find_map(|a| ["resume", "again"].into_iter().find(|m| m == a));
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
    let algs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);
    for _ in 0..iterations {
        let request = Request { method: "GET", path, headers: &refs };
        let decision = match host {
            None => gw.decide(&request, now, "p"),
            Some(mode) => decide_through_host(&mut gw, &request, now, algs, mode == "resume"),
        };
        allowed += decision.is_allow() as usize;
    }
    println!("{case_name}: {allowed}/{iterations} allowed");
}

/// A decision whose signature a host checks, answered "valid" without any crypto.
fn decide_through_host(gw: &mut Gateway, request: &Request<'_>, now: UnixTime, algs: HostAlgs, resume: bool) -> Decision {
    match gw.decide_with(request, now, "p", HostCrypto { algs, answer: None }) {
        Step::Decided(d) => d,
        Step::CheckSignature(suspended) if resume => match gw.resume(suspended, Some(true), now, algs) {
            Step::Decided(d) => d,
            Step::CheckSignature(_) => panic!("asked again"),
        },
        Step::CheckSignature(suspended) => {
            let answer = suspended.check().clone().answer(true);
            match gw.decide_with(request, now, "p", HostCrypto { algs, answer: Some(&answer) }) {
                Step::Decided(d) => d,
                Step::CheckSignature(_) => panic!("asked again"),
            }
        }
    }
}
