//! Arbitrary bytes as the revocation feed: never panics, never accepted (it is not signed).
#![no_main]
use auth_core::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<auth_core_fuzz::Fixture> = std::cell::RefCell::new(auth_core_fuzz::fixture()));
    FX.with(|fx| {
        let mut fx = fx.borrow_mut();
        let now = fx.now;
        let result = fx.gateway.apply_material(Source::Revocations, data, now + 1, now + 1);
        assert!(result.is_err() || result == Ok(auth_core::Applied::Unchanged), "unsigned feed accepted: {result:?}");
    });
});
