//! When to fetch what. Every timing rule (refresh interval, single flight, the feed after the
//! keys that sign it, unknown-kid cooldown, exponential backoff, timeouts) lives here and is
//! tested with a fake clock; [`crate::material`] decides what a fetched body means.

use crate::config::FetchPolicy;
use crate::time::UnixTime;

/// A material source the gateway fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The JWKS of `providers[i]`.
    Jwks(usize),
    /// The revocation feed.
    Revocations,
}

impl Source {
    /// A stable name, for logs and metrics.
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
    interval_s: i64,
    pub last_success: Option<UnixTime>,
    pub failures: u32,
    in_flight: Option<(FetchId, UnixTime)>,
    next_due: UnixTime,
    pub etag: Option<String>,
    refetch_requested: bool,
    last_forced: Option<UnixTime>,
    /// Not fetched before this source has been fetched once (the feed waits for its keys).
    after: Option<Source>,
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    pub sources: Vec<SourceState>,
    next_id: u64,
    policy: FetchPolicy,
}

/// How a fetch ended, for the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Material received (applied, confirmed, or kept pending): next one after the interval.
    Success,
    /// Nothing usable: retry with backoff.
    Failure,
}

impl Scheduler {
    pub(crate) fn new(policy: FetchPolicy) -> Scheduler {
        Scheduler { sources: Vec::new(), next_id: 1, policy }
    }

    pub(crate) fn add(&mut self, source: Source, interval_s: u64, after: Option<Source>) {
        self.sources.push(SourceState {
            source,
            interval_s: interval_s as i64,
            last_success: None,
            failures: 0,
            in_flight: None,
            next_due: UnixTime::from_millis(i64::MIN),
            etag: None,
            refetch_requested: false,
            last_forced: None,
            after,
        });
    }

    fn state_mut(&mut self, source: Source) -> Option<&mut SourceState> {
        self.sources.iter_mut().find(|s| s.source == source)
    }

    pub(crate) fn state(&self, source: Source) -> Option<&SourceState> {
        self.sources.iter().find(|s| s.source == source)
    }

    /// Whether `s` still waits for the source it comes after: that one has never succeeded and
    /// has not failed yet either (its first fetch is due or in flight).
    fn waits(&self, s: &SourceState) -> bool {
        s.after.and_then(|a| self.state(a)).is_some_and(|a| a.last_success.is_none() && a.failures == 0)
    }

    fn due(&self, s: &SourceState, now: UnixTime) -> bool {
        let cooldown = self.policy.unknown_kid_cooldown_s as i64;
        s.in_flight.is_none()
            && !self.waits(s)
            && (now >= s.next_due || (s.refetch_requested && s.last_forced.is_none_or(|t| now.secs_since(t) >= cooldown)))
    }

    /// Counts fetches in flight for `fetch.timeout_s` or longer as failed; returns their sources.
    pub(crate) fn expire(&mut self, now: UnixTime) -> Vec<Source> {
        let timeout = self.policy.timeout_s as i64;
        let timed_out: Vec<FetchId> = self
            .sources
            .iter()
            .filter_map(|s| s.in_flight.filter(|(_, started)| now.secs_since(*started) >= timeout).map(|(id, _)| id))
            .collect();
        timed_out.into_iter().filter_map(|id| self.complete(id, Outcome::Failure, now)).collect()
    }

    /// The next due fetch, marking it in flight. At most one fetch per source is in flight.
    /// Call [`Scheduler::expire`] first.
    pub(crate) fn poll(&mut self, now: UnixTime) -> Option<(FetchId, Source)> {
        let index = (0..self.sources.len()).find(|&i| self.due(&self.sources[i], now))?;
        let id = FetchId(self.next_id);
        self.next_id += 1;
        let s = &mut self.sources[index];
        if s.refetch_requested && now < s.next_due {
            s.last_forced = Some(now);
        }
        s.refetch_requested = false;
        s.in_flight = Some((id, now));
        Some((id, s.source))
    }

    /// Records the end of a fetch. Returns the source if `id` was the one in flight.
    pub(crate) fn complete(&mut self, id: FetchId, outcome: Outcome, now: UnixTime) -> Option<Source> {
        let (retry_min, retry_max) = (self.policy.retry_min_s, self.policy.retry_max_s);
        let s = self.sources.iter_mut().find(|s| s.in_flight.map(|(i, _)| i) == Some(id))?;
        s.in_flight = None;
        match outcome {
            Outcome::Success => {
                s.failures = 0;
                s.last_success = Some(now);
                s.next_due = now.plus_secs(s.interval_s);
            }
            Outcome::Failure => {
                s.failures = s.failures.saturating_add(1);
                let cap = retry_max.min(s.interval_s as u64).max(retry_min);
                let delay = retry_min.saturating_mul(1u64 << (s.failures - 1).min(30)).min(cap);
                s.next_due = now.plus_secs(delay as i64);
            }
        }
        Some(s.source)
    }

    /// Material fetched elsewhere (another VM, a cache) was applied: treat it as our success.
    pub(crate) fn note_applied(&mut self, source: Source, fetched_at: UnixTime) {
        if let Some(s) = self.state_mut(source) {
            if s.last_success.is_none_or(|t| fetched_at > t) {
                s.last_success = Some(fetched_at);
                s.failures = 0;
                s.next_due = fetched_at.plus_secs(s.interval_s);
            }
        }
    }

    /// A fetch of `source` made elsewhere (the instance that fetches for this one) failed: for
    /// this instance too the material is not on its way. Its own schedule is left alone.
    pub(crate) fn note_failed_elsewhere(&mut self, source: Source) {
        if let Some(s) = self.state_mut(source) {
            s.failures = s.failures.saturating_add(1);
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

    /// An unknown `kid` was seen: refetch soon, at most once per cooldown. A fetch in flight
    /// answers the wish already, and a source never fetched yet is on its way (or backing off
    /// after a failure): neither is fetched twice for it.
    pub(crate) fn request_refetch(&mut self, source: Source) {
        if let Some(s) = self.state_mut(source) {
            if s.in_flight.is_none() && s.last_success.is_some() {
                s.refetch_requested = true;
            }
        }
    }

    /// Takes the pending unknown-`kid` refetch requests (for a host whose fetching happens in
    /// another instance, which is told through [`crate::Gateway::request_refetch`]).
    pub(crate) fn take_refetch_requests(&mut self) -> Vec<Source> {
        self.sources.iter_mut().filter_map(|s| core::mem::take(&mut s.refetch_requested).then_some(s.source)).collect()
    }

    /// When the host should next call `poll_fetch`, if nothing else happens before.
    pub(crate) fn next_wakeup(&self) -> Option<UnixTime> {
        let timeout = self.policy.timeout_s as i64;
        let cooldown = self.policy.unknown_kid_cooldown_s as i64;
        self.sources
            .iter()
            .filter(|s| s.in_flight.is_some() || !self.waits(s))
            .map(|s| match s.in_flight {
                Some((_, started)) => started.plus_secs(timeout),
                None if s.refetch_requested => {
                    s.next_due.min(s.last_forced.map_or(UnixTime::from_millis(i64::MIN), |t| t.plus_secs(cooldown)))
                }
                None => s.next_due,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> UnixTime {
        UnixTime::from_secs(s)
    }

    fn sched() -> Scheduler {
        let mut s = Scheduler::new(FetchPolicy::default());
        s.add(Source::Jwks(0), 300, None);
        s
    }

    #[test]
    fn fetches_at_start_then_refreshes_on_interval() {
        let mut s = sched();
        let (id, _) = s.poll(at(1000)).expect("due at start");
        assert!(s.poll(at(1000)).is_none(), "single flight");
        assert_eq!(s.complete(id, Outcome::Success, at(1001)), Some(Source::Jwks(0)));
        assert!(s.poll(at(1200)).is_none());
        assert_eq!(s.next_wakeup(), Some(at(1301)));
        assert!(s.poll(at(1301)).is_some());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = sched();
        let mut now = at(0);
        let mut delays = Vec::new();
        for _ in 0..9 {
            let (id, _) = s.poll(now).unwrap();
            s.complete(id, Outcome::Failure, now);
            let next = s.next_wakeup().unwrap();
            delays.push(next.secs_since(now));
            now = next;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn unknown_kid_refetch_respects_cooldown() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        s.complete(id, Outcome::Success, at(0));
        s.request_refetch(Source::Jwks(0));
        let (id, _) = s.poll(at(5)).expect("forced refetch");
        s.complete(id, Outcome::Success, at(6));
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(at(20)).is_none(), "within cooldown of the last forced fetch");
        assert_eq!(s.next_wakeup(), Some(at(35)));
        assert!(s.poll(at(35)).is_some());
    }

    #[test]
    fn timeout_counts_as_failure_and_late_answer_is_ignored() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        assert_eq!(s.next_wakeup(), Some(at(10)));
        assert!(s.expire(at(9)).is_empty());
        assert_eq!(s.expire(at(10)), vec![Source::Jwks(0)]);
        assert!(s.poll(at(10)).is_none(), "timed out at 10: counted failed, retry after 1 s backoff");
        let (id2, _) = s.poll(at(11)).expect("retry");
        assert_ne!(id, id2);
        assert_eq!(s.complete(id, Outcome::Success, at(12)), None, "late answer to the abandoned fetch");
        assert_eq!(s.complete(id2, Outcome::Success, at(12)), Some(Source::Jwks(0)));
    }

    #[test]
    fn applied_elsewhere_defers_own_fetch() {
        let mut s = sched();
        s.note_applied(Source::Jwks(0), at(100));
        assert!(s.poll(at(200)).is_none());
        assert!(s.poll(at(400)).is_some());
    }

    #[test]
    fn refetch_requests_can_be_taken_and_forwarded() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        s.complete(id, Outcome::Success, at(0));
        assert!(s.take_refetch_requests().is_empty());
        s.request_refetch(Source::Jwks(0));
        assert_eq!(s.take_refetch_requests(), vec![Source::Jwks(0)]);
        assert!(s.take_refetch_requests().is_empty(), "taken once");
        assert!(s.poll(at(5)).is_none(), "a taken request is not fetched here");
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(at(5)).is_some(), "a forwarded request is fetched where it lands");
    }

    #[test]
    fn the_feed_waits_for_the_first_fetch_of_its_keys() {
        let mut s = sched();
        s.add(Source::Revocations, 5, Some(Source::Jwks(0)));
        let (keys, source) = s.poll(at(0)).unwrap();
        assert_eq!(source, Source::Jwks(0));
        assert!(s.poll(at(0)).is_none(), "the feed waits while its keys are in flight");
        assert_eq!(s.next_wakeup(), Some(at(10)), "only the key fetch's timeout is a reason to wake");
        s.complete(keys, Outcome::Success, at(1));
        assert_eq!(s.poll(at(1)).map(|(_, src)| src), Some(Source::Revocations));
        // A failed first key fetch releases the feed too (it may be verifiable with inline keys).
        let mut s = sched();
        s.add(Source::Revocations, 5, Some(Source::Jwks(0)));
        let (keys, _) = s.poll(at(0)).unwrap();
        s.complete(keys, Outcome::Failure, at(0));
        assert_eq!(s.poll(at(0)).map(|(_, src)| src), Some(Source::Revocations));
    }

    #[test]
    fn a_fetch_in_flight_or_never_done_answers_refetch_wishes() {
        let mut s = sched();
        s.request_refetch(Source::Jwks(0));
        let (id, _) = s.poll(at(0)).expect("the first fetch, due anyway");
        s.request_refetch(Source::Jwks(0));
        s.complete(id, Outcome::Success, at(1));
        assert!(s.poll(at(1)).is_none(), "the wish raised while in flight was answered by that fetch");
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(at(2)).is_some(), "with material and nothing in flight, a wish is a refetch");
    }

    /// A wish raised while a refresh is in flight is answered by it; one raised while a source
    /// that never succeeded backs off waits for the backoff.
    #[test]
    fn wishes_never_add_a_fetch_to_one_in_flight_or_backing_off() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        s.complete(id, Outcome::Success, at(0));
        let (id, _) = s.poll(at(300)).expect("the regular refresh");
        s.request_refetch(Source::Jwks(0));
        s.complete(id, Outcome::Success, at(301));
        assert!(s.poll(at(302)).is_none(), "answered by the refresh in flight");

        let mut s = sched();
        let mut now = at(0);
        for _ in 0..3 {
            let (id, _) = s.poll(now).unwrap();
            s.complete(id, Outcome::Failure, now);
            now = s.next_wakeup().unwrap();
        }
        let (id, _) = s.poll(now).unwrap();
        s.complete(id, Outcome::Failure, now);
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(at(now.secs() + 1)).is_none(), "still backing off (8 s)");
        assert!(s.poll(at(now.secs() + 8)).is_some());
    }

    /// Only a fetch made before its time for a wish starts the cooldown: a wish still pending
    /// when the regular refresh falls due (exactly then) is served by it, and the next wish may
    /// fetch at once.
    #[test]
    fn a_wish_met_by_the_regular_refresh_starts_no_cooldown() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        s.complete(id, Outcome::Success, at(0));
        s.request_refetch(Source::Jwks(0));
        let (id, _) = s.poll(at(300)).expect("the regular refresh, the wish pending");
        s.complete(id, Outcome::Success, at(300));
        s.request_refetch(Source::Jwks(0));
        assert!(s.poll(at(301)).is_some(), "the refresh at 300 was not a forced fetch: no cooldown");
    }

    /// Material applied from elsewhere counts only when it is newer than what this instance
    /// last fetched: a newer copy pushes the refresh back, an older or the same one changes
    /// nothing (not even a backoff in progress).
    #[test]
    fn only_newer_copies_from_elsewhere_move_the_schedule() {
        let mut s = sched();
        let (id, _) = s.poll(at(0)).unwrap();
        s.complete(id, Outcome::Success, at(0));
        s.note_applied(Source::Jwks(0), at(100));
        assert!(s.poll(at(350)).is_none(), "a newer copy: next refresh at 400");
        s.note_applied(Source::Jwks(0), at(50));
        assert!(s.poll(at(390)).is_none(), "an older copy changes nothing");
        let (id, _) = s.poll(at(400)).expect("refresh at 400");
        s.complete(id, Outcome::Failure, at(400));
        s.note_applied(Source::Jwks(0), at(100));
        assert!(s.poll(at(400)).is_none(), "the same copy again does not end the backoff");
        assert!(s.poll(at(401)).is_some());
    }

    #[test]
    fn source_keys_round_trip() {
        for src in [Source::Jwks(0), Source::Jwks(12), Source::Revocations] {
            assert_eq!(Source::from_key(&src.key()), Some(src));
        }
        assert_eq!(Source::from_key("jwks/x"), None);
    }
}
