//! Property tests: random bytes anywhere in a token, a header, a path, a JWKS, a feed or a config
//! never panic, and no mutation of a valid token is ever accepted.

use auth_core::{Decision, Gateway, MaterialEvent, Request, Source, UnixTime};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> &'static Value {
    static VECTORS: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    VECTORS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    })
}

fn gateway(v: &Value) -> Gateway {
    let mut gw = Gateway::from_json(&serde_json::to_vec(&v["config"]).unwrap()).unwrap();
    let now = now(v);
    gw.apply_material(Source::Revocations, v["feed"].as_str().unwrap().as_bytes(), now, now);
    assert!(matches!(gw.poll_event(), Some(MaterialEvent::Applied { .. })));
    while gw.poll_event().is_some() {}
    gw
}

fn now(v: &Value) -> UnixTime {
    UnixTime::from_secs(v["now"].as_i64().unwrap())
}

fn valid_tokens(v: &Value) -> Vec<String> {
    ["eddsa_valid", "es256_valid", "rs256_valid", "hs256_valid"]
        .iter()
        .map(|name| {
            let case = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == *name).unwrap();
            case["request"]["headers"][0][1].as_str().unwrap().trim_start_matches("Bearer ").to_string()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn any_bearer_bytes_never_panic(token in proptest::collection::vec(any::<u8>(), 0..600)) {
        let v = vectors();
        let mut gw = gateway(v);
        let token = String::from_utf8_lossy(&token);
        let auth = format!("Bearer {token}");
        let d = gw.decide(&Request { method: "GET", path: "/api/x", headers: &[("authorization", &auth)] }, now(v), "p");
        prop_assert!(!d.is_allow());
    }

    #[test]
    fn any_single_byte_change_to_a_valid_token_is_denied(which in 0usize..4, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let v = vectors();
        let mut gw = gateway(v);
        let mut token = valid_tokens(v)[which].clone().into_bytes();
        let i = pos.index(token.len());
        prop_assume!(token[i] != byte);
        token[i] = byte;
        let token = String::from_utf8_lossy(&token).into_owned();
        let auth = format!("Bearer {token}");
        let d = gw.decide(&Request { method: "GET", path: "/api/x", headers: &[("authorization", &auth)] }, now(v), "p");
        prop_assert!(!d.is_allow(), "mutated token at {} accepted", i);
    }

    #[test]
    fn any_headers_and_paths_never_panic(
        headers in proptest::collection::vec((".{0,40}", ".{0,200}"), 0..8),
        path in ".{0,100}",
        method in "[A-Za-z]{0,8}",
    ) {
        let v = vectors();
        let mut gw = gateway(v);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let d = gw.decide(&Request { method: &method, path: &path, headers: &refs }, now(v), &path);
        // Whatever happens, client-sent identity headers never survive.
        for (name, _) in &refs {
            if name.to_ascii_lowercase().starts_with("x-auth-") {
                prop_assert!(d.headers_to_remove().iter().any(|r| r.eq_ignore_ascii_case(name)));
            }
        }
        if let Decision::Deny(deny) = &d {
            prop_assert!(deny.response_headers().iter().all(|(_, v)| !v.contains('\n') && !v.contains('\r')));
        }
    }

    #[test]
    fn any_api_key_bytes_never_panic(key in ".{0,300}", secret in ".{0,80}") {
        let v = vectors();
        let mut gw = gateway(v);
        let d = gw.decide(&Request { method: "GET", path: "/api/x", headers: &[("x-api-key", &key), ("x-api-secret", &secret)] }, now(v), "p");
        prop_assert!(!d.is_allow());
    }

    #[test]
    fn any_config_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Gateway::from_json(&bytes);
    }

    #[test]
    fn mutated_config_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let v = vectors();
        let mut bytes = serde_json::to_vec(&v["config"]).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = Gateway::from_json(&bytes);
    }

    #[test]
    fn any_material_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), feed in any::<bool>()) {
        let v = vectors();
        let mut gw = gateway(v);
        let now = now(v);
        let source = if feed { Source::Revocations } else { Source::Jwks(0) };
        gw.apply_material(source, &bytes, now, now);
        let event = gw.poll_event();
        prop_assert!(matches!(event, Some(MaterialEvent::Rejected { .. })), "{:?}", event);
    }

    #[test]
    fn mutated_feed_is_refused(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let v = vectors();
        let mut gw = gateway(v);
        let now = now(v);
        let mut feed = v["feed"].as_str().unwrap().as_bytes().to_vec();
        let i = pos.index(feed.len());
        prop_assume!(feed[i] != byte && !(feed[i] as char).is_ascii_whitespace() && !(byte as char).is_ascii_whitespace());
        feed[i] = byte;
        let before = gw.status().feed_version;
        gw.apply_material(Source::Revocations, &feed, now.plus_secs(1), now.plus_secs(1));
        let event = gw.poll_event();
        // Refused, kept aside (a changed kid names a key nobody has), or at most confirmed as what
        // is in use: never a different document applied.
        let refused = matches!(event, Some(MaterialEvent::Rejected { .. } | MaterialEvent::KeptPending { .. } | MaterialEvent::Confirmed { .. }));
        prop_assert!(refused, "{:?}", event);
        prop_assert_eq!(gw.status().feed_version, before);
    }
}
