//! One fetcher for all worker VMs of a proxy: the coordination through shared data, sans-IO.
//!
//! Envoy runs one VM per worker thread. Exactly one VM per configuration holds a lease in shared
//! data (taken and renewed with compare-and-swap every tick) and is the *fetcher*: it runs
//! auth-core's schedule and publishes what it fetched. Every other VM applies the published
//! material (`Gateway::apply_material`) and forwards the unknown-`kid` refetch wishes its own
//! `decide` raises to the fetcher, whose gateway applies the cooldown. So N worker threads make
//! the fetches of one.
//!
//! Shared data comes in and goes out through [`SharedStore`]: the proxy's store in the wasm
//! build (`crate::vm`), an in-memory one with Envoy's and Kong's CAS rules in the tests below.

use auth_core::{Gateway, MaterialEvent, Source, UnixTime, Via};

use crate::shared::{decode_ms, lease_key, Lease, SourceKeys};

/// The proxy-wasm status of a failed compare-and-swap.
pub const STATUS_CAS_MISMATCH: u32 = 8;

/// Shared data as proxy-wasm offers it: values with CAS tokens.
pub trait SharedStore {
    /// The value and its CAS token; `Ok((None, 0))` when the key does not exist.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), u32>;
    /// Sets the value; with a `cas` other than 0, only if the value still has that token.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), u32>;
}

/// What the fleet did that is worth a log line (the host logs; the fleet does no IO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetNote {
    BecameFetcher,
    StoppedFetching,
    /// The shared-data store answered with this status: this VM does not fetch meanwhile.
    StoreUnavailable(u32),
    /// A fetched body or stamp could not be shared.
    ShareFailed(Source, u32),
    /// A refetch wish could not be forwarded.
    ForwardFailed(Source, u32),
}

struct SharedSource {
    source: Source,
    keys: SourceKeys,
    /// Stamp (ms) of the shared material this VM has applied or published.
    applied_ms: u64,
    /// Latest forwarded refetch request (ms) this VM has acted on as the fetcher.
    seen_refetch_ms: u64,
    /// Last time (ms) this VM forwarded a refetch request.
    forwarded_ms: u64,
    /// Latest failure of the fetcher (ms) this VM has told its gateway of.
    seen_failed_ms: u64,
}

/// This VM's part in the fleet.
pub struct Fleet {
    me: u64,
    lease_key: String,
    lease_ttl_ms: u64,
    tick_ms: u64,
    fetcher: bool,
    sources: Vec<SharedSource>,
    notes: Vec<FleetNote>,
}

fn ms(t: UnixTime) -> u64 {
    t.millis().max(0) as u64
}

impl Fleet {
    /// `me` tells this VM apart (random per VM); `prefix` is `host.shared_key_prefix`.
    pub fn new(me: u64, prefix: &str, config_id: &str, tick_ms: u64, gateway: &Gateway, store: &dyn SharedStore) -> Fleet {
        let sources = gateway
            .sources()
            .iter()
            .map(|info| {
                let keys = SourceKeys::new(prefix, &info.key);
                // Requests forwarded before this VM started are not new to it.
                let seen = store.get(&keys.refetch).map(|(v, _)| decode_ms(v.as_deref())).unwrap_or(0);
                SharedSource { source: info.source, keys, applied_ms: 0, seen_refetch_ms: seen, forwarded_ms: 0, seen_failed_ms: 0 }
            })
            .collect();
        Fleet {
            me,
            lease_key: lease_key(prefix, config_id),
            // Long enough that a busy worker thread does not lose the lease between two ticks (a
            // handover costs the new fetcher's cooldown state); a VM that goes away releases it.
            lease_ttl_ms: (tick_ms * 10).max(5_000),
            tick_ms,
            fetcher: false,
            sources,
            notes: Vec::new(),
        }
    }

    pub fn is_fetcher(&self) -> bool {
        self.fetcher
    }

    /// What happened since the last call.
    pub fn take_notes(&mut self) -> Vec<FleetNote> {
        core::mem::take(&mut self.notes)
    }

    /// The periodic work: adopt shared material, hold or watch the lease, then act on forwarded
    /// refetch wishes (as the fetcher) or forward this VM's own (as any other VM).
    pub fn tick(&mut self, now: UnixTime, store: &mut dyn SharedStore, gateway: &mut Gateway) {
        if self.sources.is_empty() {
            return;
        }
        self.adopt(now, store, gateway);
        self.hold_lease(now, store);
        if self.fetcher {
            self.take_forwarded_requests(store, gateway);
        } else {
            self.forward_refetch_requests(now, store, gateway);
        }
    }

    /// Before a request: a VM that does not hold every source yet (it just started, or the
    /// issuer has never answered) looks at the shared copies first, so it does not deny for up
    /// to a tick after another VM fetched them. Free once ready.
    pub fn before_request(&mut self, now: UnixTime, store: &dyn SharedStore, gateway: &mut Gateway) {
        if !gateway.is_ready() {
            self.adopt(now, store, gateway);
        }
    }

    /// After a request: a VM that does not fetch forwards the refetch `decide` may have asked
    /// for (unknown `kid`) at once; the fetcher acts on its own at its next poll.
    pub fn after_request(&mut self, now: UnixTime, store: &mut dyn SharedStore, gateway: &mut Gateway) {
        if !self.fetcher && !self.sources.is_empty() {
            self.forward_refetch_requests(now, store, gateway);
        }
    }

    /// Applies every source whose published stamp is newer than what this VM has, and tells the
    /// gateway of the fetcher's failures (so a cold start does not wait for material that is
    /// not coming).
    pub fn adopt(&mut self, now: UnixTime, store: &dyn SharedStore, gateway: &mut Gateway) {
        for s in &mut self.sources {
            if let Ok((failed, _)) = store.get(&s.keys.failed) {
                let failed = decode_ms(failed.as_deref());
                if failed > s.seen_failed_ms {
                    s.seen_failed_ms = failed;
                    gateway.fetch_failed_elsewhere(s.source);
                }
            }
            let Ok((stamp, _)) = store.get(&s.keys.stamp) else { continue };
            let stamp = decode_ms(stamp.as_deref());
            if stamp <= s.applied_ms {
                continue;
            }
            let Ok((Some(body), _)) = store.get(&s.keys.body) else { continue };
            s.applied_ms = stamp;
            gateway.apply_material(s.source, &body, UnixTime::from_millis(stamp as i64), now);
        }
    }

    /// Shares what this VM fetched: the body when new material is in use, then the stamp other
    /// VMs watch (also on a confirmation, so their copies stay as fresh as the fetcher's); and a
    /// failed fetch, so other VMs stop holding requests for material that is not coming.
    pub fn share(&mut self, event: &MaterialEvent, now: UnixTime, store: &mut dyn SharedStore) {
        let (source, copy, new) = match event {
            MaterialEvent::Applied { source, via: Via::Fetch, copy } => (*source, copy, true),
            MaterialEvent::Confirmed { source, via: Via::Fetch, copy } => (*source, copy, false),
            MaterialEvent::FetchFailed { source, .. } | MaterialEvent::Rejected { source, via: Via::Fetch, .. } => {
                let Some(s) = self.sources.iter_mut().find(|s| s.source == *source) else { return };
                // Strictly increasing, as stamps are; this VM has told itself already.
                let failed = ms(now).max(s.seen_failed_ms + 1);
                match put(store, &s.keys.failed, failed.to_string().as_bytes()) {
                    Ok(()) => s.seen_failed_ms = failed,
                    Err(status) => self.notes.push(FleetNote::ShareFailed(*source, status)),
                }
                return;
            }
            _ => return,
        };
        let Some(s) = self.sources.iter_mut().find(|s| s.source == source) else { return };
        if new {
            if let Err(status) = put(store, &s.keys.body, &copy.body) {
                self.notes.push(FleetNote::ShareFailed(source, status));
                return;
            }
        }
        // Strictly increasing, so every VM sees a change even within one millisecond.
        let stamp = ms(copy.fetched_at).max(s.applied_ms + 1);
        match put(store, &s.keys.stamp, stamp.to_string().as_bytes()) {
            Ok(()) => s.applied_ms = stamp,
            Err(status) => self.notes.push(FleetNote::ShareFailed(source, status)),
        }
    }

    fn hold_lease(&mut self, now: UnixTime, store: &mut dyn SharedStore) {
        let (value, cas) = match store.get(&self.lease_key) {
            Ok(v) => v,
            Err(status) => {
                self.notes.push(FleetNote::StoreUnavailable(status));
                return self.set_fetcher(false, store);
            }
        };
        let now_ms = ms(now);
        let current = value.as_deref().and_then(Lease::decode);
        if !Lease::available_to(current.as_ref(), self.me, now_ms) {
            return self.set_fetcher(false, store);
        }
        let next = Lease { holder: self.me, expires_ms: now_ms + self.lease_ttl_ms }.encode();
        let won = match value {
            Some(_) => store.set(&self.lease_key, next.as_bytes(), cas).is_ok(),
            None => create_exclusive(store, &self.lease_key, next.as_bytes()),
        };
        self.set_fetcher(won, store);
    }

    fn set_fetcher(&mut self, fetcher: bool, store: &dyn SharedStore) {
        if fetcher == self.fetcher {
            return;
        }
        self.fetcher = fetcher;
        if fetcher {
            // Requests forwarded to the previous fetcher were its to act on.
            for s in &mut self.sources {
                if let Ok((value, _)) = store.get(&s.keys.refetch) {
                    s.seen_refetch_ms = s.seen_refetch_ms.max(decode_ms(value.as_deref()));
                }
            }
            self.notes.push(FleetNote::BecameFetcher);
        } else {
            self.notes.push(FleetNote::StoppedFetching);
        }
    }

    /// Gives the lease up (the VM is going away), so another VM takes over at its next tick.
    pub fn release(&mut self, store: &mut dyn SharedStore) {
        if !self.fetcher {
            return;
        }
        if let Ok((Some(value), cas)) = store.get(&self.lease_key) {
            if Lease::decode(&value).is_some_and(|l| l.holder == self.me) {
                let released = Lease { holder: self.me, expires_ms: 0 }.encode();
                let _ = store.set(&self.lease_key, released.as_bytes(), cas);
            }
        }
        self.fetcher = false;
    }

    fn take_forwarded_requests(&mut self, store: &dyn SharedStore, gateway: &mut Gateway) {
        for s in &mut self.sources {
            let Ok((value, _)) = store.get(&s.keys.refetch) else { continue };
            let requested = decode_ms(value.as_deref());
            if requested > s.seen_refetch_ms {
                s.seen_refetch_ms = requested;
                // The gateway decides whether the cooldown allows it.
                gateway.request_refetch(s.source);
            }
        }
    }

    fn forward_refetch_requests(&mut self, now: UnixTime, store: &mut dyn SharedStore, gateway: &mut Gateway) {
        let now_ms = ms(now);
        for source in gateway.take_refetch_requests() {
            let Some(s) = self.sources.iter_mut().find(|s| s.source == source) else { continue };
            // One write per source and tick period is plenty: the fetcher reads once per tick.
            if now_ms.saturating_sub(s.forwarded_ms) < self.tick_ms {
                continue;
            }
            s.forwarded_ms = now_ms;
            if let Err(status) = put(store, &s.keys.refetch, now_ms.to_string().as_bytes()) {
                self.notes.push(FleetNote::ForwardFailed(source, status));
            }
        }
    }
}

/// Sets a shared value whatever it holds. Kong's store is strict compare-and-swap (CAS 0 only
/// creates), Envoy's treats CAS 0 as unconditional: passing the current CAS works with both.
fn put(store: &mut dyn SharedStore, key: &str, value: &[u8]) -> Result<(), u32> {
    let mut last = STATUS_CAS_MISMATCH;
    for _ in 0..4 {
        let cas = store.get(key)?.1;
        match store.set(key, value, cas) {
            Ok(()) => return Ok(()),
            Err(status) => last = status,
        }
    }
    Err(last)
}

/// Creates a key only if it does not exist yet, atomically on both hosts. Envoy ignores the CAS
/// of a missing key but checks it once the key exists, so a CAS no live key has (`u32::MAX`)
/// makes concurrent creators fail; Kong creates only with CAS 0.
fn create_exclusive(store: &mut dyn SharedStore, key: &str, value: &[u8]) -> bool {
    match store.set(key, value, u32::MAX) {
        Ok(()) => true,
        Err(STATUS_CAS_MISMATCH) => matches!(store.get(key), Ok((None, _))) && store.set(key, value, 0).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use auth_core::{ErrorCode, FetchResponse, MaterialEvent, Request};

    use super::*;

    /// One proxy's shared data, with the CAS rules of Envoy or of Kong (ngx_wasm_module).
    #[derive(Clone, Copy, PartialEq)]
    enum Rules {
        Envoy,
        Kong,
    }

    #[derive(Clone)]
    struct Store {
        rules: Rules,
        data: Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>,
        next_cas: Rc<RefCell<u32>>,
    }

    impl Store {
        fn new(rules: Rules) -> Store {
            Store { rules, data: Rc::default(), next_cas: Rc::new(RefCell::new(1)) }
        }
    }

    impl SharedStore for Store {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
            Ok(self.data.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c)))
        }

        fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
            let mut data = self.data.borrow_mut();
            let current = data.get(key).map(|(_, c)| *c);
            let ok = match (self.rules, current) {
                (Rules::Envoy, None) => true,
                (Rules::Envoy, Some(c)) => cas == 0 || cas == c,
                (Rules::Kong, None) => cas == 0,
                (Rules::Kong, Some(c)) => cas == c,
            };
            if !ok {
                return Err(STATUS_CAS_MISMATCH);
            }
            let mut next = self.next_cas.borrow_mut();
            *next += 1;
            data.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }

    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn gateway() -> Gateway {
        let cfg = r#"{"providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "http://127.0.0.1:9000/jwks"}],
                      "routes": [{"prefix": "/", "require": "authenticated"}], "fetch": {"unknown_kid_cooldown_s": 30}}"#;
        Gateway::from_json(cfg.as_bytes()).unwrap()
    }

    struct Vm {
        gw: Gateway,
        fleet: Fleet,
        store: Store,
    }

    impl Vm {
        fn new(me: u64, store: &Store) -> Vm {
            let gw = gateway();
            let fleet = Fleet::new(me, "", "cfg", 500, &gw, store);
            Vm { gw, fleet, store: store.clone() }
        }

        fn tick(&mut self, now: i64) {
            self.fleet.tick(at(now), &mut self.store, &mut self.gw);
        }

        /// As the fetcher does: every due fetch answered with the JWKS, the events shared.
        fn fetch_all(&mut self, now: i64) -> usize {
            let mut n = 0;
            while let Some(f) = self.gw.poll_fetch(at(now)) {
                self.gw.handle_fetch(f.id, FetchResponse { status: 200, body: JWKS.as_bytes(), etag: None }, at(now));
                n += 1;
            }
            self.share_events();
            n
        }

        fn share_events(&mut self) {
            while let Some(e) = self.gw.poll_event() {
                self.fleet.share(&e, at(T0), &mut self.store);
            }
        }

        fn events(&mut self) -> Vec<MaterialEvent> {
            std::iter::from_fn(|| self.gw.poll_event()).collect()
        }
    }

    fn at(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    const T0: i64 = 1_700_000_000;

    #[test]
    fn one_vm_fetches_and_the_others_apply_what_it_shares() {
        for rules in [Rules::Envoy, Rules::Kong] {
            let store = Store::new(rules);
            let mut vms: Vec<Vm> = (1..=3).map(|me| Vm::new(me, &store)).collect();
            for vm in vms.iter_mut() {
                vm.tick(T0);
            }
            let fetchers: Vec<bool> = vms.iter().map(|v| v.fleet.is_fetcher()).collect();
            assert_eq!(fetchers, vec![true, false, false], "exactly one lease holder");
            assert_eq!(vms[0].fetch_all(T0), 1);
            for vm in vms.iter_mut().skip(1) {
                assert!(!vm.gw.is_ready());
                vm.tick(T0);
                let evs = vm.events();
                assert!(matches!(&evs[0], MaterialEvent::Applied { via: Via::Host, copy, .. } if copy.fetched_at == at(T0)), "{evs:?}");
                assert!(vm.gw.is_ready());
            }
        }
    }

    #[test]
    fn a_late_vm_adopts_before_its_first_request_and_confirmations_keep_copies_fresh() {
        let store = Store::new(Rules::Envoy);
        let mut fetcher = Vm::new(1, &store);
        fetcher.tick(T0);
        fetcher.fetch_all(T0);
        let mut late = Vm::new(2, &store);
        late.fleet.before_request(at(T0 + 1), &late.store, &mut late.gw);
        assert!(late.gw.is_ready(), "adopted before deciding, not a tick later");
        late.events();
        // The fetcher's refresh answers 304: the stamp moves on, so the other VM's keys stay fresh.
        let f = fetcher.gw.poll_fetch(at(T0 + 300)).unwrap();
        fetcher.gw.handle_fetch(f.id, FetchResponse { status: 304, body: b"", etag: None }, at(T0 + 300));
        fetcher.share_events();
        late.tick(T0 + 300);
        assert!(
            matches!(late.events().as_slice(), [MaterialEvent::Confirmed { via: Via::Host, copy, .. }] if copy.fetched_at == at(T0 + 300))
        );
        assert_eq!(late.gw.status().sources[0].last_success, Some(at(T0 + 300)));
    }

    #[test]
    fn refetch_wishes_are_forwarded_to_the_fetcher_once_per_tick() {
        let store = Store::new(Rules::Envoy);
        let mut fetcher = Vm::new(1, &store);
        let mut other = Vm::new(2, &store);
        fetcher.tick(T0);
        other.tick(T0);
        fetcher.fetch_all(T0);
        other.tick(T0);
        other.events();
        // A token with an unknown kid at the other VM: its wish reaches the fetcher.
        let token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsyIn0.eyJpc3MiOiJodHRwczovL2lzcyJ9.c2ln";
        let auth = format!("Bearer {token}");
        for _ in 0..20 {
            let d = other.gw.decide(&Request { method: "GET", path: "/", headers: &[("authorization", &auth)] }, at(T0 + 10), "r");
            assert!(matches!(d, auth_core::Decision::Deny(ref d) if d.code == ErrorCode::UnknownKid));
            other.fleet.after_request(at(T0 + 10), &mut other.store, &mut other.gw);
        }
        fetcher.tick(T0 + 10);
        assert_eq!(fetcher.fetch_all(T0 + 10), 1, "one refetch for all the wishes");
        fetcher.tick(T0 + 11);
        assert_eq!(fetcher.fetch_all(T0 + 11), 0, "nothing new was forwarded");
    }

    #[test]
    fn the_lease_passes_on_when_its_holder_goes_away_or_stops_ticking() {
        let store = Store::new(Rules::Kong);
        let mut a = Vm::new(1, &store);
        let mut b = Vm::new(2, &store);
        a.tick(T0);
        b.tick(T0);
        assert!(a.fleet.is_fetcher() && !b.fleet.is_fetcher());
        assert_eq!(a.fleet.take_notes(), vec![FleetNote::BecameFetcher]);
        // Released on shutdown: the next tick of another VM takes over.
        a.fleet.release(&mut a.store);
        b.tick(T0 + 1);
        assert!(b.fleet.is_fetcher());
        // A holder that stops ticking loses the lease once it expires (10 ticks, at least 5 s).
        let mut c = Vm::new(3, &store);
        c.tick(T0 + 3);
        assert!(!c.fleet.is_fetcher(), "still held");
        c.tick(T0 + 7);
        assert!(c.fleet.is_fetcher(), "expired: taken over");
        b.tick(T0 + 8);
        assert!(!b.fleet.is_fetcher());
        assert_eq!(b.fleet.take_notes().last(), Some(&FleetNote::StoppedFetching));
    }

    #[test]
    fn a_failed_fetch_ends_the_cold_start_wait_of_every_vm() {
        let store = Store::new(Rules::Envoy);
        let mut fetcher = Vm::new(1, &store);
        let mut other = Vm::new(2, &store);
        fetcher.tick(T0);
        other.tick(T0);
        let token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lzcyJ9.c2ln";
        let auth = format!("Bearer {token}");
        let held =
            |vm: &mut Vm| match vm.gw.decide(&Request { method: "GET", path: "/", headers: &[("authorization", &auth)] }, at(T0), "r") {
                auth_core::Decision::Deny(d) => d.hold_until.is_some(),
                d => panic!("{d:?}"),
            };
        assert!(held(&mut other), "the first fetch is on its way: hold");
        // The issuer is down: the fetcher's fetch fails, and it says so.
        let f = fetcher.gw.poll_fetch(at(T0)).unwrap();
        fetcher.gw.handle_fetch(f.id, FetchResponse { status: 503, body: b"", etag: None }, at(T0));
        fetcher.share_events();
        // Before its next request (or at its next tick) the other VM knows: no hold, 503 at once.
        other.fleet.before_request(at(T0), &other.store, &mut other.gw);
        assert!(!held(&mut other));
        // A VM started later learns it too.
        let mut late = Vm::new(3, &store);
        late.fleet.before_request(at(T0 + 1), &late.store, &mut late.gw);
        assert!(!held(&mut late));
    }

    #[test]
    fn a_new_fetcher_ignores_wishes_forwarded_to_its_predecessor() {
        let store = Store::new(Rules::Envoy);
        let mut store_w = store.clone();
        store_w.set(&SourceKeys::new("", &gateway().sources()[0].key).refetch, b"1700000000000", 0).unwrap();
        let mut vm = Vm::new(1, &store);
        vm.tick(T0);
        assert_eq!(vm.fetch_all(T0), 1, "the first fetch, nothing forced");
        vm.tick(T0 + 5);
        assert_eq!(vm.fetch_all(T0 + 5), 0, "the old wish is not acted on");
    }
}
