//! Arbitrary bytes as a bearer token: `decide` must not panic, and never allow garbage.
#![no_main]
use auth_core::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<auth_core_fuzz::Fixture> = std::cell::RefCell::new(auth_core_fuzz::fixture()));
    let token = String::from_utf8_lossy(data);
    let auth = format!("Bearer {token}");
    FX.with(|fx| {
        let mut fx = fx.borrow_mut();
        let now = fx.now;
        let _ = fx.gateway.decide(&Request { method: "GET", path: "/api/items", headers: &[("authorization", &auth)] }, now, "fuzz");
    });
});
