//! proxy-wasm metrics. Envoy shows them on `/stats` with the `wasmcustom.` prefix; a metric of
//! the same name defined by every worker VM is one statistic, so counters add up across workers.
//! Per-request counters are kept in the VM and handed to the host on each tick (at most
//! `host.tick_ms` late), not one host call per counter per request.

use std::cell::Cell;

use auth_core::{ErrorCode, MaterialEvent, Source, Via};

use crate::abi::{self, METRIC_COUNTER, METRIC_GAUGE};
use crate::shared::metric_source_name;

pub struct SourceMetrics {
    pub source: Source,
    pub fetch_ok: Option<u32>,
    pub fetch_failed: Option<u32>,
    pub age_s: Option<u32>,
}

/// A counter whose increments wait in the VM for the next [`Metrics::flush`].
struct Batched {
    id: Option<u32>,
    pending: Cell<i64>,
}

impl Batched {
    fn new(id: Option<u32>) -> Batched {
        Batched { id, pending: Cell::new(0) }
    }

    fn add(&self) {
        self.pending.set(self.pending.get() + 1);
    }

    fn flush(&self) {
        let n = self.pending.replace(0);
        if let (Some(id), true) = (self.id, n > 0) {
            abi::increment_metric(id, n);
        }
    }
}

pub struct Metrics {
    allowed: Batched,
    cache_hits: Batched,
    proxy_signatures: Batched,
    denied: Vec<(ErrorCode, Batched)>,
    pub sources: Vec<SourceMetrics>,
    feed_version: Option<u32>,
}

impl Metrics {
    /// Defines every metric up front, so `/stats` lists them (at 0) from the start.
    pub fn define(sources: &[Source]) -> Metrics {
        let counter = |name: &str| abi::define_metric(METRIC_COUNTER, name);
        let gauge = |name: &str| abi::define_metric(METRIC_GAUGE, name);
        Metrics {
            allowed: Batched::new(counter("authgate.allowed")),
            cache_hits: Batched::new(counter("authgate.token_cache_hits")),
            proxy_signatures: Batched::new(counter("authgate.signatures_checked_by_proxy")),
            denied: ErrorCode::ALL.iter().map(|c| (*c, Batched::new(counter(&format!("authgate.denied.{}", c.as_str()))))).collect(),
            sources: sources
                .iter()
                .map(|s| {
                    let name = metric_source_name(&s.key());
                    SourceMetrics {
                        source: *s,
                        fetch_ok: counter(&format!("authgate.fetch.{name}.ok")),
                        fetch_failed: counter(&format!("authgate.fetch.{name}.failed")),
                        age_s: gauge(&format!("authgate.material_age_seconds.{name}")),
                    }
                })
                .collect(),
            feed_version: gauge("authgate.feed_version"),
        }
    }

    /// Whether the host accepted the metric definitions (Kong releases without metrics do not).
    pub fn available(&self) -> bool {
        self.allowed.id.is_some()
    }

    pub fn allowed(&self, cache_hit: bool) {
        self.allowed.add();
        if cache_hit {
            self.cache_hits.add();
        }
    }

    /// A signature checked by the proxy's crypto (`verify_signature`).
    pub fn proxy_signature(&self) {
        self.proxy_signatures.add();
    }

    pub fn denied(&self, code: ErrorCode) {
        if let Some((_, counter)) = self.denied.iter().find(|(c, _)| *c == code) {
            counter.add();
        }
    }

    /// Hands the per-request counts gathered since the last flush to the host.
    pub fn flush(&self) {
        for counter in [&self.allowed, &self.cache_hits, &self.proxy_signatures].into_iter().chain(self.denied.iter().map(|(_, c)| c)) {
            counter.flush();
        }
    }

    /// Counts this VM's fetches by how they ended.
    pub fn material(&self, event: &MaterialEvent) {
        let (source, ok) = match event {
            MaterialEvent::Applied { source, via: Via::Fetch, .. }
            | MaterialEvent::Confirmed { source, via: Via::Fetch, .. }
            | MaterialEvent::KeptPending { source, via: Via::Fetch, .. } => (*source, true),
            MaterialEvent::Rejected { source, via: Via::Fetch, .. } | MaterialEvent::FetchFailed { source, .. } => (*source, false),
            _ => return,
        };
        if let Some(m) = self.sources.iter().find(|m| m.source == source) {
            inc(if ok { m.fetch_ok } else { m.fetch_failed });
        }
    }

    pub fn age(&self, source: Source, seconds: u64) {
        if let Some(id) = self.sources.iter().find(|m| m.source == source).and_then(|m| m.age_s) {
            abi::record_metric(id, seconds);
        }
    }

    pub fn feed_version(&self, version: u64) {
        if let Some(id) = self.feed_version {
            abi::record_metric(id, version);
        }
    }
}

fn inc(id: Option<u32>) {
    if let Some(id) = id {
        abi::increment_metric(id, 1);
    }
}
