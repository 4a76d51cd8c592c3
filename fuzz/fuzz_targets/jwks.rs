//! Arbitrary bytes as a fetched JWKS: applying must not panic.
#![no_main]
use auth_core::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<auth_core_fuzz::Fixture> = std::cell::RefCell::new(auth_core_fuzz::fixture()));
    FX.with(|fx| {
        let mut fx = fx.borrow_mut();
        let now = fx.now;
        fx.gateway.apply_material(Source::Jwks(0), data, now, now);
        while fx.gateway.poll_event().is_some() {}
    });
});
