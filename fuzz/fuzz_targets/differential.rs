//! One request, four ways to decide it, one answer: auth-core's own crypto with its token cache,
//! the same without a cache, and every EdDSA/ES256/RS256 signature checked by a host through the
//! host-crypto step, answered by `ring` (an independent implementation) — the suspended decision
//! resumed with the verdict (what hosts do), and decided again with the answer. A second
//! decision of the same request (a cache hit where the first one verified) must agree as well.
//!
//! Input: `METHOD TARGET` on the first line, then `name: value` header lines (the seeds are the
//! conformance cases written this way).
#![no_main]
use auth_core::{Alg, Decision, HostAlgs, HostCrypto, Request, Step};
use auth_core_fuzz::{fixture, fixture_with, ring_verify, Fixture};
use libfuzzer_sys::fuzz_target;

const HOST: HostAlgs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);

struct Hosts {
    cached: Fixture,
    uncached: Fixture,
    host_crypto: Fixture,
    answered: Fixture,
}

/// Everything a host writes out, without whether the identity came from the cache.
fn outcome(d: &Decision) -> String {
    match d {
        Decision::Allow(a) => format!("allow {} {:?} {:?} {:?}", a.route, a.identity, a.headers_to_set(), a.remove_headers),
        Decision::Deny(d) => format!("deny {d:?}"),
    }
}

fn with_host_crypto(fx: &mut Fixture, request: &Request<'_>) -> Decision {
    let mut step = fx.gateway.decide_with(request, fx.now, "f", HostCrypto { algs: HOST, answer: None });
    let mut asked = 0;
    loop {
        match step {
            Step::Decided(decision) => return decision,
            Step::CheckSignature(suspended) => {
                asked += 1;
                assert!(asked == 1, "asked again after an answer");
                let valid = ring_verify(suspended.check());
                step = fx.gateway.resume(suspended, Some(valid), fx.now, HOST);
            }
        }
    }
}

/// The same through `decide_with` again with the answer (what `resume` falls back to when keys
/// changed meanwhile).
fn with_answers(fx: &mut Fixture, request: &Request<'_>) -> Decision {
    let mut answer = None;
    loop {
        match fx.gateway.decide_with(request, fx.now, "f", HostCrypto { algs: HOST, answer: answer.as_ref() }) {
            Step::Decided(decision) => return decision,
            Step::CheckSignature(suspended) => {
                assert!(answer.is_none(), "asked again after an answer");
                let check = suspended.check().clone();
                let valid = ring_verify(&check);
                answer = Some(check.answer(valid));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local!(static HOSTS: std::cell::RefCell<Hosts> = std::cell::RefCell::new(Hosts {
        cached: fixture(),
        uncached: fixture_with(|config| config["cache"] = serde_json::json!({ "max_entries": 0 })),
        host_crypto: fixture(),
        answered: fixture(),
    }));
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else { return };
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(": ")).collect();
    let request = Request { method, path: target, headers: &headers };
    HOSTS.with(|hosts| {
        let hosts = &mut *hosts.borrow_mut();
        let now = hosts.cached.now;
        let own = outcome(&hosts.cached.gateway.decide(&request, now, "f"));
        let fresh = outcome(&hosts.uncached.gateway.decide(&request, now, "f"));
        assert_eq!(own, fresh, "the token cache changed the answer");
        let host = outcome(&with_host_crypto(&mut hosts.host_crypto, &request));
        assert_eq!(own, host, "host crypto (ring) disagrees with auth-core's own");
        assert_eq!(own, outcome(&with_answers(&mut hosts.answered, &request)), "decided again with the answer, it differs");
        assert_eq!(own, outcome(&hosts.cached.gateway.decide(&request, now, "f")), "a second decision differs");
        assert_eq!(host, outcome(&with_host_crypto(&mut hosts.host_crypto, &request)), "a second host-crypto decision differs");
    });
});
