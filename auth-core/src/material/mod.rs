//! The material lifecycle: JWKS and the revocation feed from fetch to use. auth-core owns all of
//! it — the fetch order (the feed after the keys that sign it), what a body means, the feed held
//! until its keys arrive, readiness and the cold-start hold, what to keep in a host cache and
//! for how long — and tells the host what happened as [`MaterialEvent`]s (quinn-proto's
//! `poll` shape). Hosts keep no material state of their own.

use std::collections::VecDeque;
use std::sync::Arc;

mod copy;
mod event;

pub use copy::{open_copy, seal_copy, stable_key, MaterialCopy};
pub use event::{FetchFailure, MaterialEvent, PendingReason, RejectReason, Severity, Via};

use crate::cache::TokenCache;
use crate::config::FeedCredential;
use crate::error::ErrorCode;
use crate::fetch::{FetchId, FetchRequest, Outcome, Scheduler, Source};
use crate::formats::RevocationFeedClaims;
use crate::jwt::{self, FEED_TYP};
use crate::keys::{KeyOrigin, VerificationKeys};
use crate::revocation::RevocationList;
use crate::time::UnixTime;
use crate::url::HttpUrl;
use crate::verifier::{SigError, Verifier};

/// Largest revocation feed accepted, in bytes.
pub const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;
/// Largest JWKS accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// A fetched source: where it comes from and a stable key for host caches (shared data, the
/// Cache API) derived from the URL, so two configs with the same URL share it and a changed
/// URL never reads another's copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    pub source: Source,
    pub url: HttpUrl,
    /// 16 hex digits of SHA-256 of the URL.
    pub key: String,
}

/// An answer to a [`FetchRequest`].
#[derive(Clone, Copy, Debug)]
pub struct FetchResponse<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub etag: Option<&'a str>,
}

struct Pending {
    body: Arc<[u8]>,
    fetched_at: UnixTime,
    via: Via,
}

/// What an input did to a source, for the schedule and the events.
enum Applied {
    Changed,
    Same,
    Pending,
}

/// Fetch schedule, material in use and the events about it.
pub(crate) struct Material {
    pub sched: Scheduler,
    pub sources: Vec<SourceInfo>,
    pub feed_provider: Option<usize>,
    pub feed_credential: Option<FeedCredential>,
    /// The last applied body of each source (same order as `sources`), for host caches.
    copies: Vec<Option<(Arc<[u8]>, UnixTime)>>,
    pub revocations: Option<RevocationList>,
    pending_feed: Option<Pending>,
    events: VecDeque<MaterialEvent>,
    born: Option<UnixTime>,
    ready_told: bool,
    cold_start_wait_ms: i64,
    timeout_s: u64,
    jwks_max_stale_s: i64,
}

impl Material {
    pub(crate) fn new(
        sched: Scheduler,
        sources: Vec<SourceInfo>,
        feed_provider: Option<usize>,
        feed_credential: Option<FeedCredential>,
        policy: &crate::config::FetchPolicy,
    ) -> Material {
        let copies = vec![None; sources.len()];
        Material {
            sched,
            sources,
            feed_provider,
            feed_credential,
            copies,
            revocations: None,
            pending_feed: None,
            events: VecDeque::new(),
            born: None,
            ready_told: false,
            // Never longer than a fetch may take: past that, the fetch has failed anyway.
            cold_start_wait_ms: policy.cold_start_wait_ms.min(policy.timeout_s.saturating_mul(1000)) as i64,
            timeout_s: policy.timeout_s,
            jwks_max_stale_s: policy.jwks_max_stale_s as i64,
        }
    }

    /// The first time the gateway hears of (cold start begins).
    pub(crate) fn note_time(&mut self, now: UnixTime) {
        self.born.get_or_insert(now);
    }

    fn index(&self, source: Source) -> Option<usize> {
        self.sources.iter().position(|s| s.source == source)
    }

    pub(crate) fn poll_event(&mut self) -> Option<MaterialEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_fetch(&mut self, now: UnixTime) -> Option<FetchRequest> {
        self.note_time(now);
        for source in self.sched.expire(now) {
            self.events.push_back(MaterialEvent::FetchFailed { source, reason: FetchFailure::Timeout });
        }
        let (id, source) = self.sched.poll(now)?;
        let state = self.sched.state(source)?;
        let info = &self.sources[self.index(source)?];
        let accept = match source {
            Source::Jwks(_) => "application/jwk-set+json, application/json",
            Source::Revocations => "application/jwt",
        };
        let mut headers = vec![("accept".to_string(), accept.to_string())];
        if let Some(etag) = &state.etag {
            headers.push(("if-none-match".to_string(), etag.clone()));
        }
        if let (Source::Revocations, Some(c)) = (source, &self.feed_credential) {
            headers.push(("x-api-key".to_string(), c.key_id.clone()));
            headers.push(("x-api-secret".to_string(), c.secret.clone()));
        }
        Some(FetchRequest { id, source, url: info.url.to_string(), headers, timeout_s: self.timeout_s })
    }

    pub(crate) fn handle_fetch(
        &mut self,
        id: FetchId,
        response: FetchResponse<'_>,
        now: UnixTime,
        verifier: &mut Verifier,
        cache: &mut TokenCache,
    ) {
        let Some(source) = self.sched.in_flight(id) else {
            self.events.push_back(MaterialEvent::Ignored { id });
            return;
        };
        let outcome = match response.status {
            200 => self.apply(source, Arc::from(response.body), now, now, Via::Fetch, verifier, cache),
            304 if self.copy_of(source).is_some() => {
                self.confirm(source, now, now, Via::Fetch, verifier);
                Some(Applied::Same)
            }
            status => {
                self.events.push_back(MaterialEvent::FetchFailed { source, reason: FetchFailure::HttpStatus(status) });
                None
            }
        };
        self.sched.complete(id, if outcome.is_some() { Outcome::Success } else { Outcome::Failure }, now);
        // A pending feed's ETag must not turn the next answer into a 304 for the older one in use.
        if response.status == 200 && matches!(outcome, Some(Applied::Changed | Applied::Same)) {
            self.sched.set_etag(source, response.etag.filter(|e| e.len() <= 256 && jwt::header_safe(e)).map(str::to_string));
        }
        self.tell_ready(verifier);
    }

    pub(crate) fn fetch_failed(&mut self, id: FetchId, now: UnixTime) {
        match self.sched.complete(id, Outcome::Failure, now) {
            Some(source) => self.events.push_back(MaterialEvent::FetchFailed { source, reason: FetchFailure::Transport }),
            None => self.events.push_back(MaterialEvent::Ignored { id }),
        }
    }

    pub(crate) fn apply_material(
        &mut self,
        source: Source,
        body: &[u8],
        fetched_at: UnixTime,
        now: UnixTime,
        verifier: &mut Verifier,
        cache: &mut TokenCache,
    ) {
        self.note_time(now);
        if self.index(source).is_none() {
            self.events.push_back(MaterialEvent::Rejected { source, via: Via::Host, reason: RejectReason::UnknownSource });
            return;
        }
        let fetched_at = fetched_at.min(now);
        if self.apply(source, Arc::from(body), fetched_at, now, Via::Host, verifier, cache).is_some() {
            self.sched.note_applied(source, fetched_at);
        }
        self.tell_ready(verifier);
    }

    fn copy_of(&self, source: Source) -> Option<&(Arc<[u8]>, UnixTime)> {
        self.copies[self.index(source)?].as_ref()
    }

    fn keep_for(&self, source: Source, fetched_at: UnixTime, now: UnixTime) -> u64 {
        let left = match source {
            Source::Jwks(_) => self.jwks_max_stale_s - now.secs_since(fetched_at),
            Source::Revocations => self.revocations.as_ref().map_or(0, |f| f.exp - now.secs()),
        };
        left.max(0) as u64
    }

    fn copy(&self, source: Source, now: UnixTime) -> Option<MaterialCopy> {
        let (body, fetched_at) = self.copy_of(source)?.clone();
        Some(MaterialCopy { keep_for_s: self.keep_for(source, fetched_at, now), body, fetched_at })
    }

    /// Records `body` as the copy in use and tells the host.
    fn record(&mut self, source: Source, body: Arc<[u8]>, fetched_at: UnixTime, now: UnixTime, via: Via, changed: bool) {
        let Some(i) = self.index(source) else { return };
        let newer = self.copies[i].as_ref().is_none_or(|(_, at)| fetched_at >= *at);
        if changed || newer {
            self.copies[i] = Some((body, fetched_at));
        }
        if let Some(copy) = self.copy(source, now) {
            self.events.push_back(if changed {
                MaterialEvent::Applied { source, via, copy }
            } else {
                MaterialEvent::Confirmed { source, via, copy }
            });
        }
    }

    /// A 304: the copy in use is current as of `at`.
    fn confirm(&mut self, source: Source, at: UnixTime, now: UnixTime, via: Via, verifier: &mut Verifier) {
        if let Source::Jwks(p) = source {
            if let Some((_, confirmed)) = verifier.providers.get_mut(p).and_then(|p| p.fetched.as_mut()) {
                *confirmed = (*confirmed).max(at);
            }
        }
        if let Some((body, _)) = self.copy_of(source).cloned() {
            self.record(source, body, at, now, via, false);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        source: Source,
        body: Arc<[u8]>,
        fetched_at: UnixTime,
        now: UnixTime,
        via: Via,
        verifier: &mut Verifier,
        cache: &mut TokenCache,
    ) -> Option<Applied> {
        let result = match source {
            Source::Jwks(p) => self.apply_jwks(p, &body, fetched_at, verifier, cache),
            Source::Revocations => self.apply_feed(&body, verifier, cache),
        };
        match result {
            Ok(Applied::Pending) => {
                self.pending_feed = Some(Pending { body, fetched_at, via });
                self.events.push_back(MaterialEvent::KeptPending { source, via, reason: PendingReason::FeedKeyUnknown });
                Some(Applied::Pending)
            }
            Ok(applied) => {
                if matches!(source, Source::Revocations) {
                    self.pending_feed = None;
                }
                if matches!(applied, Applied::Same) {
                    self.confirm(source, fetched_at, now, via, verifier);
                } else {
                    self.record(source, body, fetched_at, now, via, true);
                }
                if matches!(source, Source::Jwks(p) if Some(p) == self.feed_provider) {
                    self.retry_pending_feed(now, verifier, cache);
                }
                Some(applied)
            }
            Err(reason) => {
                self.events.push_back(MaterialEvent::Rejected { source, via, reason });
                None
            }
        }
    }

    /// New keys of the feed issuer: a feed that waited for them may verify now.
    fn retry_pending_feed(&mut self, now: UnixTime, verifier: &mut Verifier, cache: &mut TokenCache) {
        let Some(p) = self.pending_feed.take() else {
            return;
        };
        match self.apply_feed(&p.body, verifier, cache) {
            Ok(Applied::Pending) => self.pending_feed = Some(p),
            Ok(applied) => {
                let changed = !matches!(applied, Applied::Same);
                self.record(Source::Revocations, p.body, p.fetched_at, now, p.via, changed);
            }
            Err(reason) => self.events.push_back(MaterialEvent::Rejected { source: Source::Revocations, via: p.via, reason }),
        }
    }

    fn apply_jwks(
        &mut self,
        p: usize,
        body: &[u8],
        fetched_at: UnixTime,
        verifier: &mut Verifier,
        cache: &mut TokenCache,
    ) -> Result<Applied, RejectReason> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(RejectReason::TooLarge { limit: MAX_JWKS_BYTES });
        }
        let set = VerificationKeys::from_json(body, KeyOrigin::Fetched).map_err(RejectReason::Jwks)?;
        let provider = verifier.providers.get_mut(p).ok_or(RejectReason::UnknownSource)?;
        let same = provider.fetched.as_ref().is_some_and(|(old, _)| old.fingerprint() == set.fingerprint());
        if same {
            return Ok(Applied::Same);
        }
        provider.fetched = Some((set, fetched_at));
        // A key that left the set must not keep vouching for cached tokens, nor for a
        // verification suspended at the host's signature check.
        verifier.keys_generation = verifier.keys_generation.wrapping_add(1);
        cache.clear();
        Ok(Applied::Changed)
    }

    fn apply_feed(&mut self, body: &[u8], verifier: &mut Verifier, cache: &mut TokenCache) -> Result<Applied, RejectReason> {
        let pi = self.feed_provider.ok_or(RejectReason::UnknownSource)?;
        if body.len() > MAX_FEED_BYTES {
            return Err(RejectReason::TooLarge { limit: MAX_FEED_BYTES });
        }
        let text = core::str::from_utf8(body).map_err(|_| RejectReason::FeedNotJws)?.trim();
        let mut scratch = jwt::JwsScratch::new();
        let jws = jwt::parse_jws(text, MAX_FEED_BYTES, &mut scratch).map_err(|_| RejectReason::FeedNotJws)?;
        if !jws.typ.as_deref().is_some_and(|t| jwt::typ_matches(t, FEED_TYP)) {
            return Err(RejectReason::FeedTyp);
        }
        let provider = &verifier.providers[pi];
        if !provider.algorithms.contains(&jws.alg) {
            return Err(RejectReason::FeedAlg);
        }
        match verifier.check_signature(pi, &jws) {
            Ok(()) => {}
            Err(SigError::NoKey) => {
                if provider.has_uri {
                    self.sched.request_refetch(Source::Jwks(pi));
                }
                return Ok(Applied::Pending);
            }
            Err(SigError::Code(_) | SigError::Ask(_)) => return Err(RejectReason::FeedSignature),
        }
        // The feed runs to megabytes: its payload is decoded on the heap, never inline.
        let claims: RevocationFeedClaims =
            jwt::decode_payload(jws.payload_b64, &mut jwt::SegmentBuf::<0>::new(), ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)
                .map_err(|_| RejectReason::FeedClaims)?;
        if claims.iss != provider.issuer {
            return Err(RejectReason::FeedIssuer);
        }
        if let Some(current) = &self.revocations {
            if claims.ver < current.ver {
                return Err(RejectReason::FeedRollback { applied: current.ver, received: claims.ver });
            }
            if claims.ver == current.ver && claims.iat <= current.iat {
                return Ok(Applied::Same);
            }
        }
        let next = RevocationList::from_claims(claims);
        let lists_changed = self.revocations.as_ref().is_none_or(|c| c.ver != next.ver);
        self.revocations = Some(next);
        if lists_changed {
            cache.clear();
        }
        Ok(Applied::Changed)
    }

    fn has_material(&self, source: Source, verifier: &Verifier) -> bool {
        match source {
            Source::Jwks(p) => verifier.providers.get(p).is_some_and(|p| p.fetched.is_some()),
            Source::Revocations => self.revocations.is_some(),
        }
    }

    pub(crate) fn is_ready(&self, verifier: &Verifier) -> bool {
        self.sources.iter().all(|s| self.has_material(s.source, verifier))
    }

    fn tell_ready(&mut self, verifier: &Verifier) {
        if !self.ready_told && self.is_ready(verifier) {
            self.ready_told = true;
            self.events.push_back(MaterialEvent::Ready);
        }
    }

    /// Cold start: until when a request denied with `code` for want of the material of
    /// `provider` (or of the feed) may be held, if that material is still on its way — never
    /// had, and its first fetch has not failed.
    pub(crate) fn hold_until(&self, code: ErrorCode, provider: Option<usize>, now: UnixTime, verifier: &Verifier) -> Option<UnixTime> {
        let until = self.born?.plus_millis(self.cold_start_wait_ms);
        if now >= until {
            return None;
        }
        let source = match code {
            ErrorCode::KeysUnavailable => Source::Jwks(provider?),
            ErrorCode::RevocationsStale => Source::Revocations,
            _ => return None,
        };
        let warming = !self.has_material(source, verifier) && self.sched.state(source).is_some_and(|s| s.failures == 0);
        warming.then_some(until)
    }
}
