//! Arbitrary bytes as an API key in both header forms (seeded with real keys): no panic.
#![no_main]
use auth_core::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<auth_core_fuzz::Fixture> = std::cell::RefCell::new(auth_core_fuzz::fixture()));
    let text = String::from_utf8_lossy(data);
    let (key, secret) = text.split_once('\n').unwrap_or((&text, ""));
    let combined = format!("ApiKey {key}.{secret}");
    FX.with(|fx| {
        let mut fx = fx.borrow_mut();
        let now = fx.now;
        let split =
            fx.gateway.decide(&Request { method: "GET", path: "/api", headers: &[("x-api-key", key), ("x-api-secret", secret)] }, now, "f");
        let joined = fx.gateway.decide(&Request { method: "GET", path: "/api", headers: &[("authorization", &combined)] }, now, "f");
        // For clean base64url input both header forms carry the same credential: they must agree.
        let clean = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if clean(key.trim_start_matches("agk_")) && clean(secret) {
            assert_eq!(split.is_allow(), joined.is_allow(), "header forms disagree");
        }
    });
});
