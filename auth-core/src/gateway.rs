//! The gateway: the orchestrator hosts drive. [`Gateway::decide`] per request (headers scanned
//! by [`crate::credential`], path by [`crate::path`], rules by [`crate::route`], credentials by
//! [`crate::Verifier`], revocation by [`crate::RevocationList`]); the material calls
//! (`poll_fetch`, `handle_fetch`, `apply_material`, `poll_event`, `poll_timeout`) delegate to
//! [`crate::material`].
//!
//! The host loop, in the order quinn-proto's `Connection` documents its own:
//!
//! ```text
//! let mut gw = Gateway::from_json(config_bytes)?;
//! loop {
//!     while let Some(fetch) = gw.poll_fetch(now) { host.start(fetch) }          // JWKS, feed
//!     on fetch done:  gw.handle_fetch(id, FetchResponse { status, body, etag }, now)
//!     on fetch error: gw.fetch_failed(id, now)
//!     while let Some(event) = gw.poll_event() { log, count, cache or share copies }
//!     on request:     match gw.decide(&request, now, request_id) {
//!                         Allow(a) => forward, Deny(d) if d.hold_until.is_some() => hold, Deny(d) => answer }
//!     (or, where the host has native crypto: gw.decide_with(&request, now, request_id, host)
//!      answers Step::CheckSignature(suspended); the host checks suspended.check() and calls
//!      gw.resume(suspended, Some(valid), now, algs), which decides or asks again)
//!     sleep until gw.poll_timeout()
//! }
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use crate::cache::TokenCache;
use crate::config::{FeedCredential, GatewayConfig, HeaderNames, Requirement, StalePolicy};
use crate::cookie;
use crate::credential::{self, Credential};
use crate::decision::{Allow, Decision, Deny, Identity, Request};
use crate::error::{ConfigError, ErrorCode};
use crate::fetch::{FetchId, FetchRequest, Scheduler, Source};
use crate::headers::IdentityHeaders;
use crate::host_crypto::{HostAlgs, HostCrypto, SignatureCheck};
use crate::material::{stable_key, FetchResponse, Material, MaterialEvent, SourceInfo};
use crate::path::canonical_path;
use crate::route::{first_match, is_method, query_method_overrides, Route};
use crate::time::UnixTime;
use crate::validate;
use crate::verifier::{Interrupt, Rejection, SuspendedToken, Verified, Verifier};
use crate::CredentialKind;

/// What [`Gateway::decide_with`] and [`Gateway::resume`] answer: a decision, or a signature
/// for the host to check.
#[derive(Clone, Debug)]
pub enum Step {
    Decided(Decision),
    /// Check [`SuspendedDecision::check`], then [`Gateway::resume`] with the verdict.
    CheckSignature(SuspendedDecision),
}

/// A decision stopped at the signature the host checks: the rules it was judged by, what it
/// found in the headers and the suspended verification, owned, so [`Gateway::resume`] goes on
/// from there without the request.
#[derive(Clone, Debug)]
pub struct SuspendedDecision {
    token: Box<SuspendedToken>,
    main: usize,
    other: Option<usize>,
    remove: Vec<Cow<'static, str>>,
    /// The `cookie` fields, kept only when a rule strips the credential (to rewrite them).
    cookie_headers: Vec<String>,
    request_id: String,
}

impl SuspendedDecision {
    /// What the host is asked to check.
    pub fn check(&self) -> &SignatureCheck {
        self.token.check()
    }
}

/// What [`Gateway::check_token_with`] answers.
#[derive(Clone, Debug)]
pub enum TokenCheck {
    Valid(Arc<Identity>),
    /// Refused with `code`; `hold_until` as in [`Deny::hold_until`] (cold start).
    Invalid {
        code: ErrorCode,
        hold_until: Option<UnixTime>,
    },
    /// Check [`SuspendedToken::check`], then [`Gateway::resume_token`] with the verdict.
    CheckSignature(Box<SuspendedToken>),
}

/// Material state of one source, for metrics, health endpoints and `authgate` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: Source,
    pub url: String,
    pub last_success: Option<UnixTime>,
    pub consecutive_failures: u32,
    pub has_material: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayStatus {
    pub sources: Vec<SourceStatus>,
    pub feed_version: Option<u64>,
    pub feed_expires_at: Option<UnixTime>,
    pub feed_watermark: Option<UnixTime>,
    pub revoked_entries: usize,
    pub cached_tokens: usize,
}

/// The sans-IO gateway. See the module docs for the host loop.
pub struct Gateway {
    config: GatewayConfig,
    verifier: Verifier,
    material: Material,
    cache: TokenCache,
    /// Shared so `decide` can hold the rules while it borrows the gateway mutably.
    routes: Arc<[Route]>,
    names: Arc<HeaderNames>,
    identity_headers: IdentityHeaders,
}

/// The rules a request is judged by: the rule its method matched and, when it asks for another
/// method (an override header or `_method` in the query), the rule of that method too (the
/// upstream may run that one). Every requirement must be met; the strictest stale policy applies.
struct Judged<'r> {
    main: usize,
    /// The rule of the method asked for, when it is another.
    other: Option<usize>,
    routes: Vec<&'r Route>,
    /// The method, or the one asked for, changes state: cookie credentials need CSRF evidence.
    needs_csrf: bool,
}

impl<'r> Judged<'r> {
    /// The rules a suspended decision was judged by, again; `None` if they are not all there.
    fn of(rules: &'r [Route], main: usize, other: Option<usize>) -> Option<Judged<'r>> {
        let routes = core::iter::once(main).chain(other).map(|i| rules.get(i)).collect::<Option<Vec<_>>>()?;
        Some(Judged { main, other, routes, needs_csrf: false })
    }

    fn anonymous(&self) -> bool {
        self.routes.iter().all(|r| r.require == Requirement::Anonymous)
    }

    fn secured(&self) -> impl Iterator<Item = &&Route> {
        self.routes.iter().filter(|r| r.require != Requirement::Anonymous)
    }

    fn on_stale(&self) -> StalePolicy {
        if self.secured().any(|r| r.on_stale == StalePolicy::FailClosed) {
            StalePolicy::FailClosed
        } else {
            StalePolicy::FailOpen
        }
    }

    fn accepts(&self, kind: CredentialKind) -> bool {
        self.secured().all(|r| match kind {
            CredentialKind::Jwt => r.accepts_jwt,
            CredentialKind::ApiKey => r.accepts_api_key,
        })
    }

    fn strip_credential(&self) -> bool {
        self.routes.iter().any(|r| r.strip_credential)
    }

    fn first(&self) -> &Route {
        self.routes[0]
    }
}

impl Gateway {
    /// Parses and validates a JSON config.
    pub fn from_json(bytes: &[u8]) -> Result<Gateway, ConfigError> {
        Gateway::new(GatewayConfig::from_json(bytes)?)
    }

    /// Validates a config and builds the gateway. Errors name the field.
    pub fn new(config: GatewayConfig) -> Result<Gateway, ConfigError> {
        let routes = validate::routes(&config.routes)?;
        let providers = validate::providers(&config.providers)?;
        let hmac = validate::hmac_ring(config.api_keys.as_ref())?;
        validate::gateway(&config, !providers.is_empty() || !hmac.is_empty())?;

        let mut sched = Scheduler::new(config.fetch.clone());
        let mut sources = Vec::new();
        for (i, p) in config.providers.iter().enumerate() {
            if let Some(uri) = &p.jwks_uri {
                sched.add(Source::Jwks(i), config.fetch.jwks_refresh_s, None);
                sources.push(SourceInfo {
                    source: Source::Jwks(i),
                    url: validate::url(&format!("providers[{i}].jwks_uri"), uri)?,
                    key: stable_key(uri),
                });
            }
        }
        let mut feed_provider = None;
        if let Some(rev) = &config.revocations {
            let issuer = match &rev.issuer {
                Some(iss) => iss.as_str(),
                None => config
                    .providers
                    .first()
                    .map(|p| p.issuer.as_str())
                    .ok_or_else(|| ConfigError::new("revocations.issuer", "no providers: name the issuer whose keys sign the feed"))?,
            };
            let pi = config.providers.iter().position(|p| p.issuer == issuer).ok_or_else(|| {
                ConfigError::new("revocations.issuer", "must be the issuer of one of the providers (its keys sign the feed)")
            })?;
            let after = config.providers[pi].jwks_uri.is_some().then_some(Source::Jwks(pi));
            sched.add(Source::Revocations, rev.refresh_s, after);
            sources.push(SourceInfo {
                source: Source::Revocations,
                url: validate::url("revocations.uri", &rev.uri)?,
                key: stable_key(&rev.uri),
            });
            feed_provider = Some(pi);
        }
        let feed_credential = config.revocations.as_ref().and_then(|r| r.credential.clone());
        let material = Material::new(sched, sources, feed_provider, feed_credential, &config.fetch);
        let verifier = Verifier {
            providers,
            hmac,
            max_token_bytes: config.limits.max_token_bytes,
            jwks_max_stale_s: config.fetch.jwks_max_stale_s as i64,
            keys_generation: 0,
            instance: Arc::new(()),
        };
        Ok(Gateway {
            cache: TokenCache::new(config.cache.max_entries),
            names: Arc::new(config.headers.clone()),
            identity_headers: IdentityHeaders::new(&config.headers),
            routes: routes.into(),
            verifier,
            material,
            config,
        })
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The routeless verifier inside (the same rules `decide` applies).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Sets the credential the feed is fetched with (hosts that keep it in a secret store).
    pub fn set_feed_credential(&mut self, key_id: String, secret: String) -> Result<(), ConfigError> {
        let Some(rev) = &mut self.config.revocations else {
            return Err(ConfigError::new("revocations", "there is no revocation feed to fetch with a credential"));
        };
        let credential = FeedCredential { key_id, secret };
        validate::feed_credential(&credential, "revocations.credential")?;
        rev.credential = Some(credential.clone());
        self.material.feed_credential = Some(credential);
        Ok(())
    }

    // ----- request path -----------------------------------------------------------------

    /// Decides one request. `request_id` becomes `x-error-id` on denial. Never panics, whatever
    /// the input. Every signature is checked in the core.
    pub fn decide(&mut self, req: &Request<'_>, now: UnixTime, request_id: &str) -> Decision {
        match self.decide_with(req, now, request_id, HostCrypto::default()) {
            Step::Decided(decision) => decision,
            // Never asked without host algorithms; refused rather than trusted if it were.
            Step::CheckSignature(_) => self.refuse(ErrorCode::SignatureInvalid, request_id),
        }
    }

    /// [`Gateway::decide`] with the host's crypto: the answer is a decision, or a signature
    /// check of an algorithm in `host.algs` for the host to answer. The host then calls again
    /// with the same request and the answer in `host.answer` (see [`crate::host_crypto`]).
    pub fn decide_with(&mut self, req: &Request<'_>, now: UnixTime, request_id: &str, host: HostCrypto<'_>) -> Step {
        self.material.note_time(now);
        let cookie_cfg = self.config.cookie.as_ref();
        let mut scan = credential::scan(req.headers, Some(&self.identity_headers), cookie_cfg);
        let mut remove = std::mem::take(&mut scan.remove);
        let rules = self.routes.clone();
        let judged = match judge(&rules, req.method, req.path, &scan.overrides) {
            Ok(j) => j,
            Err(code) => return denied(code, None, remove, None, request_id),
        };
        if judged.anonymous() {
            let rewrite = if judged.strip_credential() { self.strip_cookies(&scan.cookie_headers, &mut remove) } else { Vec::new() };
            return Step::Decided(Decision::Allow(Allow {
                identity: None,
                remove_headers: remove,
                rewrite_headers: rewrite,
                names: self.names.clone(),
                route: judged.main,
                cache_hit: false,
            }));
        }
        let route = judged.first();
        let credential = match scan.credential() {
            Ok(Some(c)) => c,
            Ok(None) => return denied(ErrorCode::CredentialMissing, Some(route), remove, None, request_id),
            Err(code) => return denied(code, Some(route), remove, None, request_id),
        };
        if let (Credential::Cookie(_), Some(cc)) = (credential, cookie_cfg) {
            if judged.needs_csrf {
                if let Err(code) = scan.csrf.check(cc) {
                    return denied(code, Some(route), remove, None, request_id);
                }
            }
        }
        let kind = match credential {
            Credential::ApiKey { .. } => CredentialKind::ApiKey,
            _ => CredentialKind::Jwt,
        };
        if !judged.accepts(kind) {
            return denied(ErrorCode::CredentialNotAccepted, Some(route), remove, None, request_id);
        }
        let verified = self.verify(credential, now, judged.on_stale(), host);
        self.conclude(&judged, verified, remove, &scan.cookie_headers, request_id, now)
    }

    /// Goes on with a decision suspended at the host's signature check: `verdict` is the
    /// host's answer, `None` when it could not check (the core then checks the signature
    /// itself, or hands it to `algs` again). The rules and headers judged before asking stand;
    /// the verification resumes as [`Verifier::resume_token`] says, then the revocation feed
    /// and the rules' requirements are applied as `decide_with` applies them. May stop at
    /// another check (keys applied meanwhile).
    pub fn resume(&mut self, suspended: SuspendedDecision, verdict: Option<bool>, now: UnixTime, algs: HostAlgs) -> Step {
        self.material.note_time(now);
        let SuspendedDecision { token, main, other, remove, cookie_headers, request_id } = suspended;
        let rules = self.routes.clone();
        // Suspended by another gateway (a host's mistake): its rule numbers mean nothing here.
        let judged = Judged::of(&rules, main, other).filter(|_| self.verifier.suspended_here(&token));
        let Some(judged) = judged else {
            return Step::Decided(self.refuse(ErrorCode::ConfigInvalid, &request_id));
        };
        let verified = self.resume_verify(token, verdict, now, algs);
        let cookies: Vec<&str> = cookie_headers.iter().map(String::as_str).collect();
        self.conclude(&judged, verified, remove, &cookies, &request_id, now)
    }

    /// `suspended` stopped in this gateway (a host that may replace its gateway while a check
    /// is out decides the request afresh otherwise: [`Gateway::resume`] refuses another's).
    pub fn made(&self, suspended: &SuspendedDecision) -> bool {
        self.verifier.suspended_here(&suspended.token)
    }

    /// A decision's end once its credential was verified, refused or suspended.
    fn conclude(
        &mut self,
        judged: &Judged<'_>,
        verified: Result<Verified, Interrupt>,
        mut remove: Vec<Cow<'static, str>>,
        cookie_headers: &[&str],
        request_id: &str,
        now: UnixTime,
    ) -> Step {
        let route = judged.first();
        let strip = judged.strip_credential();
        let verified = match verified {
            Ok(v) => v,
            Err(Interrupt::CheckSignature(token)) => {
                return Step::CheckSignature(SuspendedDecision {
                    token,
                    main: judged.main,
                    other: judged.other,
                    remove,
                    cookie_headers: if strip { cookie_headers.iter().map(|h| h.to_string()).collect() } else { Vec::new() },
                    request_id: request_id.to_string(),
                });
            }
            Err(Interrupt::Rejected(r)) => {
                let hold = self.material.hold_until(r.code, r.provider, now, &self.verifier);
                return denied(r.code, Some(route), remove, hold, request_id);
            }
        };
        for r in judged.secured() {
            if let Err(code) = authorize(&r.require, &verified.identity) {
                return denied(code, Some(route), remove, None, request_id);
            }
        }
        if strip {
            remove.extend(["authorization", "x-api-key", "x-api-secret"].map(Cow::Borrowed));
        }
        let rewrite = if strip { self.strip_cookies(cookie_headers, &mut remove) } else { Vec::new() };
        Step::Decided(Decision::Allow(Allow {
            identity: Some(verified.identity),
            remove_headers: remove,
            rewrite_headers: rewrite,
            names: self.names.clone(),
            route: judged.main,
            cache_hit: verified.cache_hit,
        }))
    }

    /// A bearer token judged outside any route, for code that wants only the caller's identity:
    /// signature, claims, the verified-token cache and the revocation feed, exactly as a
    /// fail-closed route judges it. Signature checks go to the host as in [`Gateway::decide_with`].
    pub fn check_token_with(&mut self, token: &str, now: UnixTime, host: HostCrypto<'_>) -> TokenCheck {
        self.material.note_time(now);
        let verified = self.verify(Credential::Bearer(token), now, StalePolicy::FailClosed, host);
        self.token_check(verified, now)
    }

    /// Goes on with a token check suspended at the host's signature check, as
    /// [`Gateway::resume`] goes on with a decision.
    pub fn resume_token(&mut self, suspended: Box<SuspendedToken>, verdict: Option<bool>, now: UnixTime, algs: HostAlgs) -> TokenCheck {
        self.material.note_time(now);
        let verified = self.resume_verify(suspended, verdict, now, algs);
        self.token_check(verified, now)
    }

    fn token_check(&self, verified: Result<Verified, Interrupt>, now: UnixTime) -> TokenCheck {
        match verified {
            Ok(v) => TokenCheck::Valid(v.identity),
            Err(Interrupt::CheckSignature(suspended)) => TokenCheck::CheckSignature(suspended),
            Err(Interrupt::Rejected(r)) => {
                let hold_until = self.material.hold_until(r.code, r.provider, now, &self.verifier);
                TokenCheck::Invalid { code: r.code, hold_until }
            }
        }
    }

    fn refuse(&self, code: ErrorCode, request_id: &str) -> Decision {
        Decision::Deny(Deny {
            code,
            error_id: crate::request_id::sanitize(request_id),
            www_authenticate: None,
            remove_headers: Vec::new(),
            hold_until: None,
            detail: None,
        })
    }
}

/// A denial as a step; `route` gives the RFC 6750 challenge.
fn denied(code: ErrorCode, route: Option<&Route>, remove: Vec<Cow<'static, str>>, hold_until: Option<UnixTime>, request_id: &str) -> Step {
    Step::Decided(Decision::Deny(Deny {
        code,
        error_id: crate::request_id::sanitize(request_id),
        www_authenticate: route.and_then(|r| challenge(code, r)),
        remove_headers: remove,
        hold_until,
        detail: None,
    }))
}

/// The rules the request is judged by, or why it is refused before any credential is read.
/// `override_headers` are the values of method-override headers; the query's `_method` asks too.
fn judge<'r>(rules: &'r [Route], method: &str, target: &str, override_headers: &[&str]) -> Result<Judged<'r>, ErrorCode> {
    if !is_method(method) {
        return Err(ErrorCode::InvalidMethod);
    }
    let mut override_method: Option<Cow<'_, str>> = None;
    for m in override_headers.iter().map(|m| Cow::Borrowed(*m)).chain(query_method_overrides(target)) {
        if !is_method(&m) || override_method.as_ref().is_some_and(|o| !o.eq_ignore_ascii_case(&m)) {
            return Err(ErrorCode::InvalidMethod);
        }
        override_method = Some(m);
    }
    let path = canonical_path(target).ok_or(ErrorCode::InvalidPath)?;
    let main = first_match(rules, method, &path).ok_or(ErrorCode::NoMatchingRoute)?;
    let mut routes = vec![&rules[main]];
    let mut other_rule = None;
    if let Some(m) = &override_method {
        let other = first_match(rules, m, &path).ok_or(ErrorCode::NoMatchingRoute)?;
        if other != main {
            routes.push(&rules[other]);
            other_rule = Some(other);
        }
    }
    let needs_csrf = cookie::needs_csrf(method) || override_method.is_some_and(|m| cookie::needs_csrf(&m));
    Ok(Judged { main, other: other_rule, routes, needs_csrf })
}

impl Gateway {
    /// Verifies, through the verified-token cache for JWTs. A revocation check follows every
    /// verification, cached or not.
    fn verify(
        &mut self,
        credential: Credential<'_>,
        now: UnixTime,
        on_stale: StalePolicy,
        host: HostCrypto<'_>,
    ) -> Result<Verified, Interrupt> {
        let verified = match credential {
            Credential::Bearer(t) | Credential::Cookie(t) => {
                self.verifier.verify_token_cached_with(t, now, on_stale, &mut self.cache, host)
            }
            Credential::ApiKey { key_id, secret } => self.verifier.verify_api_key(key_id, secret, now).map_err(Interrupt::Rejected),
        };
        self.after_verify(verified, now, on_stale)
    }

    /// [`Gateway::verify`] for a verification suspended at the host's signature check.
    fn resume_verify(
        &mut self,
        suspended: Box<SuspendedToken>,
        verdict: Option<bool>,
        now: UnixTime,
        algs: HostAlgs,
    ) -> Result<Verified, Interrupt> {
        let on_stale = suspended.on_stale;
        let cache_key = self.cache.enabled().then(|| suspended.token.clone());
        let verified = self.verifier.resume_token(*suspended, verdict, now, HostCrypto { algs, answer: None }).map(|mut v| {
            v.cache_key = cache_key;
            v
        });
        self.after_verify(verified, now, on_stale)
    }

    /// What follows every verification: a refetch when the issuer's keys may have changed, the
    /// revocation check, and the verified-token cache.
    fn after_verify(&mut self, verified: Result<Verified, Interrupt>, now: UnixTime, on_stale: StalePolicy) -> Result<Verified, Interrupt> {
        let verified = verified.inspect_err(|i| {
            if let Interrupt::Rejected(Rejection { refetch: true, provider: Some(p), .. }) = i {
                self.material.sched.request_refetch(Source::Jwks(*p));
            }
        })?;
        let complete = self.check_revocation(&verified.identity, now, on_stale)?;
        // Only a fully checked result may be reused: not one that skipped a stale feed.
        if complete {
            self.cache.remember(&verified, now);
        }
        Ok(verified)
    }

    /// Fails with `revocations_stale` if the route is fail-closed and the feed is missing or past
    /// its `exp`. Returns whether the feed is fresh (`true` also when no feed is configured).
    fn feed_freshness(&self, on_stale: StalePolicy, now: UnixTime) -> Result<bool, ErrorCode> {
        if self.config.revocations.is_none() {
            return Ok(true);
        }
        let fresh = self.material.revocations.as_ref().is_some_and(|f| now.secs() <= f.exp);
        if !fresh && on_stale == StalePolicy::FailClosed {
            return Err(ErrorCode::RevocationsStale);
        }
        Ok(fresh)
    }

    /// The feed's verdict on a verified identity. A fail-open route with a stale feed still
    /// honours the lists it last saw (revoked stays revoked) but not the watermark. Returns
    /// whether the check was complete.
    fn check_revocation(&self, identity: &Identity, now: UnixTime, on_stale: StalePolicy) -> Result<bool, ErrorCode> {
        let fresh = self.feed_freshness(on_stale, now)?;
        if let Some(feed) = &self.material.revocations {
            feed.check(identity, fresh)?;
        }
        Ok(fresh)
    }

    /// The `cookie` header without the configured auth cookies (access token, CSRF token), so
    /// an upstream never receives them; removed whole when nothing else is left.
    fn strip_cookies(&self, cookie_headers: &[&str], remove: &mut Vec<Cow<'static, str>>) -> Vec<(&'static str, String)> {
        let Some(cc) = &self.config.cookie else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        let mut dropped = false;
        for header in cookie_headers {
            // `,` too: the Fetch API joins repeated `cookie` fields with it (see `cookie::pairs`).
            for part in header.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()) {
                let name = part.split_once('=').map_or(part, |(k, _)| k).trim();
                if name == cc.name || name == cc.csrf_cookie {
                    dropped = true;
                } else {
                    kept.push(part);
                }
            }
        }
        if !dropped {
            return Vec::new();
        }
        if kept.is_empty() {
            remove.push(Cow::Borrowed("cookie"));
            return Vec::new();
        }
        vec![("cookie", kept.join("; "))]
    }

    // ----- material -----------------------------------------------------------------------

    /// The fetched sources, with their URLs and cache keys.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.material.sources
    }

    /// The next fetch the host should start now, if any. Call it after every `decide` batch,
    /// timer tick and fetch completion; it hands out each source at most once at a time, and
    /// the feed only once the keys that sign it have been fetched (or failed) once.
    pub fn poll_fetch(&mut self, now: UnixTime) -> Option<FetchRequest> {
        self.material.poll_fetch(now)
    }

    /// Hands in the answer to a fetch from `poll_fetch`; see `poll_event` for what it did.
    pub fn handle_fetch(&mut self, id: FetchId, response: FetchResponse<'_>, now: UnixTime) {
        self.material.handle_fetch(id, response, now, &mut self.verifier, &mut self.cache)
    }

    /// The host could not complete the fetch (connection error, its own timeout).
    pub fn fetch_failed(&mut self, id: FetchId, now: UnixTime) {
        self.material.fetch_failed(id, now)
    }

    /// Applies material fetched elsewhere: by another worker VM (shared data), from a cache, from
    /// a file. `fetched_at` is when it was fetched; the own schedule is deferred accordingly.
    pub fn apply_material(&mut self, source: Source, body: &[u8], fetched_at: UnixTime, now: UnixTime) {
        self.material.apply_material(source, body, fetched_at, now, &mut self.verifier, &mut self.cache)
    }

    /// What happened to material since the last call, oldest first.
    pub fn poll_event(&mut self) -> Option<MaterialEvent> {
        self.material.poll_event()
    }

    /// When the host should call `poll_fetch` next, if nothing happens before.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        self.material.sched.next_wakeup()
    }

    /// Asks for a refetch of `source` as an unknown `kid` does: due at once unless a forced
    /// refetch of it happened within `fetch.unknown_kid_cooldown_s`. For hosts where several
    /// gateway instances share one fetcher: the fetcher calls this with the requests the other
    /// instances forward (see [`Gateway::take_refetch_requests`]).
    pub fn request_refetch(&mut self, source: Source) {
        self.material.sched.request_refetch(source);
    }

    /// Takes the refetch requests `decide` raised since the last call (unknown `kid`, keys not
    /// fetched yet), clearing them. For an instance that does not fetch itself (it never calls
    /// `poll_fetch`) and forwards them to the one that does.
    pub fn take_refetch_requests(&mut self) -> Vec<Source> {
        self.material.sched.take_refetch_requests()
    }

    /// Tells an instance that does not fetch itself that the instance fetching for it failed
    /// to fetch `source` (a failure event of its own): material it lacks is not on its way, so
    /// the cold-start rule stops holding requests for it.
    pub fn fetch_failed_elsewhere(&mut self, source: Source) {
        self.material.sched.note_failed_elsewhere(source);
    }

    /// Every fetched source has material.
    pub fn is_ready(&self) -> bool {
        self.material.is_ready(&self.verifier)
    }

    /// Material and cache state.
    pub fn status(&self) -> GatewayStatus {
        let feed = self.material.revocations.as_ref();
        GatewayStatus {
            sources: self
                .material
                .sources
                .iter()
                .map(|info| {
                    let state = self.material.sched.state(info.source);
                    SourceStatus {
                        source: info.source,
                        url: info.url.to_string(),
                        last_success: state.and_then(|s| s.last_success),
                        consecutive_failures: state.map_or(0, |s| s.failures),
                        has_material: match info.source {
                            Source::Jwks(p) => self.verifier.providers[p].fetched.is_some(),
                            Source::Revocations => feed.is_some(),
                        },
                    }
                })
                .collect(),
            feed_version: feed.map(|f| f.ver),
            feed_expires_at: feed.map(|f| UnixTime::from_secs(f.exp)),
            feed_watermark: feed.map(|f| UnixTime::from_secs(f.watermark)),
            revoked_entries: feed.map_or(0, |f| f.entry_count()),
            cached_tokens: self.cache.len(),
        }
    }
}

/// Whether a verified identity meets a route's requirement: every non-empty list.
fn authorize(require: &Requirement, identity: &Identity) -> Result<(), ErrorCode> {
    let Requirement::Rules(rules) = require else {
        return Ok(());
    };
    if !rules.orgs.is_empty() && !identity.org.as_ref().is_some_and(|o| rules.orgs.contains(o)) {
        return Err(ErrorCode::OrgNotAllowed);
    }
    let has = |r: &String| identity.roles().any(|x| x == r);
    if !rules.any_role.is_empty() && !rules.any_role.iter().any(has) {
        return Err(ErrorCode::InsufficientRole);
    }
    if !rules.all_roles.iter().all(has) {
        return Err(ErrorCode::InsufficientRole);
    }
    if !rules.scopes.iter().all(|s| identity.scopes().any(|x| x == s)) {
        return Err(ErrorCode::InsufficientScope);
    }
    Ok(())
}

/// The `www-authenticate` challenge for a denial (RFC 6750 §3 for bearer routes).
fn challenge(code: ErrorCode, route: &Route) -> Option<String> {
    let realm = "realm=\"authgate\"";
    if !route.accepts_jwt {
        return code.is_unauthenticated().then(|| format!("ApiKey {realm}"));
    }
    match code {
        ErrorCode::CredentialMissing => Some(format!("Bearer {realm}")),
        ErrorCode::InsufficientScope => {
            let scope = match &route.require {
                Requirement::Rules(r) => r.scopes.join(" "),
                _ => String::new(),
            };
            Some(format!("Bearer {realm}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"", code.description()))
        }
        ErrorCode::ConflictingCredentials => {
            Some(format!("Bearer {realm}, error=\"invalid_request\", error_description=\"{}\"", code.description()))
        }
        c if c.is_unauthenticated() => Some(format!("Bearer {realm}, error=\"invalid_token\", error_description=\"{}\"", c.description())),
        _ => None,
    }
}
