//! The material lifecycle: JWKS and the revocation feed from fetch to use. auth-core owns all of
//! it — the fetch order (the feed after the keys that sign it), what a body means, the feed held
//! until its keys arrive, readiness and the cold-start hold, what to keep in a host cache and
//! for how long — and tells the host what happened as [`MaterialEvent`]s (quinn-proto's
//! `poll` shape). Hosts keep no material state of their own.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::cache::TokenCache;
use crate::config::FeedCredential;
use crate::error::ErrorCode;
use crate::fetch::{FetchId, FetchRequest, Outcome, Scheduler, Source};
use crate::formats::RevocationFeedClaims;
use crate::jwt::{self, FEED_TYP};
use crate::keys::{JwksError, KeyOrigin, VerificationKeys};
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

/// How material reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A fetch this gateway made (`handle_fetch`).
    Fetch,
    /// Handed in by the host (`apply_material`): another VM's fetch, a cached copy, a file.
    Host,
}

/// A copy of material in use, for a host cache: the body as fetched, when it was fetched (or
/// last confirmed current), and how long it is worth keeping (0: not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialCopy {
    pub body: Arc<[u8]>,
    pub fetched_at: UnixTime,
    pub keep_for_s: u64,
}

/// What happened to material. Drain with `Gateway::poll_event` after every material input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaterialEvent {
    /// New material of `source` is in use.
    Applied { source: Source, via: Via, copy: MaterialCopy },
    /// `source` answered with what is already in use (a 304, or the same document): it is
    /// current as of `copy.fetched_at`.
    Confirmed { source: Source, via: Via, copy: MaterialCopy },
    /// Valid so far but not usable yet; applied (an `Applied` event) once the reason is gone.
    KeptPending { source: Source, via: Via, reason: PendingReason },
    /// Not applied; what was in use stays in use.
    Rejected { source: Source, via: Via, reason: RejectReason },
    /// A fetch ended without a body to look at; retried with backoff.
    FetchFailed { source: Source, reason: FetchFailure },
    /// An answer to a fetch that is no longer in flight (late, or duplicate): ignored.
    Ignored { id: FetchId },
    /// Every source has material now (once, after a cold start).
    Ready,
}

/// How much a host should say about an event in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Debug,
    Info,
    Warn,
}

impl MaterialEvent {
    pub fn severity(&self) -> Severity {
        match self {
            MaterialEvent::Applied { .. } | MaterialEvent::KeptPending { .. } | MaterialEvent::Ready => Severity::Info,
            MaterialEvent::Rejected { .. } | MaterialEvent::FetchFailed { .. } => Severity::Warn,
            MaterialEvent::Confirmed { .. } | MaterialEvent::Ignored { .. } => Severity::Debug,
        }
    }
}

/// One log line per event, the same on every host.
impl fmt::Display for MaterialEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = |v: &Via| if *v == Via::Fetch { "fetched" } else { "handed over by the host" };
        match self {
            MaterialEvent::Applied { source, via: v, copy } => write!(f, "{} updated, {} ({} bytes)", source.key(), via(v), copy.body.len()),
            MaterialEvent::Confirmed { source, copy, .. } => write!(f, "{} current as of {}", source.key(), copy.fetched_at.secs()),
            MaterialEvent::KeptPending { source, reason: PendingReason::FeedKeyUnknown, .. } => {
                write!(f, "{} kept until the key that signed it arrives (JWKS refetch asked for)", source.key())
            }
            MaterialEvent::Rejected { source, via: v, reason } => write!(f, "{} {} but not applied: {reason}", source.key(), via(v)),
            MaterialEvent::FetchFailed { source, reason } => write!(f, "{} fetch failed: {reason}", source.key()),
            MaterialEvent::Ignored { id } => write!(f, "late answer to fetch {} ignored", id.0),
            MaterialEvent::Ready => f.write_str("every JWKS and the feed are in: ready"),
        }
    }
}

/// Why material waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingReason {
    /// The feed is signed by a key this gateway does not have yet; a JWKS refetch is asked for.
    FeedKeyUnknown,
}

/// Why material was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The body is larger than the limit for its kind.
    TooLarge { limit: usize },
    /// Not a usable JWKS.
    Jwks(JwksError),
    /// Not a compact JWS (or not UTF-8).
    FeedNotJws,
    /// The JWS `typ` is not `revocations+jwt`.
    FeedTyp,
    /// The algorithm is not allowed for the feed's issuer.
    FeedAlg,
    /// The signature does not verify with the issuer's keys.
    FeedSignature,
    /// The claims are not a revocation feed.
    FeedClaims,
    /// `iss` is not the feed issuer.
    FeedIssuer,
    /// An older version than the one in use (a rollback or replay).
    FeedRollback { applied: u64, received: u64 },
    /// The gateway has no such source.
    UnknownSource,
}

impl RejectReason {
    /// A stable code, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::Jwks(_) => "jwks_invalid",
            RejectReason::FeedNotJws => "feed_not_jws",
            RejectReason::FeedTyp => "feed_typ",
            RejectReason::FeedAlg => "feed_alg",
            RejectReason::FeedSignature => "feed_signature",
            RejectReason::FeedClaims => "feed_claims",
            RejectReason::FeedIssuer => "feed_issuer",
            RejectReason::FeedRollback { .. } => "feed_rollback",
            RejectReason::UnknownSource => "unknown_source",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLarge { limit } => write!(f, "larger than {limit} bytes"),
            RejectReason::Jwks(e) => write!(f, "not a usable JWKS: {e}"),
            RejectReason::FeedNotJws => f.write_str("the feed is not a compact JWS"),
            RejectReason::FeedTyp => f.write_str("the feed's typ is not revocations+jwt"),
            RejectReason::FeedAlg => f.write_str("the feed's algorithm is not allowed for its issuer"),
            RejectReason::FeedSignature => f.write_str("the feed's signature is invalid"),
            RejectReason::FeedClaims => f.write_str("the feed's claims are not a revocation feed"),
            RejectReason::FeedIssuer => f.write_str("the feed's issuer does not match"),
            RejectReason::FeedRollback { applied, received } => {
                write!(f, "feed version {received} is older than {applied} in use")
            }
            RejectReason::UnknownSource => f.write_str("no such source"),
        }
    }
}

/// Why a fetch gave nothing to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The host could not complete it (connection refused, reset, its own timeout).
    Transport,
    /// No answer within `fetch.timeout_s`.
    Timeout,
    /// The server answered with this status (a 304 counts when there is nothing to confirm).
    HttpStatus(u16),
}

impl FetchFailure {
    pub fn code(&self) -> &'static str {
        match self {
            FetchFailure::Transport => "transport",
            FetchFailure::Timeout => "timeout",
            FetchFailure::HttpStatus(_) => "http_status",
        }
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchFailure::HttpStatus(s) => write!(f, "http_status {s}"),
            other => f.write_str(other.code()),
        }
    }
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

/// A copy for a cache other code can write to (the Workers Cache API is shared by every Worker of
/// a zone): `agm1`, the fetch time, an HMAC-SHA256 over both, the source and the body, then the
/// body. Only what [`open_copy`] authenticates with the same key is applied, so a planted entry
/// can neither bring its own keys nor claim to be fresher than it is.
pub fn seal_copy(key: &[u8; 32], source_key: &str, copy: &MaterialCopy) -> Vec<u8> {
    let at = copy.fetched_at.millis().to_be_bytes();
    let tag = copy_tag(key, source_key, &at, &copy.body);
    let mut out = Vec::with_capacity(4 + 8 + 32 + copy.body.len());
    out.extend_from_slice(b"agm1");
    out.extend_from_slice(&at);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&copy.body);
    out
}

/// The fetch time and body of a sealed copy, if it was sealed with `key` for `source_key`.
pub fn open_copy<'a>(key: &[u8; 32], source_key: &str, sealed: &'a [u8]) -> Option<(UnixTime, &'a [u8])> {
    use subtle::ConstantTimeEq;
    let rest = sealed.strip_prefix(b"agm1")?;
    let (at, rest) = (rest.get(..8)?, rest.get(8..)?);
    let (tag, body) = (rest.get(..32)?, rest.get(32..)?);
    let want = copy_tag(key, source_key, at, body);
    if !bool::from(want.ct_eq(tag)) {
        return None;
    }
    Some((UnixTime::from_millis(i64::from_be_bytes(at.try_into().ok()?)), body))
}

fn copy_tag(key: &[u8; 32], source_key: &str, at: &[u8], body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [b"authgate material copy v1\0".as_slice(), source_key.as_bytes(), b"\0", at, body] {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// 16 hex digits of SHA-256 of `text`: a stable key for host caches and shared data.
pub fn stable_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
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
        let newer = self.copies[i].as_ref().map_or(true, |(_, at)| fetched_at >= *at);
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
        // A key that left the set must not keep vouching for cached tokens.
        cache.clear();
        Ok(Applied::Changed)
    }

    fn apply_feed(&mut self, body: &[u8], verifier: &mut Verifier, cache: &mut TokenCache) -> Result<Applied, RejectReason> {
        let pi = self.feed_provider.ok_or(RejectReason::UnknownSource)?;
        if body.len() > MAX_FEED_BYTES {
            return Err(RejectReason::TooLarge { limit: MAX_FEED_BYTES });
        }
        let text = core::str::from_utf8(body).map_err(|_| RejectReason::FeedNotJws)?.trim();
        let jws = jwt::parse_jws(text, MAX_FEED_BYTES).map_err(|_| RejectReason::FeedNotJws)?;
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
            Err(SigError::Code(_)) => return Err(RejectReason::FeedSignature),
        }
        let claims: RevocationFeedClaims = jwt::decode_payload(jws.payload_b64, ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)
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
        let lists_changed = self.revocations.as_ref().map_or(true, |c| c.ver != next.ver);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copies_open_only_with_their_key_and_source() {
        let copy = MaterialCopy { body: Arc::from(&b"{\"keys\": []}"[..]), fetched_at: UnixTime::from_millis(1_700_000_000_123), keep_for_s: 60 };
        let sealed = seal_copy(&[7; 32], "abc", &copy);
        assert_eq!(open_copy(&[7; 32], "abc", &sealed), Some((copy.fetched_at, copy.body.as_ref())));
        assert_eq!(open_copy(&[8; 32], "abc", &sealed), None, "another key");
        assert_eq!(open_copy(&[7; 32], "abd", &sealed), None, "another source");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(open_copy(&[7; 32], "abc", &tampered), None, "byte {i} flipped");
        }
        for cut in 0..sealed.len() {
            assert_eq!(open_copy(&[7; 32], "abc", &sealed[..cut]), None, "truncated to {cut}");
        }
    }
}
