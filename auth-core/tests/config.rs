//! The configuration's defaults, its normal form and what it lets reach logs, as a host sees them.

use auth_core::config::GatewayConfig;
use auth_core::{FetchResponse, Gateway, Source, UnixTime};
use serde_json::{json, Value};

fn conformance() -> (Value, UnixTime) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let now = UnixTime::from_secs(v["now"].as_i64().unwrap());
    (v, now)
}

/// The field a changed conformance config is refused at, if it is.
fn refused_at(v: &Value, change: &dyn Fn(&mut Value)) -> Option<String> {
    let mut config = v["config"].clone();
    change(&mut config);
    Gateway::from_json(&serde_json::to_vec(&config).unwrap()).err().map(|e| e.path)
}

fn due(gw: &mut Gateway, now: UnixTime) -> Vec<Source> {
    std::iter::from_fn(|| gw.poll_fetch(now)).map(|f| f.source).collect()
}

/// Without `refresh_s`, the feed is polled every 5 seconds after a good fetch.
#[test]
fn the_feed_is_polled_every_five_seconds_by_default() {
    let (v, now) = conformance();
    let mut config = v["config"].clone();
    assert!(config["revocations"].as_object_mut().unwrap().remove("refresh_s").is_some());
    let mut gw = Gateway::from_json(&serde_json::to_vec(&config).unwrap()).expect("valid without refresh_s");
    let fetch = std::iter::from_fn(|| gw.poll_fetch(now)).find(|f| f.source == Source::Revocations).expect("feed due");
    gw.handle_fetch(fetch.id, FetchResponse { status: 200, body: v["feed"].as_str().unwrap().as_bytes(), etag: None }, now);
    assert!(!due(&mut gw, UnixTime::from_secs(now.secs() + 4)).contains(&Source::Revocations));
    assert!(due(&mut gw, UnixTime::from_secs(now.secs() + 5)).contains(&Source::Revocations));
}

/// A parsed config serialises back to what it means, leaving out what is at its default (the
/// high-`s` opt-in only when set), and parses again to the same config.
#[test]
fn configs_round_trip_and_leave_defaults_out() {
    let (v, _) = conformance();
    let config: GatewayConfig = serde_json::from_value(v["config"].clone()).unwrap();
    let out = serde_json::to_value(&config).unwrap();
    assert!(out["providers"].as_array().unwrap().iter().all(|p| p.get("es256_accept_high_s").is_none()));
    assert_eq!(serde_json::from_value::<GatewayConfig>(out).unwrap(), config);

    let mut high = v["config"].clone();
    high["providers"][0]["es256_accept_high_s"] = json!(true);
    let high: GatewayConfig = serde_json::from_value(high).unwrap();
    let out = serde_json::to_value(&high).unwrap();
    assert_eq!(out["providers"][0]["es256_accept_high_s"], json!(true));
    assert_eq!(serde_json::from_value::<GatewayConfig>(out).unwrap(), high);
}

/// Secrets in the config never reach a log through `Debug`.
#[test]
fn debug_output_redacts_secrets() {
    let (v, _) = conformance();
    let mut config = v["config"].clone();
    config["revocations"]["credential"] = json!({"key_id": "agk_feedkey", "secret": "feed-secret-value"});
    let config: GatewayConfig = serde_json::from_value(config).unwrap();
    let shown = format!("{config:?}");
    let hmac_secret = v["config"]["api_keys"]["hmac_keys"][0]["secret"].as_str().unwrap();
    assert!(!shown.contains(hmac_secret) && !shown.contains("feed-secret-value"), "{shown}");
    assert!(
        shown.contains("HmacKeyConfig { kid: ") && shown.contains("FeedCredential { key_id: \"agk_feedkey\", secret: \"<redacted>\" }")
    );
}

/// A route's `require` of the wrong type is refused with what it may be.
#[test]
fn a_bad_requirement_says_what_is_expected() {
    let (v, _) = conformance();
    let mut config = v["config"].clone();
    config["routes"][0]["require"] = json!(5);
    let err = Gateway::from_json(&serde_json::to_vec(&config).unwrap()).err().expect("refused");
    assert_eq!(err.path, "routes[0].require");
    assert!(
        err.message.contains(r#"expected "anonymous", "authenticated" or an object with orgs, any_role, all_roles, scopes"#),
        "{}",
        err.message
    );
}

/// The pretty form (what `auth-server gateway-config` prints) is the same config.
#[test]
fn the_pretty_form_is_the_same_config() {
    let (v, _) = conformance();
    let config: GatewayConfig = serde_json::from_value(v["config"].clone()).unwrap();
    let pretty = config.to_json_pretty();
    assert!(pretty.starts_with("{\n  \"providers\": ["), "{}", &pretty[..40]);
    assert_eq!(GatewayConfig::from_json(pretty.as_bytes()).unwrap(), config);
}

/// Errors name the field and say what is wrong in JSON's words, without serde's position (the
/// path says where).
#[test]
fn errors_name_the_field_in_json_words() {
    let err = |text: &str| GatewayConfig::from_json(text.as_bytes()).err().map(|e| (e.path, e.message));
    let route = |require: &str| format!(r#"{{"routes": [{{"prefix": "/", "require": {require}}}]}}"#);
    assert_eq!(
        err(&route(r#"{"any_role": "admin"}"#)),
        Some(("routes[0].require.any_role".into(), r#"invalid type: string "admin", expected array"#.into()))
    );
    assert_eq!(err(r#"{"routes": {"prefix": "/"}}"#), Some(("routes".into(), "invalid type: object, expected array".into())));
    assert_eq!(err(r#"{"routes": [], "cache": "big"}"#), Some(("cache".into(), r#"invalid type: string "big", expected object"#.into())));
    assert_eq!(err(r#"{"routes": []} x"#), Some((".".into(), "trailing characters".into())));
    assert_eq!(err(r#"{"routes": [}"#).map(|e| e.1), Some("expected value".into()));
}

/// Each bad field is refused by name, at its exact bound.
#[test]
fn validation_names_the_bad_field_at_its_bound() {
    let (v, _) = conformance();
    let check = |change: &dyn Fn(&mut Value)| refused_at(&v, change);
    assert_eq!(check(&|c| c["routes"][0] = json!({"prefix": "/a;b", "require": "anonymous"})), Some("routes[0].prefix".into()));
    assert_eq!(check(&|c| c["routes"][0] = json!({"prefix": "/a?b", "require": "anonymous"})), Some("routes[0].prefix".into()));
    assert_eq!(check(&|c| c["providers"][0]["audiences"] = json!([])), Some("providers[0].audiences".into()));
    assert_eq!(check(&|c| c["providers"][0]["audiences"] = json!(["api", ""])), Some("providers[0].audiences".into()));
    assert_eq!(check(&|c| c["providers"][0]["clock_skew_s"] = json!(300)), None);
    assert_eq!(check(&|c| c["providers"][0]["clock_skew_s"] = json!(301)), Some("providers[0].clock_skew_s".into()));
}

/// The rest of the document's bounds, each at the byte or unit: providers' `typ` and inline
/// keys, HMAC keys, the fetch policy, header names and the cache.
#[test]
fn every_bound_is_exact_and_named() {
    let (v, _) = conformance();
    let check = |change: &dyn Fn(&mut Value)| refused_at(&v, change);
    let secret = |n: usize| json!(auth_core::b64::encode(&vec![7u8; n]));
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>, Option<&str>)> = vec![
        ("typ empty", Box::new(|c| c["providers"][0]["typ"] = json!([])), Some("providers[0].typ")),
        ("typ blank", Box::new(|c| c["providers"][0]["typ"] = json!(["at+jwt", ""])), Some("providers[0].typ")),
        ("jwks not a set", Box::new(|c| c["providers"][0]["jwks"] = json!("keys")), Some("providers[0].jwks")),
        ("jwks bad key", Box::new(|c| c["providers"][0]["jwks"]["keys"][0]["x"] = json!("!!")), Some("providers[0].jwks.keys[0].x")),
        ("kid empty", Box::new(|c| c["api_keys"]["hmac_keys"][0]["kid"] = json!("")), Some("api_keys.hmac_keys[0].kid")),
        ("kid 64", Box::new(|c| c["api_keys"]["hmac_keys"][0]["kid"] = json!("k".repeat(64))), None),
        ("kid 65", Box::new(|c| c["api_keys"]["hmac_keys"][0]["kid"] = json!("k".repeat(65))), Some("api_keys.hmac_keys[0].kid")),
        (
            "kid twice",
            Box::new(move |c| {
                let first = c["api_keys"]["hmac_keys"][0].clone();
                c["api_keys"]["hmac_keys"].as_array_mut().unwrap().push(first)
            }),
            Some("api_keys.hmac_keys[1].kid"),
        ),
        ("secret 31", Box::new(move |c| c["api_keys"]["hmac_keys"][0]["secret"] = secret(31)), Some("api_keys.hmac_keys[0].secret")),
        ("secret 32", Box::new(move |c| c["api_keys"]["hmac_keys"][0]["secret"] = secret(32)), None),
        ("secret padded", Box::new(|c| c["api_keys"]["hmac_keys"][0]["secret"] = json!("AAAA=")), Some("api_keys.hmac_keys[0].secret")),
        ("refresh 0", Box::new(|c| c["fetch"] = json!({"jwks_refresh_s": 0})), Some("fetch")),
        ("timeout 0", Box::new(|c| c["fetch"] = json!({"timeout_s": 0})), Some("fetch")),
        ("retry_min 0", Box::new(|c| c["fetch"] = json!({"retry_min_s": 0})), Some("fetch")),
        ("retry_max below min", Box::new(|c| c["fetch"] = json!({"retry_min_s": 5, "retry_max_s": 4})), Some("fetch.retry_max_s")),
        ("retry_max at min", Box::new(|c| c["fetch"] = json!({"retry_min_s": 5, "retry_max_s": 5})), None),
        ("cold start 60000", Box::new(|c| c["fetch"] = json!({"cold_start_wait_ms": 60000})), None),
        ("cold start 60001", Box::new(|c| c["fetch"] = json!({"cold_start_wait_ms": 60001})), Some("fetch.cold_start_wait_ms")),
        ("strip_prefix empty", Box::new(|c| c["headers"] = json!({"strip_prefix": ""})), Some("headers.strip_prefix")),
        ("strip_prefix upper", Box::new(|c| c["headers"] = json!({"strip_prefix": "X-Auth-"})), Some("headers.strip_prefix")),
        ("header name", Box::new(|c| c["headers"] = json!({"subject": "x auth subject"})), Some("headers.subject")),
        ("cache 1000000", Box::new(|c| c["cache"] = json!({"max_entries": 1_000_000})), None),
        ("cache 1000001", Box::new(|c| c["cache"] = json!({"max_entries": 1_000_001})), Some("cache.max_entries")),
    ];
    for (name, change, want) in cases {
        assert_eq!(check(&*change).as_deref(), want, "{name}");
    }
}

/// Every object of the document is an object: serde would otherwise read a struct from an
/// array of its field values in order (`"cache": [0]` quietly turning the cache off, a JWK
/// written as `["OKP", …]`). Each is refused at its own path, and its object form still parses.
#[test]
fn objects_written_as_arrays_are_refused_by_name() {
    let (v, _) = conformance();
    let check = |change: &dyn Fn(&mut Value)| refused_at(&v, change);
    let cases: Vec<(Box<dyn Fn(&mut Value)>, &str)> = vec![
        (Box::new(|c| c["cache"] = json!([0])), "cache"),
        (Box::new(|c| c["cache"] = json!([])), "cache"),
        (Box::new(|c| c["limits"] = json!([100_000])), "limits"),
        (Box::new(|c| c["fetch"] = json!([60])), "fetch"),
        (Box::new(|c| c["headers"] = json!(["x-user"])), "headers"),
        (Box::new(|c| c["cookie"] = json!(["session"])), "cookie"),
        (Box::new(|c| c["revocations"] = json!(["https://auth.authgate.test/feed"])), "revocations"),
        (Box::new(|c| c["revocations"]["credential"] = json!(["feed-key", "c2VjcmV0"])), "revocations.credential"),
        (Box::new(|c| c["api_keys"] = json!([[]])), "api_keys"),
        (Box::new(|c| c["api_keys"]["hmac_keys"][0] = json!(["k1", "c2VjcmV0"])), "api_keys.hmac_keys[0]"),
        (Box::new(|c| c["providers"][0] = json!(["https://auth.authgate.test", ["api"]])), "providers[0]"),
        (Box::new(|c| c["routes"][0] = json!(["/", "anonymous"])), "routes[0]"),
        (Box::new(|c| c["providers"][0]["jwks"] = json!([[]])), "providers[0].jwks"),
        (
            Box::new(|c| {
                c["providers"][0]["jwks"]["keys"][0] =
                    json!(["OKP", "ed1", "EdDSA", "sig", null, "Ed25519", "jRt6KYVsUdzb84dBdUX72bOCPom4v2X2LroZ96cuRLE"])
            }),
            "providers[0].jwks.keys[0]",
        ),
    ];
    for (i, (change, path)) in cases.iter().enumerate() {
        let at = check(change.as_ref());
        assert!(at.as_deref().is_some_and(|at| at.starts_with(path)), "case {i}: refused at {at:?}, expected {path}");
    }
    let err = |text: &str| GatewayConfig::from_json(text.as_bytes()).err().map(|e| (e.path, e.message));
    assert_eq!(err(r#"{"routes": [], "cache": [0]}"#), Some(("cache".into(), "invalid type: array, expected object".into())));
    assert_eq!(err("[[]]"), Some((".".into(), "invalid type: array, expected object".into())));
    for ok in [json!({"max_entries": 0}), json!({})] {
        assert_eq!(check(&|c| c["cache"] = ok.clone()), None);
    }
}
