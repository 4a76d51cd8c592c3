//! Arbitrary bytes as the revocation feed: never panics, never applied (it is not signed; the
//! seed feed itself may come back, and is only confirmed).
#![no_main]
use auth_core::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<auth_core_fuzz::Fixture> = std::cell::RefCell::new(auth_core_fuzz::fixture()));
    FX.with(|fx| {
        let mut fx = fx.borrow_mut();
        let now = fx.now;
        let before = fx.gateway.status().feed_version;
        fx.gateway.apply_material(Source::Revocations, data, now.plus_secs(1), now.plus_secs(1));
        let event = fx.gateway.poll_event();
        let refused = matches!(
            event,
            Some(
                auth_core::MaterialEvent::Rejected { .. }
                    | auth_core::MaterialEvent::KeptPending { .. }
                    | auth_core::MaterialEvent::Confirmed { .. }
            )
        );
        assert!(refused, "unsigned feed accepted: {event:?}");
        assert_eq!(fx.gateway.status().feed_version, before);
    });
});
