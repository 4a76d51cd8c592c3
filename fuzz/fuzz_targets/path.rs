//! Arbitrary request targets: a canonical path is a fixed point holding nothing two upstreams
//! could read differently, and the gateway decides a target exactly as it decides its canonical
//! path (anonymous and with an admin's token): the route rules see one path per request.
#![no_main]
use auth_core::path::canonical_path;
use auth_core::{Decision, Request};
use libfuzzer_sys::fuzz_target;

type Fx = (auth_core_fuzz::Fixture, Vec<(String, String)>);

fn outcome(d: &Decision) -> String {
    match d {
        Decision::Allow(_) => "allow".into(),
        Decision::Deny(deny) => format!("{:?}", deny.code),
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local!(static FX: std::cell::RefCell<Fx> =
        std::cell::RefCell::new((auth_core_fuzz::fixture(), auth_core_fuzz::case_headers("admin_on_admin"))));
    let target = String::from_utf8_lossy(data);
    let Some(canonical) = canonical_path(&target) else { return };
    let c: &str = &canonical;
    assert!(c.starts_with('/'), "{target:?} -> {c:?}");
    assert!(!c.contains("//") && !c.contains(['?', '#', ';', '\\']), "{target:?} -> {c:?}");
    assert!(c.bytes().all(|b| (0x21..0x7f).contains(&b)), "{target:?} -> {c:?}");
    assert!(c.split('/').all(|s| s != "." && s != ".."), "{target:?} -> {c:?}");
    assert_eq!(canonical_path(c).as_deref(), Some(c), "not a fixed point: {target:?}");
    FX.with(|fx| {
        let (fx, admin) = &mut *fx.borrow_mut();
        let now = fx.now;
        let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for method in ["GET", "DELETE"] {
            for headers in [&[][..], &admin[..]] {
                let raw = fx.gateway.decide(&Request { method, path: &target, headers }, now, "f");
                let canon = fx.gateway.decide(&Request { method, path: c, headers }, now, "f");
                assert_eq!(outcome(&raw), outcome(&canon), "{method} {target:?} decided unlike {c:?}");
            }
        }
    });
});
