//! One worker VM's state and its host loop: the gateway, the fetcher lease, the material shared
//! with the other VMs, and the fetches in flight. The root context drives it on every tick; the
//! HTTP contexts call `decide` through it.
//!
//! Fetch coordination (see docs/plugin.md): exactly one VM per configuration holds a lease in
//! shared data (taken and renewed with compare-and-swap on every tick) and is the *fetcher*: it
//! runs auth-core's schedule (`poll_fetch`), makes the requests with `dispatch_http_call` and
//! publishes what it fetched. Every other VM applies published material with `apply_material`
//! and forwards the unknown-`kid` refetch requests its own `decide` raises to the fetcher, whose
//! core applies the cooldown. So N worker threads make the fetches of one.

use std::time::Duration;

use auth_core::{Applied, FetchId, FetchResponse, FetchRequest, Gateway, Source};

use crate::abi::{self, Level, BUFFER_HTTP_CALL_RESPONSE_BODY, MAP_HTTP_CALL_RESPONSE_HEADERS, STATUS_CAS_MISMATCH};
use crate::config::{HostConfig, PluginConfig, Target};
use crate::metrics::Metrics;
use crate::shared::{self, Lease};

/// Largest fetched body read from the host (auth-core applies its own, smaller limits).
const MAX_BODY: usize = 32 * 1024 * 1024;

struct TargetState {
    target: Target,
    body_key: String,
    stamp_key: String,
    refetch_key: String,
    /// Stamp (ms) of the shared material this VM has applied or published.
    applied_stamp_ms: u64,
    /// Latest forwarded refetch request (ms) this VM has acted on as the fetcher.
    seen_refetch_ms: u64,
    /// Last time (ms) this VM forwarded a refetch request.
    forwarded_ms: u64,
}

struct InFlight {
    token: u32,
    id: FetchId,
    source: Source,
}

pub struct Engine {
    pub gateway: Gateway,
    pub host: HostConfig,
    pub metrics: Metrics,
    targets: Vec<TargetState>,
    /// This VM's identity in the lease (random per VM).
    me: u64,
    lease_key: String,
    lease_ttl_ms: u64,
    fetcher: bool,
    /// Every source has material (applied from shared data or fetched here).
    complete: bool,
    in_flight: Vec<InFlight>,
    /// A feed fetch held back while a JWKS fetch is in flight (see `dispatch`).
    held_feed: Option<FetchRequest>,
    configured_ms: u64,
    /// Counter for request ids this VM makes up when the request has none.
    id_seq: u64,
    /// 5xx denials are logged at most once a second per VM, with a count of the others.
    warned_ms: u64,
    unlogged_5xx: u64,
}

/// Hosts prefix each line with the plugin's name (Envoy: `wasm log authgate authgate: ...`).
pub fn log(level: Level, message: &str) {
    abi::log(level, message);
}

fn now_s(ms: u64) -> i64 {
    (ms / 1000) as i64
}

impl Engine {
    pub fn new(config: PluginConfig, me: u64, now_ms: u64) -> Engine {
        let PluginConfig { host, gateway, targets, gateway_json } = config;
        let sources: Vec<Source> = targets.iter().map(|t| t.source).collect();
        let prefix = host.shared_key_prefix.clone();
        let metrics = Metrics::define(&sources);
        let targets = targets
            .into_iter()
            .map(|target| {
                let refetch_key = format!("{prefix}{}", shared::refetch_key(&target.url));
                // Requests forwarded before this VM started are not new to it.
                let seen = abi::get_shared(&refetch_key).map(|(v, _)| shared::decode_ms(v.as_deref())).unwrap_or(0);
                TargetState {
                    body_key: format!("{prefix}{}", shared::body_key(&target.url)),
                    stamp_key: format!("{prefix}{}", shared::stamp_key(&target.url)),
                    refetch_key,
                    target,
                    applied_stamp_ms: 0,
                    seen_refetch_ms: seen,
                    forwarded_ms: 0,
                }
            })
            .collect();
        // Long enough that a busy worker thread does not lose the lease between two ticks (a
        // handover costs the new fetcher's cooldown state); a VM that goes away releases it.
        let lease_ttl_ms = (host.tick_ms * 10).max(5_000);
        Engine {
            gateway,
            metrics,
            targets,
            me,
            lease_key: format!("{}{}", host.shared_key_prefix, shared::lease_key(&gateway_json)),
            lease_ttl_ms,
            fetcher: false,
            complete: false,
            in_flight: Vec::new(),
            held_feed: None,
            configured_ms: now_ms,
            id_seq: 0,
            warned_ms: 0,
            unlogged_5xx: 0,
            host,
        }
    }

    /// Logs a 5xx denial (an outage: keys or feed unavailable), at most once a second.
    pub fn log_unavailable(&mut self, now_ms: u64, request_id: &str, code: &str) {
        if now_ms.saturating_sub(self.warned_ms) < 1000 {
            self.unlogged_5xx += 1;
            return;
        }
        let more = core::mem::take(&mut self.unlogged_5xx);
        let tail = if more > 0 { format!(" (and {more} more since the last such line)") } else { String::new() };
        log(Level::Warn, &format!("request {request_id} denied: {code}{tail}"));
        self.warned_ms = now_ms;
    }

    /// A request id for a request that came without one.
    pub fn make_request_id(&mut self) -> String {
        self.id_seq = self.id_seq.wrapping_add(1);
        format!("ag-{:08x}-{:x}", self.me as u32, self.id_seq)
    }

    /// The periodic work: adopt shared material, hold or watch the lease, then fetch (as the
    /// fetcher) or forward refetch requests (as any other VM), and update the gauges.
    pub fn tick(&mut self, now_ms: u64) {
        if self.targets.is_empty() {
            return;
        }
        self.adopt_shared_material(now_ms);
        self.hold_lease(now_ms);
        if self.fetcher {
            self.take_forwarded_requests();
            self.fetch_due(now_ms);
            self.record_gauges(now_ms);
        } else {
            self.forward_refetch_requests(now_ms);
        }
    }

    /// Before a request: a VM that does not hold every source yet (it just started, or the
    /// issuer has never answered) looks at the shared copies first, so it does not deny with
    /// `keys_unavailable` for up to a tick after another VM fetched them. Free once complete.
    pub fn before_request(&mut self, now_ms: u64) {
        if !self.complete {
            self.adopt_shared_material(now_ms);
        }
    }

    /// After a request: a VM that does not fetch forwards the refetch `decide` may have asked
    /// for (unknown `kid`) at once; the fetcher acts on its own at its next tick.
    pub fn after_request(&mut self, now_ms: u64) {
        if !self.fetcher && !self.targets.is_empty() {
            self.forward_refetch_requests(now_ms);
        }
    }

    fn adopt_shared_material(&mut self, now_ms: u64) {
        self.adopt_each(now_ms);
        self.complete = self.targets.iter().all(|t| t.applied_stamp_ms > 0);
    }

    fn adopt_each(&mut self, now_ms: u64) {
        for t in self.targets.iter_mut() {
            let stamp = match abi::get_shared(&t.stamp_key) {
                Ok((value, _)) => shared::decode_ms(value.as_deref()),
                Err(_) => continue,
            };
            if stamp <= t.applied_stamp_ms {
                continue;
            }
            let body = match abi::get_shared(&t.body_key) {
                Ok((Some(body), _)) => body,
                _ => continue,
            };
            t.applied_stamp_ms = stamp;
            let source = t.target.source;
            match self.gateway.apply_material(source, &body, now_s(stamp), now_s(now_ms)) {
                Ok(Applied::Updated) => {
                    log(Level::Info, &format!("{} updated from the shared copy ({} bytes)", source.key(), body.len()))
                }
                Ok(_) => {}
                Err(e) => log(Level::Warn, &format!("{}: shared copy not applied: {e}", source.key())),
            }
        }
    }

    fn hold_lease(&mut self, now_ms: u64) {
        let (value, cas) = match abi::get_shared(&self.lease_key) {
            Ok(v) => v,
            Err(status) => {
                log(Level::Warn, &format!("shared data unavailable (status {status}); not fetching from this worker"));
                return self.set_fetcher(false);
            }
        };
        let current = value.as_deref().and_then(Lease::decode);
        if !Lease::available_to(current.as_ref(), self.me, now_ms) {
            return self.set_fetcher(false);
        }
        let next = Lease { holder: self.me, expires_ms: now_ms + self.lease_ttl_ms }.encode();
        let won = match value {
            Some(_) => abi::set_shared(&self.lease_key, next.as_bytes(), cas).is_ok(),
            None => create_exclusive(&self.lease_key, next.as_bytes()),
        };
        self.set_fetcher(won);
    }

    fn set_fetcher(&mut self, fetcher: bool) {
        if fetcher != self.fetcher {
            self.fetcher = fetcher;
            if fetcher {
                // Requests forwarded to the previous fetcher were its to act on.
                for t in self.targets.iter_mut() {
                    if let Ok((value, _)) = abi::get_shared(&t.refetch_key) {
                        t.seen_refetch_ms = t.seen_refetch_ms.max(shared::decode_ms(value.as_deref()));
                    }
                }
                log(Level::Info, "this worker now fetches JWKS and the revocation feed for all workers");
            } else {
                log(Level::Debug, "another worker fetches; this one uses its shared copies");
            }
        }
    }

    /// Gives the lease up (the VM is going away), so another worker takes over at its next tick.
    pub fn release_lease(&mut self) {
        if !self.fetcher {
            return;
        }
        if let Ok((Some(value), cas)) = abi::get_shared(&self.lease_key) {
            if Lease::decode(&value).is_some_and(|l| l.holder == self.me) {
                let released = Lease { holder: self.me, expires_ms: 0 }.encode();
                let _ = abi::set_shared(&self.lease_key, released.as_bytes(), cas);
            }
        }
        self.fetcher = false;
    }

    fn take_forwarded_requests(&mut self) {
        for t in self.targets.iter_mut() {
            let requested = match abi::get_shared(&t.refetch_key) {
                Ok((value, _)) => shared::decode_ms(value.as_deref()),
                Err(_) => continue,
            };
            if requested > t.seen_refetch_ms {
                t.seen_refetch_ms = requested;
                // The core decides whether the cooldown allows it.
                self.gateway.request_refetch(t.target.source);
            }
        }
    }

    fn forward_refetch_requests(&mut self, now_ms: u64) {
        for source in self.gateway.take_refetch_requests() {
            let Some(t) = self.targets.iter_mut().find(|t| t.target.source == source) else { continue };
            // One write per source and tick period is plenty: the fetcher reads once per tick.
            if now_ms.saturating_sub(t.forwarded_ms) < self.host.tick_ms {
                continue;
            }
            t.forwarded_ms = now_ms;
            if put(&t.refetch_key, now_ms.to_string().as_bytes()).is_err() {
                log(Level::Warn, &format!("{}: could not forward a refetch request", source.key()));
            }
        }
    }

    fn fetch_due(&mut self, now_ms: u64) {
        while let Some(fetch) = self.gateway.poll_fetch(now_s(now_ms)) {
            self.dispatch(fetch, now_ms);
        }
    }

    fn dispatch(&mut self, fetch: FetchRequest, now_ms: u64) {
        // The feed is verified with the issuer's keys. Sent together with the first JWKS fetch,
        // the feed can win the race, be refused for want of keys and make auth-core ask for a
        // forced JWKS refetch, which spends the unknown-kid cooldown for nothing. So the feed
        // request leaves once the JWKS answers are in (it is still within its own timeout).
        if fetch.source == Source::Revocations && self.in_flight.iter().any(|f| matches!(f.source, Source::Jwks(_))) {
            self.held_feed = Some(fetch);
            return;
        }
        let Some(t) = self.targets.iter().find(|t| t.target.source == fetch.source) else {
            self.gateway.fetch_failed(fetch.id, now_s(now_ms));
            return;
        };
        let target = &t.target;
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", &target.path),
            (":authority", &target.authority),
            (":scheme", &target.scheme),
            ("user-agent", concat!("authgate-plugin/", env!("CARGO_PKG_VERSION"))),
        ];
        headers.extend(fetch.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_secs(fetch.timeout_s.max(1));
        match proxy_wasm::hostcalls::dispatch_http_call(&target.upstream, headers, None, Vec::new(), timeout) {
            Ok(token) => self.in_flight.push(InFlight { token, id: fetch.id, source: fetch.source }),
            Err(status) => {
                log(
                    Level::Warn,
                    &format!(
                        "{}: cannot call upstream \"{}\" (status {}): is it a defined cluster?",
                        fetch.source.key(),
                        target.upstream,
                        status as u32
                    ),
                );
                self.gateway.fetch_failed(fetch.id, now_s(now_ms));
                self.metrics.fetched(fetch.source, false);
            }
        }
    }

    /// A `dispatch_http_call` answer (or its failure: no `:status`).
    pub fn on_fetch_response(&mut self, token: u32, body_size: usize) {
        let Some(pos) = self.in_flight.iter().position(|f| f.token == token) else { return };
        let flight = self.in_flight.swap_remove(pos);
        let now_ms = abi::now_ms();
        self.handle_response(flight, body_size, now_ms);
        if !self.in_flight.iter().any(|f| matches!(f.source, Source::Jwks(_))) {
            if let Some(feed) = self.held_feed.take() {
                self.dispatch(feed, now_ms);
            }
        }
    }

    fn handle_response(&mut self, flight: InFlight, body_size: usize, now_ms: u64) {
        let source = flight.source;
        let status = abi::get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<u16>().ok());
        let Some(status) = status else {
            self.gateway.fetch_failed(flight.id, now_s(now_ms));
            self.metrics.fetched(source, false);
            log(Level::Warn, &format!("{}: fetch failed (no response: connection failure or timeout)", source.key()));
            return;
        };
        let body = if body_size > 0 {
            abi::get_buffer(BUFFER_HTTP_CALL_RESPONSE_BODY, body_size.min(MAX_BODY)).unwrap_or_default()
        } else {
            Vec::new()
        };
        let etag = abi::get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, "etag").and_then(|v| String::from_utf8(v).ok());
        let response = FetchResponse { status, body: &body, etag: etag.as_deref() };
        match self.gateway.handle_fetch(flight.id, response, now_s(now_ms)) {
            Ok(applied) => {
                self.metrics.fetched(source, true);
                if applied == Applied::Updated {
                    log(Level::Info, &format!("{} updated ({} bytes)", source.key(), body.len()));
                }
                self.publish(source, (status == 200).then_some(body.as_slice()), now_ms);
            }
            Err(e) => {
                self.metrics.fetched(source, false);
                log(Level::Warn, &format!("{}: fetch not applied: {e}", source.key()));
            }
        }
    }

    /// Shares a successful fetch: the body (on 200), then the stamp the other VMs watch.
    fn publish(&mut self, source: Source, body: Option<&[u8]>, now_ms: u64) {
        let Some(t) = self.targets.iter_mut().find(|t| t.target.source == source) else { return };
        if let Some(body) = body {
            if let Err(status) = put(&t.body_key, body) {
                log(Level::Warn, &format!("{}: could not share the fetched material (status {status})", source.key()));
                return;
            }
        }
        // Strictly increasing, so every VM sees a change even within one millisecond.
        let stamp = now_ms.max(t.applied_stamp_ms + 1);
        if put(&t.stamp_key, stamp.to_string().as_bytes()).is_ok() {
            t.applied_stamp_ms = stamp;
        }
        self.complete = self.targets.iter().all(|t| t.applied_stamp_ms > 0);
    }

    fn record_gauges(&self, now_ms: u64) {
        let now = now_s(now_ms);
        let status = self.gateway.status();
        for s in &status.sources {
            // Never fetched: age since the filter was configured, so an alert on age fires.
            let since = s.last_success.unwrap_or(now_s(self.configured_ms));
            self.metrics.age(s.source, now.saturating_sub(since).max(0) as u64);
        }
        if let Some(v) = status.feed_version {
            self.metrics.feed_version(v);
        }
    }
}

/// Sets a shared value whatever it holds. Kong's store is strict compare-and-swap (CAS 0 only
/// creates), Envoy's treats CAS 0 as unconditional: passing the current CAS works with both.
fn put(key: &str, value: &[u8]) -> Result<(), u32> {
    let mut last = STATUS_CAS_MISMATCH;
    for _ in 0..4 {
        let cas = abi::get_shared(key)?.1;
        match abi::set_shared(key, value, cas) {
            Ok(()) => return Ok(()),
            Err(status) => last = status,
        }
    }
    Err(last)
}

/// Creates a key only if it does not exist yet, atomically on both hosts. Envoy ignores the CAS
/// of a missing key but checks it once the key exists, so a CAS no live key has (`u32::MAX`)
/// makes concurrent creators fail; Kong creates only with CAS 0.
fn create_exclusive(key: &str, value: &[u8]) -> bool {
    match abi::set_shared(key, value, u32::MAX) {
        Ok(()) => true,
        Err(STATUS_CAS_MISMATCH) => {
            matches!(abi::get_shared(key), Ok((None, _))) && abi::set_shared(key, value, 0).is_ok()
        }
        Err(_) => false,
    }
}
