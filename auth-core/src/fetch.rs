//! When to fetch what. The host asks [`crate::Gateway::poll_fetch`] and moves bytes; every timing
//! rule (refresh interval, single flight, unknown-kid cooldown, exponential backoff, timeouts)
//! lives here and is tested with a fake clock.

use crate::config::FetchPolicy;

/// A material source the gateway fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The JWKS of `providers[i]`.
    Jwks(usize),
    /// The revocation feed.
    Revocations,
}

impl Source {
    /// A stable name, used by hosts as a shared-data / cache key.
    pub fn key(&self) -> String {
        match self {
            Source::Jwks(i) => format!("jwks/{i}"),
            Source::Revocations => "revocations".to_string(),
        }
    }

    /// Inverse of [`Source::key`].
    pub fn from_key(key: &str) -> Option<Source> {
        if key == "revocations" {
            return Some(Source::Revocations);
        }
        key.strip_prefix("jwks/")?.parse().ok().map(Source::Jwks)
    }
}

/// Identifies one fetch so a late answer to an abandoned fetch is recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchId(pub u64);

/// A fetch the host should make now: `GET url` with these headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub id: FetchId,
    pub source: Source,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The host should give up after this long; the core counts it failed after it anyway.
    pub timeout_s: u64,
}

#[derive(Debug)]
pub(crate) struct SourceState {
    pub source: Source,
    pub url: String,
    interval_s: u64,
    pub last_success: Option<i64>,
    pub failures: u32,
    in_flight: Option<(FetchId, i64)>,
    next_due: i64,
    pub etag: Option<String>,
    refetch_requested: bool,
    last_forced: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    pub sources: Vec<SourceState>,
    next_id: u64,
    policy: FetchPolicy,
}

impl Scheduler {
    pub(crate) fn new(policy: FetchPolicy) -> Scheduler {
        Scheduler { sources: Vec::new(), next_id: 1, policy }
    }

    pub(crate) fn add(&mut self, source: Source, url: String, interval_s: u64) {
        self.sources.push(SourceState {
            source,
            url,
            interval_s,
            last_success: None,
            failures: 0,
            in_flight: None,
            next_due: i64::MIN,
            etag: None,
            refetch_requested: false,
            last_forced: None,
        });
    }

    fn state_mut(&mut self, source: Source) -> Option<&mut SourceState> {
        self.sources.iter_mut().find(|s| s.source == source)
    }

    pub(crate) fn state(&self, source: Source) -> Option<&SourceState> {
        self.sources.iter().find(|s| s.source == source)
    }

    /// The next due fetch, marking it in flight. At most one fetch per source is in flight.
    pub(crate) fn poll(&mut self, now: i64) -> Option<(FetchId, &SourceState)> {
        let timeout = self.policy.timeout_s as i64;
        let mut timed_out = Vec::new();
        for s in &self.sources {
            if let Some((id, started)) = s.in_flight {
                if now.saturating_sub(started) >= timeout {
                    timed_out.push(id);
                }
            }
        }
        for id in timed_out {
            self.complete(id, false, now);
        }
        let cooldown = self.policy.unknown_kid_cooldown_s as i64;
        let index = self.sources.iter().position(|s| {
            s.in_flight.is_none()
                && (now >= s.next_due
                    || (s.refetch_requested && s.last_forced.map_or(true, |t| now.saturating_sub(t) >= cooldown)))
        })?;
        let id = FetchId(self.next_id);
        self.next_id += 1;
        let s = &mut self.sources[index];
        if s.refetch_requested && now < s.next_due {
            s.last_forced = Some(now);
        }
        s.refetch_requested = false;
        s.in_flight = Some((id, now));
        Some((id, &self.sources[index]))
    }

    /// Records the end of a fetch. Returns the source if `id` was the one in flight.
    pub(crate) fn complete(&mut self, id: FetchId, success: bool, now: i64) -> Option<Source> {
        let policy = self.policy.clone();
        let s = self.sources.iter_mut().find(|s| s.in_flight.map(|(i, _)| i) == Some(id))?;
        s.in_flight = None;
        if success {
            s.failures = 0;
            s.last_success = Some(now);
            s.next_due = now.saturating_add(s.interval_s as i64);
        } else {
            s.failures = s.failures.saturating_add(1);
            let cap = policy.retry_max_s.min(s.interval_s).max(policy.retry_min_s);
            let delay = policy.retry_min_s.saturating_mul(1u64 << (s.failures - 1).min(30)).min(cap);
            s.next_due = now.saturating_add(delay as i64);
        }
        Some(s.source)
    }

    /// Material fetched elsewhere (another VM, a cache) was applied: treat it as our success.
    pub(crate) fn note_applied(&mut self, source: Source, fetched_at: i64) {
        if let Some(s) = self.state_mut(source) {
            if s.last_success.map_or(true, |t| fetched_at > t) {
                s.last_success = Some(fetched_at);
                s.failures = 0;
                s.next_due = fetched_at.saturating_add(s.interval_s as i64);
            }
        }
    }

    pub(crate) fn set_etag(&mut self, source: Source, etag: Option<String>) {
        if let Some(s) = self.state_mut(source) {
            s.etag = etag;
        }
    }

    /// The source of the fetch `id`, if it is the one in flight.
    pub(crate) fn in_flight(&self, id: FetchId) -> Option<Source> {
        self.sources.iter().find(|s| s.in_flight.map(|(i, _)| i) == Some(id)).map(|s| s.source)
    }

    /// An unknown `kid` was seen: refetch soon, at most once per cooldown.
    pub(crate) fn request_refetch(&mut self, source: Source) {
        if let Some(s) = self.state_mut(source) {
            s.refetch_requested = true;
        }
    }

    /// Takes the pending unknown-`kid` refetch requests (for a host whose fetching happens in
    /// another instance, which is told through [`crate::Gateway::request_refetch`]).
    pub(crate) fn take_refetch_requests(&mut self) -> Vec<Source> {
        self.sources.iter_mut().filter_map(|s| core::mem::take(&mut s.refetch_requested).then_some(s.source)).collect()
    }

    /// When the host should next call `poll_fetch`, if nothing else happens before.
    pub(crate) fn next_wakeup(&self) -> Option<i64> {
        let timeout = self.policy.timeout_s as i64;
        let cooldown = self.policy.unknown_kid_cooldown_s as i64;
        self.sources
            .iter()
            .map(|s| match s.in_flight {
                Some((_, started)) => started.saturating_add(timeout),
                None if s.refetch_requested => {
                    s.next_due.min(s.last_forced.map_or(i64::MIN, |t| t.saturating_add(cooldown)))
                }
                None => s.next_due,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Scheduler {
        let mut s = Scheduler::new(FetchPolicy::default());
        s.add(Source::Jwks(0), "http://jwks".into(), 300);
        s
    }

    #[test]
    fn fetches_at_start_then_refreshes_on_interval() {
        let mut s = sched();
        let (id, _) = s.poll(1000).expect("due at start");
        assert!(s.poll(1000).is_none(), "single flight");
        assert_eq!(s.complete(id, true, 1001), Some(Source::Jwks(0)));
        assert!(s.poll(1200).is_none());
        assert_eq!(s.next_wakeup(), Some(1301));
        assert!(s.poll(1301).is_some());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = sched();
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let (id, _) = s.poll(now).unwrap();
            s.complete(id, false, now);
            let next = s.next_wakeup().unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn unknown_kid_refetch_respects_cooldown() {
        let mut s = sched();
        let (id, _) = s.poll(0).unwrap();
        s.complete(id, true, 0);
        s.request_refetch(Source::Jwks(0));
        let (id, _) = s.poll(5).expect("forced refetch");
        s.complete(id, true, 6);
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(20).is_none(), "within cooldown of the last forced fetch");
        assert_eq!(s.next_wakeup(), Some(35));
        assert!(s.poll(35).is_some());
    }

    #[test]
    fn timeout_counts_as_failure_and_late_answer_is_ignored() {
        let mut s = sched();
        let (id, _) = s.poll(0).unwrap();
        assert_eq!(s.next_wakeup(), Some(10));
        assert!(s.poll(10).is_none(), "timed out at 10: counted failed, retry after 1 s backoff");
        let (id2, _) = s.poll(11).expect("retry");
        assert_ne!(id, id2);
        assert_eq!(s.complete(id, true, 12), None, "late answer to the abandoned fetch");
        assert_eq!(s.complete(id2, true, 12), Some(Source::Jwks(0)));
    }

    #[test]
    fn applied_elsewhere_defers_own_fetch() {
        let mut s = sched();
        s.note_applied(Source::Jwks(0), 100);
        assert!(s.poll(200).is_none());
        assert!(s.poll(400).is_some());
    }

    #[test]
    fn refetch_requests_can_be_taken_and_forwarded() {
        let mut s = sched();
        let (id, _) = s.poll(0).unwrap();
        s.complete(id, true, 0);
        assert!(s.take_refetch_requests().is_empty());
        s.request_refetch(Source::Jwks(0));
        assert_eq!(s.take_refetch_requests(), vec![Source::Jwks(0)]);
        assert!(s.take_refetch_requests().is_empty(), "taken once");
        assert!(s.poll(5).is_none(), "a taken request is not fetched here");
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(5).is_some(), "a forwarded request is fetched where it lands");
    }

    #[test]
    fn source_keys_round_trip() {
        for src in [Source::Jwks(0), Source::Jwks(12), Source::Revocations] {
            assert_eq!(Source::from_key(&src.key()), Some(src));
        }
        assert_eq!(Source::from_key("jwks/x"), None);
    }
}
