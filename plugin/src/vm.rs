//! One worker VM's state and the glue between auth-core, the fleet and the proxy-wasm ABI: the
//! gateway, this VM's part in the fleet ([`crate::fleet`]), the fetches in flight, the
//! requests held during a cold start. The root context drives it on every tick and fetch
//! answer; the HTTP contexts call it once per request.

use std::borrow::Cow;
use std::time::Duration;

use auth_core::request_id::RequestIds;
use auth_core::{
    host_error, Decision, Deny, ErrorCode, FetchRequest, FetchResponse, Gateway, HostAlgs, HostCrypto, MaterialEvent, OutageLog, Request,
    Severity, Step, UnixTime,
};

use crate::abi::{self, Level, BUFFER_HTTP_CALL_RESPONSE_BODY, MAP_HTTP_CALL_RESPONSE_HEADERS, MAP_REQUEST_HEADERS};
use crate::fleet::{Fleet, FleetNote, SharedStore};
use crate::metrics::Metrics;
use crate::proxy_crypto;
use crate::settings::{PluginSettings, ProxySettings, SignatureChecks};
use crate::shared::decode_map;

/// Largest fetched body read from the host (auth-core applies its own, smaller limits).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Tick period while requests are held (cold start), so they are answered soon after material
/// arrives from another VM.
const HOLD_TICK_MS: u64 = 50;
/// At most this many requests held per VM; beyond it a request gets its answer at once (a flood
/// at start-up must not pile up paused streams).
const MAX_HELD: usize = 1024;

/// The proxy's shared data, through the total ABI wrappers.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
        abi::get_shared(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
        abi::set_shared(key, value, cas)
    }
}

struct InFlight {
    token: u32,
    fetch: FetchRequest,
}

/// A request paused during a cold start (decided again whenever material changes, and on
/// every tick, until auth-core's hold ends).
struct Held {
    context_id: u32,
}

/// What a request comes to.
pub enum Outcome {
    /// Forwarded (headers rewritten).
    Continue,
    /// Answered locally.
    Answered,
    /// Paused until material arrives, is known not to come, or the cold-start wait ends.
    Held,
}

pub struct Vm {
    pub gateway: Gateway,
    pub proxy: ProxySettings,
    upstreams: Vec<(auth_core::Source, String)>,
    pub metrics: Metrics,
    fleet: Fleet,
    store: HostStore,
    in_flight: Vec<InFlight>,
    held: Vec<Held>,
    /// The tick period is `HOLD_TICK_MS` (requests are held). Changed only when this flips:
    /// the host restarts its tick timer on every change, so setting it per request would
    /// postpone ticks for as long as traffic lasts.
    fast_ticks: bool,
    ids: RequestIds,
    configured_at: UnixTime,
    outages: OutageLog,
    /// Algorithms the proxy's crypto checks; emptied for good if the proxy has no
    /// `verify_signature` (Kong) or its answer cannot be read.
    proxy_algs: HostAlgs,
}

/// Hosts prefix each line with the plugin's name (Envoy: `wasm log authgate authgate: ...`).
pub fn log(level: Level, message: &str) {
    abi::log(level, message);
}

pub fn now() -> UnixTime {
    UnixTime::from_millis(abi::now_ms() as i64)
}

impl Vm {
    pub fn new(settings: PluginSettings, me: u64) -> Vm {
        let PluginSettings { proxy, gateway, upstreams, config_id } = settings;
        let store = HostStore;
        let fleet = Fleet::new(me, &proxy.shared_key_prefix, &config_id, proxy.tick_ms, &gateway, &store);
        let sources: Vec<auth_core::Source> = gateway.sources().iter().map(|s| s.source).collect();
        Vm {
            metrics: Metrics::define(&sources),
            fleet,
            store,
            upstreams,
            in_flight: Vec::new(),
            held: Vec::new(),
            fast_ticks: false,
            ids: RequestIds::new(me as u32),
            configured_at: now(),
            outages: OutageLog::default(),
            proxy_algs: match proxy.signatures {
                SignatureChecks::Proxy => proxy_crypto::ALGS,
                SignatureChecks::Filter => HostAlgs::NONE,
            },
            gateway,
            proxy,
        }
    }

    /// The periodic work: the fleet's (adopt, lease, refetch wishes), the fetches due if this VM
    /// is the fetcher, then held requests and gauges.
    pub fn tick(&mut self, now: UnixTime) {
        self.metrics.flush();
        self.fleet.tick(now, &mut self.store, &mut self.gateway);
        if self.fleet.is_fetcher() {
            while let Some(fetch) = self.gateway.poll_fetch(now) {
                self.dispatch(fetch, now);
            }
            self.record_gauges(now);
        }
        self.after_material(now);
    }

    /// Gives the fetcher lease up (the VM is going away).
    pub fn release(&mut self) {
        self.metrics.flush();
        self.fleet.release(&mut self.store);
    }

    fn dispatch(&mut self, fetch: FetchRequest, now: UnixTime) {
        let upstream = self.upstreams.iter().find(|(s, _)| *s == fetch.source).map(|(_, u)| u.clone());
        let info = self.gateway.sources().iter().find(|s| s.source == fetch.source).cloned();
        let (Some(upstream), Some(info)) = (upstream, info) else {
            self.gateway.fetch_failed(fetch.id, now);
            return;
        };
        let (authority, scheme) = (info.url.authority(), info.url.scheme());
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", info.url.path_and_query()),
            (":authority", &authority),
            (":scheme", scheme),
            ("user-agent", concat!("authgate-plugin/", env!("CARGO_PKG_VERSION"))),
        ];
        headers.extend(fetch.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_secs(fetch.timeout_s.max(1));
        match proxy_wasm::hostcalls::dispatch_http_call(&upstream, headers, None, Vec::new(), timeout) {
            Ok(token) => self.in_flight.push(InFlight { token, fetch }),
            Err(status) => {
                log(
                    Level::Warn,
                    &format!(
                        "{}: cannot call upstream \"{upstream}\" (status {}): is it a defined cluster?",
                        fetch.source.key(),
                        status as u32
                    ),
                );
                self.gateway.fetch_failed(fetch.id, now);
            }
        }
    }

    /// A `dispatch_http_call` answer (or its failure: no `:status`).
    pub fn on_fetch_response(&mut self, token: u32, body_size: usize) {
        let Some(pos) = self.in_flight.iter().position(|f| f.token == token) else { return };
        let flight = self.in_flight.swap_remove(pos);
        let now = now();
        let status = abi::get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<u16>().ok());
        match status {
            None => self.gateway.fetch_failed(flight.fetch.id, now),
            Some(status) => {
                let body = if body_size > 0 {
                    abi::get_buffer(BUFFER_HTTP_CALL_RESPONSE_BODY, body_size.min(MAX_BODY)).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let etag = abi::get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, "etag").and_then(|v| String::from_utf8(v).ok());
                self.gateway.handle_fetch(flight.fetch.id, FetchResponse { status, body: &body, etag: etag.as_deref() }, now);
            }
        }
        // What this answer made due (the feed after its keys) leaves at once.
        while let Some(fetch) = self.gateway.poll_fetch(now) {
            self.dispatch(fetch, now);
        }
        self.after_material(now);
    }

    /// Events to the log, the metrics and the fleet; then held requests get their answer.
    fn after_material(&mut self, now: UnixTime) {
        while let Some(event) = self.gateway.poll_event() {
            self.metrics.material(&event);
            self.fleet.share(&event, now, &mut self.store);
            log_event(&event);
        }
        for note in self.fleet.take_notes() {
            log_note(&note);
        }
        if !self.held.is_empty() {
            self.release_held(now);
        }
    }

    /// Decides the request of the current (effective) HTTP context and acts on it.
    pub fn on_request(&mut self, context_id: u32) -> Outcome {
        let now = now();
        self.fleet.before_request(now, &self.store, &mut self.gateway);
        let outcome = self.decide_current(now, false);
        self.fleet.after_request(now, &mut self.store, &mut self.gateway);
        self.after_material(now);
        if let Outcome::Held = outcome {
            self.held.push(Held { context_id });
            self.set_tick_speed();
        }
        outcome
    }

    /// A request's stream ended: if it was held (the client went away), forget it.
    pub fn forget(&mut self, context_id: u32) {
        if self.held.iter().any(|h| h.context_id == context_id) {
            self.held.retain(|h| h.context_id != context_id);
            self.set_tick_speed();
        }
    }

    /// Fast ticks while requests are held, the configured ones otherwise.
    fn set_tick_speed(&mut self) {
        let fast = !self.held.is_empty();
        if fast != self.fast_ticks {
            self.fast_ticks = fast;
            let _ = abi::set_tick_period_ms(if fast { HOLD_TICK_MS } else { self.proxy.tick_ms } as u32);
        }
    }

    /// Decides every held request again: answered once material is in, is not coming, or the
    /// wait is over.
    fn release_held(&mut self, now: UnixTime) {
        let held = core::mem::take(&mut self.held);
        for h in held {
            // Decided again on every material change: auth-core says whether the wait goes on
            // (material still on its way) or the answer is due (material in, or not coming).
            if abi::set_effective_context(h.context_id).is_err() {
                continue;
            }
            match self.decide_current(now, true) {
                Outcome::Held => self.held.push(h),
                Outcome::Continue => {
                    let _ = abi::resume_http_request();
                }
                Outcome::Answered => {}
            }
        }
        self.set_tick_speed();
    }

    /// Reads the current request's headers, decides, and rewrites or answers it. Never panics:
    /// every ABI answer is checked, every header is optional.
    fn decide_current(&mut self, now: UnixTime, again: bool) -> Outcome {
        let block = abi::get_header_block(MAP_REQUEST_HEADERS);
        let Some(raw) = block.as_deref().ok().and_then(decode_map) else {
            log(Level::Error, &format!("cannot read request headers ({:?})", block.err()));
            let id = self.ids.next_id();
            return answer(&host_error(ErrorCode::ConfigInvalid, &id, None));
        };
        // Values are octets; a credential that is not UTF-8 is malformed either way, and the
        // replacement character keeps it so. Valid UTF-8 (every usual request) is borrowed.
        let text: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            raw.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))).collect();
        let (mut method, mut path, mut sent_id) = ("", "", None);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(text.len());
        for (name, value) in &text {
            match name.as_ref() {
                ":method" => method = value,
                ":path" => path = value,
                n if n.starts_with(':') => {}
                n => {
                    if n.eq_ignore_ascii_case(&self.proxy.request_id_header) {
                        sent_id = Some(value.as_ref());
                    }
                    headers.push((n, value));
                }
            }
        }
        let request_id = self.ids.for_request(sent_id);
        let decision = self.decide_with_proxy_crypto(&Request { method, path, headers: &headers }, now, &request_id);
        match decision {
            Decision::Deny(Deny { hold_until: Some(until), .. }) if now < until && (again || self.held.len() < MAX_HELD) => Outcome::Held,
            Decision::Allow(allow) => {
                self.metrics.allowed(allow.cache_hit);
                let set = allow.headers_to_set();
                if allow.remove_headers.is_empty() && set.is_empty() {
                    return Outcome::Continue;
                }
                // Changed in place: the names the request carries that must go (spoofed
                // identity headers, a stripped credential, the fields rewritten), then the
                // identity headers added. Envoy's replacing the whole map in one call costs more
                // per request than these calls (docs/benchmarks.md, "Where the filter's floor goes,
                // and writing the identity headers"). Envoy's names are lowercase; compared without
                // case all the same.
                let carried = |name: &str| raw.iter().any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
                let names_out = allow.remove_headers.iter().map(|h| h.as_ref()).chain(set.iter().map(|(n, _)| *n));
                let written = names_out
                    .filter(|n| carried(n))
                    .try_for_each(|n| abi::remove_header(MAP_REQUEST_HEADERS, n.as_bytes()))
                    .and_then(|()| set.iter().try_for_each(|(n, v)| abi::add_header(MAP_REQUEST_HEADERS, n, v)));
                if written.is_ok() {
                    Outcome::Continue
                } else {
                    // Never forward a request whose identity headers could not be written.
                    log(Level::Error, "cannot rewrite request headers; refusing the request");
                    self.metrics.denied(ErrorCode::ConfigInvalid);
                    answer(&host_error(ErrorCode::ConfigInvalid, &request_id, None))
                }
            }
            Decision::Deny(d) => {
                self.metrics.denied(d.code);
                if d.status() >= 500 {
                    self.log_unavailable(now, &d.error_id, d.code.as_str(), again);
                } else {
                    log(Level::Debug, &format!("request {} denied: {}", d.error_id, d.code));
                }
                answer(&d)
            }
        }
    }

    /// Decides, answering auth-core's signature checks with the proxy's crypto. Falls back to
    /// the filter's own code for good when the proxy cannot answer.
    fn decide_with_proxy_crypto(&mut self, request: &Request<'_>, now: UnixTime, request_id: &str) -> Decision {
        let mut step = self.gateway.decide_with(request, now, request_id, HostCrypto { algs: self.proxy_algs, answer: None });
        let mut answered = false;
        loop {
            let suspended = match step {
                Step::Decided(decision) => return decision,
                Step::CheckSignature(suspended) => suspended,
            };
            let verdict = match (answered, proxy_crypto::arguments(suspended.check())) {
                (false, Some(args)) => abi::call_foreign_function(proxy_crypto::FUNCTION, &args)
                    .map_err(|status| format!("status {status}"))
                    .and_then(|bytes| proxy_crypto::result(&bytes).ok_or_else(|| "an unreadable answer".to_string())),
                _ => Err("a check it cannot answer".to_string()),
            };
            let verdict = match verdict {
                Ok(v) => {
                    self.metrics.proxy_signature();
                    answered = true;
                    Some(v.valid)
                }
                Err(why) => {
                    log(
                        Level::Warn,
                        &format!("the proxy's {} gave {why}: signatures are checked in the filter from now on", proxy_crypto::FUNCTION),
                    );
                    self.proxy_algs = HostAlgs::NONE;
                    None
                }
            };
            // The decision goes on from where it stopped (the answer is synchronous: the keys
            // cannot change in between, so it never asks again).
            step = self.gateway.resume(suspended, verdict, now, self.proxy_algs);
        }
    }

    /// Logs a 5xx denial (an outage: keys or feed unavailable), at most once a second.
    fn log_unavailable(&mut self, now: UnixTime, request_id: &str, code: &str, after_hold: bool) {
        let Some(more) = self.outages.note(now) else { return };
        let tail = if more > 0 { format!(" (and {more} more since the last such line)") } else { String::new() };
        let held = if after_hold { " after the cold-start wait" } else { "" };
        log(Level::Warn, &format!("request {request_id} denied{held}: {code}{tail}"));
    }

    fn record_gauges(&self, now: UnixTime) {
        let status = self.gateway.status();
        for s in &status.sources {
            // Never fetched: age since the filter was configured, so an alert on age fires.
            let since = s.last_success.unwrap_or(self.configured_at);
            self.metrics.age(s.source, now.secs_since(since).max(0) as u64);
        }
        if let Some(v) = status.feed_version {
            self.metrics.feed_version(v);
        }
    }
}

/// Answers the current request with the denial; it goes no further.
pub fn answer(d: &Deny) -> Outcome {
    let headers = d.response_headers();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let details = format!("authgate_{}", d.code.as_str());
    if abi::send_local_response(d.status(), &details, &pairs, d.body().as_bytes()).is_err() {
        log(Level::Error, "cannot send the denial response");
    }
    Outcome::Answered
}

fn log_event(event: &MaterialEvent) {
    let level = match event.severity() {
        Severity::Debug => Level::Debug,
        Severity::Info => Level::Info,
        Severity::Warn => Level::Warn,
    };
    log(level, &event.to_string());
}

fn log_note(note: &FleetNote) {
    match note {
        FleetNote::BecameFetcher => log(Level::Info, "this worker now fetches JWKS and the revocation feed for all workers"),
        FleetNote::StoppedFetching => log(Level::Debug, "another worker fetches; this one uses its shared copies"),
        FleetNote::StoreUnavailable(s) => log(Level::Warn, &format!("shared data unavailable (status {s}); not fetching from this worker")),
        FleetNote::ShareFailed(src, s) => log(Level::Warn, &format!("{}: could not share the fetched material (status {s})", src.key())),
        FleetNote::ForwardFailed(src, s) => log(Level::Warn, &format!("{}: could not forward a refetch request (status {s})", src.key())),
    }
}
