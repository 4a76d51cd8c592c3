//! Arbitrary bytes as a fetched JWKS (the provider fetches its keys besides its inline ones):
//! applying must not panic, and a token is then judged against what it brought.
#![no_main]
use auth_core::{Request, Source};
use libfuzzer_sys::fuzz_target;

type Fx = (auth_core_fuzz::Fixture, Vec<(String, String)>);

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<Fx> =
        std::cell::RefCell::new((auth_core_fuzz::fixture_fetching_jwks(), auth_core_fuzz::case_headers("es256_valid"))));
    FX.with(|fx| {
        let (fx, headers) = &mut *fx.borrow_mut();
        let now = fx.now;
        fx.gateway.apply_material(Source::Jwks(0), data, now, now);
        while fx.gateway.poll_event().is_some() {}
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let _ = fx.gateway.decide(&Request { method: "GET", path: "/api/items", headers: &headers }, now, "f");
    });
});
