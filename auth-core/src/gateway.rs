//! The gateway state machine: validated config, key sets, the applied revocation feed, the
//! token cache and the fetch schedule. Hosts call [`Gateway::decide`] per request and drive
//! [`Gateway::poll_fetch`] / [`Gateway::handle_fetch`] with whatever IO they have.

use std::borrow::Cow;
use std::sync::Arc;

use crate::apikey::{self, HmacKeyRing};
use crate::b64;
use crate::cache::{CachedToken, TokenCache};
use crate::config::{Alg, GatewayConfig, HeaderNames, Requirement, StalePolicy};
use crate::cookie::CsrfEvidence;
use crate::decision::{sanitize_id, Allow, Decision, Deny, Identity, Request};
use crate::error::{ConfigError, ErrorCode};
use crate::fetch::{FetchId, FetchRequest, Scheduler, Source};
use crate::formats::RevocationFeedClaims;
use crate::jwt::{self, Claims, FEED_TYP};
use crate::keys::{Key, KeyOrigin, KeySet};
use crate::revocation::RevocationState;
use crate::route::{canonical_path, Route};
use crate::CredentialKind;

/// Largest revocation feed accepted, in bytes.
const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;
/// Largest JWKS accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

struct Provider {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    skew: i64,
    typ: Option<Vec<String>>,
    inline: KeySet,
    fetched: Option<KeySet>,
    has_uri: bool,
}

/// Why fetched material was not applied. Codes are stable, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaterialError {
    /// The answer is for no fetch in flight (late, duplicate, or unknown id).
    UnknownFetch,
    /// The server answered with this HTTP status.
    HttpStatus(u16),
    /// The fetch failed in transport (connection refused, timeout) — reported by the host.
    Transport,
    /// The JWKS could not be used.
    Jwks(String),
    /// The feed is not a valid signed feed.
    FeedInvalid(&'static str),
    /// The feed's signing key is not known yet; it is kept and applied once the keys arrive.
    FeedKeysUnavailable,
    /// The feed is older than the one applied (a rollback).
    FeedRollback { applied: u64, received: u64 },
}

impl MaterialError {
    pub fn code(&self) -> &'static str {
        match self {
            MaterialError::UnknownFetch => "unknown_fetch",
            MaterialError::HttpStatus(_) => "http_status",
            MaterialError::Transport => "transport",
            MaterialError::Jwks(_) => "jwks_invalid",
            MaterialError::FeedInvalid(_) => "feed_invalid",
            MaterialError::FeedKeysUnavailable => "feed_keys_unavailable",
            MaterialError::FeedRollback { .. } => "feed_rollback",
        }
    }
}

impl core::fmt::Display for MaterialError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MaterialError::HttpStatus(s) => write!(f, "http_status: {s}"),
            MaterialError::Jwks(m) => write!(f, "jwks_invalid: {m}"),
            MaterialError::FeedInvalid(m) => write!(f, "feed_invalid: {m}"),
            MaterialError::FeedRollback { applied, received } => {
                write!(f, "feed_rollback: have version {applied}, got {received}")
            }
            other => f.write_str(other.code()),
        }
    }
}

/// What a fetch answer changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// New material is in use (the token cache was flushed if it could matter).
    Updated,
    /// Valid, but the same as what was in use.
    Unchanged,
    /// `304 Not Modified`: what is in use is still current.
    NotModified,
}

/// An answer to a [`FetchRequest`].
#[derive(Clone, Copy, Debug)]
pub struct FetchResponse<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub etag: Option<&'a str>,
}

/// Material state, for metrics, health endpoints and `authgate` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: Source,
    pub url: String,
    pub last_success: Option<i64>,
    pub consecutive_failures: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayStatus {
    pub sources: Vec<SourceStatus>,
    pub feed_version: Option<u64>,
    pub feed_expires_at: Option<i64>,
    pub feed_watermark: Option<i64>,
    pub revoked_entries: usize,
    pub cached_tokens: usize,
}

enum Credential<'a> {
    Bearer(&'a str),
    ApiKey { key_id: &'a str, secret: &'a str },
}

/// Key availability of a provider at a given time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// Inline keys only, or fetched keys within the stale bound.
    Usable,
    /// Fetched keys older than the stale bound.
    Stale,
    /// Never fetched.
    Missing,
}

/// The sans-IO gateway. See the crate docs for the host loop.
pub struct Gateway {
    config: GatewayConfig,
    providers: Vec<Provider>,
    feed_provider: Option<usize>,
    hmac: HmacKeyRing,
    revocations: Option<RevocationState>,
    pending_feed: Option<Vec<u8>>,
    sched: Scheduler,
    cache: TokenCache,
    routes: Arc<[Route]>,
    names: Arc<HeaderNames>,
    /// Identity header names not covered by `strip_prefix`, stripped as well.
    extra_strip: Vec<String>,
}

impl Gateway {
    /// Parses and validates a JSON config.
    pub fn from_json(bytes: &[u8]) -> Result<Gateway, ConfigError> {
        Gateway::new(GatewayConfig::from_json(bytes)?)
    }

    /// Validates a config and builds the gateway. Errors name the field.
    pub fn new(config: GatewayConfig) -> Result<Gateway, ConfigError> {
        if config.routes.is_empty() {
            return Err(ConfigError::new("routes", "at least one route is required"));
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let at = |field: &str| format!("routes[{i}]{field}");
            let pattern = match (&r.prefix, &r.path) {
                (Some(p), None) => (p, ".prefix"),
                (None, Some(p)) => (p, ".path"),
                _ => return Err(ConfigError::new(at(""), "set exactly one of prefix and path")),
            };
            if canonical_path(pattern.0).as_deref() != Some(pattern.0.as_str()) {
                return Err(ConfigError::new(at(pattern.1), "must be a canonical path starting with /"));
            }
            if let Some(methods) = &r.methods {
                if methods.is_empty() {
                    return Err(ConfigError::new(at(".methods"), "must not be empty (omit it to match every method)"));
                }
                for (j, m) in methods.iter().enumerate() {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                        return Err(ConfigError::new(at(&format!(".methods[{j}]")), "not an HTTP method"));
                    }
                }
            }
            if let Requirement::Rules(rules) = &r.require {
                if rules.any_role.is_empty() && rules.all_roles.is_empty() && rules.scopes.is_empty() {
                    return Err(ConfigError::new(at(".require"), "name at least one of any_role, all_roles, scopes"));
                }
                for (field, list) in [("any_role", &rules.any_role), ("all_roles", &rules.all_roles), ("scopes", &rules.scopes)] {
                    if let Some(j) = list.iter().position(|v| !jwt::token_safe(v)) {
                        return Err(ConfigError::new(at(&format!(".require.{field}[{j}]")), "must be visible ASCII without commas"));
                    }
                }
            }
            if r.credentials.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(ConfigError::new(at(".credentials"), "must not be empty (omit it to accept both kinds)"));
            }
            routes.push(Route::compile(r));
        }

        let mut providers = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.iter().enumerate() {
            let at = |field: &str| format!("providers[{i}]{field}");
            if p.issuer.is_empty() {
                return Err(ConfigError::new(at(".issuer"), "must not be empty"));
            }
            if config.providers[..i].iter().any(|q| q.issuer == p.issuer) {
                return Err(ConfigError::new(at(".issuer"), "duplicate issuer"));
            }
            if p.audiences.is_empty() || p.audiences.iter().any(|a| a.is_empty()) {
                return Err(ConfigError::new(at(".audiences"), "list at least one non-empty audience"));
            }
            if p.algorithms.is_empty() {
                return Err(ConfigError::new(at(".algorithms"), "list at least one algorithm"));
            }
            if p.clock_skew_s > 300 {
                return Err(ConfigError::new(at(".clock_skew_s"), "at most 300 seconds"));
            }
            if p.typ.as_ref().is_some_and(|t| t.is_empty() || t.iter().any(|s| s.is_empty())) {
                return Err(ConfigError::new(at(".typ"), "list at least one non-empty typ (omit it to accept any)"));
            }
            if p.jwks.is_none() && p.jwks_uri.is_none() {
                return Err(ConfigError::new(at(""), "set jwks, jwks_uri or both"));
            }
            if let Some(uri) = &p.jwks_uri {
                check_url(uri).map_err(|m| ConfigError::new(at(".jwks_uri"), m))?;
            }
            let inline = match &p.jwks {
                Some(v) => KeySet::from_value(v, KeyOrigin::Inline).map_err(|e| {
                    let path = if e.path == "." { at(".jwks") } else { at(&format!(".jwks.{}", e.path)) };
                    ConfigError::new(path, e.message)
                })?,
                None => KeySet::default(),
            };
            providers.push(Provider {
                issuer: p.issuer.clone(),
                audiences: p.audiences.clone(),
                algorithms: p.algorithms.clone(),
                skew: p.clock_skew_s as i64,
                typ: p.typ.clone(),
                inline,
                fetched: None,
                has_uri: p.jwks_uri.is_some(),
            });
        }

        let mut hmac_pairs = Vec::new();
        if let Some(ak) = &config.api_keys {
            for (i, k) in ak.hmac_keys.iter().enumerate() {
                let at = |field: &str| format!("api_keys.hmac_keys[{i}].{field}");
                if k.kid.is_empty() || k.kid.len() > 64 {
                    return Err(ConfigError::new(at("kid"), "1 to 64 characters"));
                }
                if ak.hmac_keys[..i].iter().any(|o| o.kid == k.kid) {
                    return Err(ConfigError::new(at("kid"), "duplicate kid"));
                }
                let secret = b64::decode(k.secret.as_bytes()).ok_or_else(|| ConfigError::new(at("secret"), "not base64url without padding"))?;
                if secret.len() < 32 {
                    return Err(ConfigError::new(at("secret"), "at least 32 bytes once decoded"));
                }
                hmac_pairs.push((k.kid.clone(), secret));
            }
        }
        let hmac = HmacKeyRing::new(hmac_pairs.iter().map(|(k, s)| (k.as_str(), s.as_slice())));

        if providers.is_empty() && hmac.is_empty() && config.routes.iter().any(|r| r.require != Requirement::Anonymous) {
            return Err(ConfigError::new("providers", "no provider and no api_keys: no credential could ever be verified"));
        }

        let f = &config.fetch;
        if f.jwks_refresh_s == 0 || f.timeout_s == 0 || f.retry_min_s == 0 {
            return Err(ConfigError::new("fetch", "jwks_refresh_s, timeout_s and retry_min_s must be at least 1"));
        }
        if f.retry_max_s < f.retry_min_s {
            return Err(ConfigError::new("fetch.retry_max_s", "must be at least retry_min_s"));
        }
        if config.cache.max_entries > 1_000_000 {
            return Err(ConfigError::new("cache.max_entries", "at most 1000000"));
        }
        if !(512..=1_048_576).contains(&config.limits.max_token_bytes) {
            return Err(ConfigError::new("limits.max_token_bytes", "between 512 and 1048576"));
        }
        let names = &config.headers;
        if names.strip_prefix.is_empty() || !is_header_name(&names.strip_prefix) {
            return Err(ConfigError::new("headers.strip_prefix", "must be a non-empty lowercase header name prefix"));
        }
        let mut extra_strip = Vec::new();
        for (field, name) in header_name_fields(names) {
            if !is_header_name(name) {
                return Err(ConfigError::new(format!("headers.{field}"), "must be a lowercase header name"));
            }
            if !name.starts_with(&names.strip_prefix) {
                extra_strip.push(name.to_string());
            }
        }

        if let Some(cookie) = &config.cookie {
            crate::cookie::validate(cookie, is_header_name, &names.strip_prefix)?;
        }

        let mut sched = Scheduler::new(config.fetch.clone());
        for (i, p) in config.providers.iter().enumerate() {
            if let Some(uri) = &p.jwks_uri {
                sched.add(Source::Jwks(i), uri.clone(), config.fetch.jwks_refresh_s);
            }
        }
        let mut feed_provider = None;
        if let Some(rev) = &config.revocations {
            check_url(&rev.uri).map_err(|m| ConfigError::new("revocations.uri", m))?;
            if !(1..=3600).contains(&rev.refresh_s) {
                return Err(ConfigError::new("revocations.refresh_s", "between 1 and 3600 seconds"));
            }
            let issuer = match &rev.issuer {
                Some(iss) => iss.as_str(),
                None => config.providers.first().map(|p| p.issuer.as_str()).ok_or_else(|| {
                    ConfigError::new("revocations", "the feed is verified with a provider's keys: configure that provider")
                })?,
            };
            let index = providers
                .iter()
                .position(|p| p.issuer == issuer)
                .ok_or_else(|| ConfigError::new("revocations.issuer", "no provider has this issuer"))?;
            if let Some(cred) = &rev.credential {
                if !cred.key_id.starts_with(apikey::KEY_ID_PREFIX) || cred.secret.is_empty() {
                    return Err(ConfigError::new("revocations.credential", "key_id must start with agk_ and secret be set"));
                }
            }
            feed_provider = Some(index);
            sched.add(Source::Revocations, rev.uri.clone(), rev.refresh_s);
        }

        Ok(Gateway {
            names: Arc::new(config.headers.clone()),
            cache: TokenCache::new(config.cache.max_entries),
            config,
            providers,
            feed_provider,
            hmac,
            revocations: None,
            pending_feed: None,
            sched,
            routes: routes.into(),
            extra_strip,
        })
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Sets the credential the feed is fetched with (hosts that keep it in a secret store).
    pub fn set_feed_credential(&mut self, key_id: String, secret: String) {
        if let Some(rev) = &mut self.config.revocations {
            rev.credential = Some(crate::config::FeedCredential { key_id, secret });
        }
    }

    // ----- request path -----------------------------------------------------------------

    /// Decides one request. `now` is unix seconds; `request_id` becomes `x-error-id` on denial.
    /// Never panics, whatever the input.
    pub fn decide(&mut self, req: &Request<'_>, now: i64, request_id: &str) -> Decision {
        let mut remove: Vec<Cow<'static, str>> = Vec::new();
        let (mut auth, mut key, mut secret) = (Seen::default(), Seen::default(), Seen::default());
        let cookie_cfg = self.config.cookie.as_ref();
        let (mut cookie_token, mut csrf) = (Seen::default(), CsrfEvidence::default());
        for (name, value) in req.headers {
            if header_starts_with(name, &self.names.strip_prefix)
                || self.extra_strip.iter().any(|n| header_name_matches(name, n))
            {
                remove.push(Cow::Owned(name.to_ascii_lowercase()));
            } else if let Some(cc) = cookie_cfg.filter(|cc| is_cookie_related(name, &cc.csrf_header)) {
                if name.eq_ignore_ascii_case("cookie") {
                    for (k, v) in crate::cookie::pairs(value) {
                        if k == cc.name {
                            cookie_token.add(v);
                        } else if k == cc.csrf_cookie {
                            csrf.cookie.push(v);
                        }
                    }
                } else if name.eq_ignore_ascii_case("origin") {
                    csrf.origin = Some(value);
                } else {
                    csrf.header.push(value);
                }
            } else {
                // Intermediaries (Envoy, the Fetch API) merge repeated fields into one
                // comma-joined value: split it back so two credentials stay two.
                let seen = if name.eq_ignore_ascii_case("authorization") {
                    &mut auth
                } else if name.eq_ignore_ascii_case("x-api-key") {
                    &mut key
                } else if name.eq_ignore_ascii_case("x-api-secret") {
                    &mut secret
                } else {
                    continue;
                };
                for part in crate::coalesce::credential_values(name, value) {
                    seen.add(part);
                }
            }
        }
        let deny = |code: ErrorCode, route: Option<&Route>, remove: Vec<Cow<'static, str>>| {
            Decision::Deny(Deny {
                code,
                error_id: sanitize_id(request_id),
                www_authenticate: route.and_then(|r| challenge(code, r)),
                remove_headers: remove,
            })
        };

        let Some(path) = canonical_path(req.path) else { return deny(ErrorCode::InvalidPath, None, remove) };
        let Some(index) = self.routes.iter().position(|r| r.matches(req.method, &path)) else {
            return deny(ErrorCode::NoMatchingRoute, None, remove);
        };
        let routes = self.routes.clone();
        let route = &routes[index];
        if route.require == Requirement::Anonymous {
            return Decision::Allow(Allow { identity: None, remove_headers: remove, names: self.names.clone(), route: index, cache_hit: false });
        }
        let credential = match extract_credential(auth, key, secret) {
            Ok(Some(c)) => c,
            // A header credential is the client's explicit choice; a cookie is only looked at
            // without one.
            Ok(None) => match (cookie_cfg, cookie_token.first) {
                (Some(cc), Some(token)) if !token.is_empty() => {
                    if cookie_token.count > 1 {
                        return deny(ErrorCode::ConflictingCredentials, Some(route), remove);
                    }
                    if crate::cookie::needs_csrf(req.method) {
                        if let Err(code) = csrf.check(cc) {
                            return deny(code, Some(route), remove);
                        }
                    }
                    Credential::Bearer(token)
                }
                _ => return deny(ErrorCode::CredentialMissing, Some(route), remove),
            },
            Err(code) => return deny(code, Some(route), remove),
        };
        let verified = match credential {
            Credential::Bearer(_) if !route.accepts_jwt => Err(ErrorCode::CredentialNotAccepted),
            Credential::ApiKey { .. } if !route.accepts_api_key => Err(ErrorCode::CredentialNotAccepted),
            Credential::Bearer(token) => self.verify_jwt(token, route, now),
            Credential::ApiKey { key_id, secret } => self.verify_api_key(key_id, secret, route, now).map(|id| (id, false)),
        };
        let (identity, cache_hit) = match verified {
            Ok(v) => v,
            Err(code) => return deny(code, Some(route), remove),
        };
        if let Err(code) = authorize(&route.require, &identity) {
            return deny(code, Some(route), remove);
        }
        if route.strip_credential {
            remove.extend(["authorization", "x-api-key", "x-api-secret"].map(Cow::Borrowed));
        }
        Decision::Allow(Allow { identity: Some(identity), remove_headers: remove, names: self.names.clone(), route: index, cache_hit })
    }

    fn key_state(&self, provider: usize, now: i64) -> KeyState {
        let p = &self.providers[provider];
        if !p.has_uri {
            return KeyState::Usable;
        }
        if p.fetched.is_none() {
            return KeyState::Missing;
        }
        let last = self.sched.state(Source::Jwks(provider)).and_then(|s| s.last_success);
        match last {
            Some(t) if now.saturating_sub(t) <= self.config.fetch.jwks_max_stale_s as i64 => KeyState::Usable,
            _ => KeyState::Stale,
        }
    }

    fn verify_jwt(&mut self, token: &str, route: &Route, now: i64) -> Result<(Arc<Identity>, bool), ErrorCode> {
        let max_len = self.config.limits.max_token_bytes;
        if token.len() > max_len {
            return Err(ErrorCode::TokenTooLarge);
        }
        let cache_key = self.cache.enabled().then(|| TokenCache::hash(token));
        if let Some(hit) = cache_key.as_ref().and_then(|k| self.cache.get(k, now)).cloned() {
            if self.key_state(hit.provider, now) == KeyState::Stale && route.on_stale == StalePolicy::FailClosed {
                return Err(ErrorCode::KeysUnavailable);
            }
            self.feed_freshness(route, now)?;
            return Ok((hit.identity, true));
        }

        let jws = jwt::parse_jws(token, max_len)?;
        let mut claims: Claims = jwt::decode_payload(jws.payload_b64, ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)?;
        let issuer = claims.iss.as_deref().ok_or(ErrorCode::IssuerUnknown)?;
        let pi = self.providers.iter().position(|p| p.issuer == issuer).ok_or(ErrorCode::IssuerUnknown)?;
        let provider = &self.providers[pi];
        if !provider.algorithms.contains(&jws.alg) {
            return Err(ErrorCode::AlgNotAllowed);
        }
        match (&jws.typ, &provider.typ) {
            (Some(t), _) if jwt::typ_matches(t, FEED_TYP) => return Err(ErrorCode::TypNotAllowed),
            (_, Some(accepted)) => {
                let ok = jws.typ.as_deref().is_some_and(|t| accepted.iter().any(|a| jwt::typ_matches(t, a)));
                if !ok {
                    return Err(ErrorCode::TypNotAllowed);
                }
            }
            _ => {}
        }
        let state = self.key_state(pi, now);
        if state == KeyState::Stale && route.on_stale == StalePolicy::FailClosed {
            return Err(ErrorCode::KeysUnavailable);
        }
        match verify_signature(provider, &jws) {
            Ok(()) => {}
            Err(SigError::Code(code)) => return Err(code),
            Err(SigError::NoKey) => {
                if provider.has_uri {
                    self.sched.request_refetch(Source::Jwks(pi));
                }
                return Err(if state == KeyState::Missing { ErrorCode::KeysUnavailable } else { ErrorCode::UnknownKid });
            }
        }
        let provider = &self.providers[pi];
        let exp = claims.exp.ok_or(ErrorCode::ClaimsInvalid)?;
        if now > exp.saturating_add(provider.skew) {
            return Err(ErrorCode::TokenExpired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(provider.skew)) {
            return Err(ErrorCode::TokenNotYetValid);
        }
        if !claims.aud.as_ref().is_some_and(|aud| aud.contains_any(&provider.audiences)) {
            return Err(ErrorCode::AudienceMismatch);
        }
        let subject = claims.sub.as_deref().filter(|s| jwt::header_safe(s)).ok_or(ErrorCode::ClaimsInvalid)?;
        for v in [&claims.org, &claims.email, &claims.sid, &claims.client_id].into_iter().flatten() {
            if !jwt::header_safe(v) {
                return Err(ErrorCode::ClaimsInvalid);
            }
        }
        let roles = claims.roles.take().unwrap_or_default();
        if !roles.iter().all(|r| jwt::token_safe(r)) {
            return Err(ErrorCode::ClaimsInvalid);
        }
        let scopes: Vec<String> = claims.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
        if !scopes.iter().all(|s| jwt::token_safe(s)) {
            return Err(ErrorCode::ClaimsInvalid);
        }
        let complete = self.check_revocation(
            route,
            now,
            subject,
            claims.iat,
            |feed| {
                if claims.jti.as_deref().is_some_and(|j| feed.jti_revoked(j)) {
                    return Err(ErrorCode::TokenRevoked);
                }
                if claims.sid.as_deref().is_some_and(|s| feed.sid_revoked(s)) {
                    return Err(ErrorCode::SessionRevoked);
                }
                Ok(())
            },
        )?;
        let identity = Arc::new(Identity {
            method: CredentialKind::Jwt,
            subject: subject.to_string(),
            org: claims.org,
            email: claims.email,
            roles_header: roles.join(","),
            scope_header: scopes.join(" "),
            roles,
            scopes,
            session_id: claims.sid,
            key_id: None,
            issuer: claims.iss,
            client_id: claims.client_id,
            token_id: claims.jti,
            issued_at: claims.iat,
            expires_at: Some(exp),
            claims_b64: jws.payload_b64.to_string(),
        });
        // Only a fully checked result may be reused: not one that skipped a stale feed.
        if complete && state == KeyState::Usable {
            if let Some(key) = cache_key {
                self.cache.insert(key, CachedToken { identity: identity.clone(), provider: pi, expires_at: exp }, now);
            }
        }
        Ok((identity, false))
    }

    fn verify_api_key(&mut self, key_id: &str, secret: &str, route: &Route, now: i64) -> Result<Arc<Identity>, ErrorCode> {
        if self.hmac.is_empty() {
            return Err(ErrorCode::ApiKeyUnknownKid);
        }
        let claims = self.hmac.verify(key_id, secret, self.config.limits.max_token_bytes)?;
        if claims.exp.is_some_and(|exp| now >= exp) {
            return Err(ErrorCode::ApiKeyExpired);
        }
        if !jwt::header_safe(&claims.sub)
            || !jwt::header_safe(&claims.id)
            || claims.org.as_deref().is_some_and(|o| !jwt::header_safe(o))
            || !claims.roles.iter().all(|r| jwt::token_safe(r))
        {
            return Err(ErrorCode::ClaimsInvalid);
        }
        self.check_revocation(route, now, &claims.sub, Some(claims.iat), |feed| {
            if feed.api_key_revoked(&claims.id) {
                return Err(ErrorCode::ApiKeyRevoked);
            }
            if claims.iat > feed.watermark {
                return Err(ErrorCode::ApiKeyPending);
            }
            Ok(())
        })?;
        Ok(Arc::new(Identity {
            method: CredentialKind::ApiKey,
            subject: claims.sub,
            org: claims.org,
            email: None,
            roles_header: claims.roles.join(","),
            scope_header: String::new(),
            roles: claims.roles,
            scopes: Vec::new(),
            session_id: None,
            key_id: Some(claims.id),
            issuer: None,
            client_id: None,
            token_id: None,
            issued_at: Some(claims.iat),
            expires_at: claims.exp,
            claims_b64: key_id[apikey::KEY_ID_PREFIX.len()..].to_string(),
        }))
    }

    /// Fails with `revocations_stale` if the route is fail-closed and the feed is missing or past
    /// its `exp`. Returns whether the feed is fresh (`true` also when no feed is configured).
    fn feed_freshness(&self, route: &Route, now: i64) -> Result<bool, ErrorCode> {
        if self.config.revocations.is_none() {
            return Ok(true);
        }
        let fresh = self.revocations.as_ref().is_some_and(|f| now <= f.exp);
        if !fresh && route.on_stale == StalePolicy::FailClosed {
            return Err(ErrorCode::RevocationsStale);
        }
        Ok(fresh)
    }

    /// Applies the feed: subject cut-offs, then the credential-specific lists in `specific`.
    /// A fail-open route with a stale feed still honours the lists it last saw (revoked stays
    /// revoked) but not the watermark. Returns whether the check was complete.
    fn check_revocation(
        &self,
        route: &Route,
        now: i64,
        sub: &str,
        iat: Option<i64>,
        specific: impl Fn(&RevocationState) -> Result<(), ErrorCode>,
    ) -> Result<bool, ErrorCode> {
        let fresh = self.feed_freshness(route, now)?;
        if let Some(feed) = &self.revocations {
            match specific(feed) {
                Err(ErrorCode::ApiKeyPending) if !fresh => {}
                Err(code) => return Err(code),
                Ok(()) => {}
            }
            if feed.subject_revoked(sub, iat) {
                return Err(ErrorCode::SubjectRevoked);
            }
        }
        Ok(fresh)
    }

    // ----- material -----------------------------------------------------------------------

    /// The next fetch the host should start now, if any. Call it after every `decide` batch,
    /// timer tick and fetch completion; it hands out each source at most once at a time.
    pub fn poll_fetch(&mut self, now: i64) -> Option<FetchRequest> {
        let credential = self.config.revocations.as_ref().and_then(|r| r.credential.clone());
        let timeout_s = self.config.fetch.timeout_s;
        let (id, state) = self.sched.poll(now)?;
        let mut headers = vec![(
            "accept".to_string(),
            match state.source {
                Source::Jwks(_) => "application/jwk-set+json, application/json".to_string(),
                Source::Revocations => "application/jwt".to_string(),
            },
        )];
        if let Some(etag) = &state.etag {
            headers.push(("if-none-match".to_string(), etag.clone()));
        }
        if state.source == Source::Revocations {
            if let Some(c) = credential {
                headers.push(("x-api-key".to_string(), c.key_id));
                headers.push(("x-api-secret".to_string(), c.secret));
            }
        }
        Some(FetchRequest { id, source: state.source, url: state.url.clone(), headers, timeout_s })
    }

    /// Asks for a refetch of `source` as an unknown `kid` does: due at once unless a forced
    /// refetch of it happened within `fetch.unknown_kid_cooldown_s`. For hosts where several
    /// gateway instances share one fetcher: the fetcher calls this with the requests the other
    /// instances forward (see [`Gateway::take_refetch_requests`]).
    pub fn request_refetch(&mut self, source: Source) {
        self.sched.request_refetch(source);
    }

    /// Takes the refetch requests `decide` raised since the last call (unknown `kid`, keys not
    /// fetched yet), clearing them. For an instance that does not fetch itself (it never calls
    /// `poll_fetch`) and forwards them to the one that does.
    pub fn take_refetch_requests(&mut self) -> Vec<Source> {
        self.sched.take_refetch_requests()
    }

    /// When the host should call `poll_fetch` next (unix seconds), if nothing happens before.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.sched.next_wakeup()
    }

    /// Hands in the answer to a fetch from `poll_fetch`.
    pub fn handle_fetch(&mut self, id: FetchId, response: FetchResponse<'_>, now: i64) -> Result<Applied, MaterialError> {
        let Some(source) = self.sched.in_flight(id) else {
            return Err(MaterialError::UnknownFetch);
        };
        let result = match response.status {
            200 => self.apply(source, response.body, now),
            304 if self.has_material(source) => Ok(Applied::NotModified),
            status => Err(MaterialError::HttpStatus(status)),
        };
        let success = result.is_ok();
        self.sched.complete(id, success, now);
        if response.status == 200 && success {
            self.sched.set_etag(source, response.etag.filter(|e| e.len() <= 256 && jwt::header_safe(e)).map(str::to_string));
        }
        result
    }

    /// The host could not complete the fetch (connection error, its own timeout).
    pub fn fetch_failed(&mut self, id: FetchId, now: i64) {
        self.sched.complete(id, false, now);
    }

    /// Applies material fetched elsewhere: by another worker VM (shared data) or from a cache.
    /// `fetched_at` is when it was fetched; the own schedule is deferred accordingly.
    pub fn apply_material(&mut self, source: Source, body: &[u8], fetched_at: i64, now: i64) -> Result<Applied, MaterialError> {
        let applied = self.apply(source, body, now)?;
        self.sched.note_applied(source, fetched_at.min(now));
        Ok(applied)
    }

    fn has_material(&self, source: Source) -> bool {
        match source {
            Source::Jwks(i) => self.providers.get(i).is_some_and(|p| p.fetched.is_some()),
            Source::Revocations => self.revocations.is_some(),
        }
    }

    fn apply(&mut self, source: Source, body: &[u8], now: i64) -> Result<Applied, MaterialError> {
        match source {
            Source::Jwks(i) => {
                if i >= self.providers.len() {
                    return Err(MaterialError::UnknownFetch);
                }
                if body.len() > MAX_JWKS_BYTES {
                    return Err(MaterialError::Jwks("larger than 1 MiB".into()));
                }
                let set = KeySet::from_json(body, KeyOrigin::Fetched).map_err(|e| MaterialError::Jwks(e.to_string()))?;
                let changed = self.providers[i].fetched.as_ref().map(|old| old.fingerprint()) != Some(set.fingerprint());
                self.providers[i].fetched = Some(set);
                if changed {
                    // A key that left the set must not keep vouching for cached tokens.
                    self.cache.clear();
                }
                if Some(i) == self.feed_provider {
                    if let Some(pending) = self.pending_feed.take() {
                        // Errors here leave the pending feed for the next feed fetch.
                        let _ = self.apply_feed(&pending, now);
                    }
                }
                Ok(if changed { Applied::Updated } else { Applied::Unchanged })
            }
            Source::Revocations => self.apply_feed(body, now),
        }
    }

    fn apply_feed(&mut self, body: &[u8], _now: i64) -> Result<Applied, MaterialError> {
        let Some(pi) = self.feed_provider else { return Err(MaterialError::UnknownFetch) };
        if body.len() > MAX_FEED_BYTES {
            return Err(MaterialError::FeedInvalid("larger than 16 MiB"));
        }
        let text = core::str::from_utf8(body).map_err(|_| MaterialError::FeedInvalid("not UTF-8"))?.trim();
        let jws = jwt::parse_jws(text, MAX_FEED_BYTES).map_err(|_| MaterialError::FeedInvalid("not a compact JWS"))?;
        if !jws.typ.as_deref().is_some_and(|t| jwt::typ_matches(t, FEED_TYP)) {
            return Err(MaterialError::FeedInvalid("typ is not revocations+jwt"));
        }
        let provider = &self.providers[pi];
        if !provider.algorithms.contains(&jws.alg) {
            return Err(MaterialError::FeedInvalid("algorithm not allowed for the feed issuer"));
        }
        match verify_signature(provider, &jws) {
            Ok(()) => {}
            Err(SigError::NoKey) => {
                self.pending_feed = Some(text.as_bytes().to_vec());
                if provider.has_uri {
                    self.sched.request_refetch(Source::Jwks(pi));
                }
                return Err(MaterialError::FeedKeysUnavailable);
            }
            Err(SigError::Code(_)) => return Err(MaterialError::FeedInvalid("signature invalid")),
        }
        let claims: RevocationFeedClaims =
            jwt::decode_payload(jws.payload_b64, ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)
                .map_err(|_| MaterialError::FeedInvalid("claims are not a revocation feed"))?;
        if claims.iss != provider.issuer {
            return Err(MaterialError::FeedInvalid("issuer does not match"));
        }
        if let Some(current) = &self.revocations {
            if claims.ver < current.ver {
                return Err(MaterialError::FeedRollback { applied: current.ver, received: claims.ver });
            }
            if claims.ver == current.ver && claims.iat <= current.iat {
                return Ok(Applied::Unchanged);
            }
        }
        let next = RevocationState::from_claims(claims);
        let lists_changed = self.revocations.as_ref().map_or(true, |c| c.ver != next.ver);
        self.revocations = Some(next);
        self.pending_feed = None;
        if lists_changed {
            self.cache.clear();
        }
        Ok(Applied::Updated)
    }

    /// Material and cache state.
    pub fn status(&self) -> GatewayStatus {
        GatewayStatus {
            sources: self
                .sched
                .sources
                .iter()
                .map(|s| SourceStatus {
                    source: s.source,
                    url: s.url.clone(),
                    last_success: s.last_success,
                    consecutive_failures: s.failures,
                })
                .collect(),
            feed_version: self.revocations.as_ref().map(|f| f.ver),
            feed_expires_at: self.revocations.as_ref().map(|f| f.exp),
            feed_watermark: self.revocations.as_ref().map(|f| f.watermark),
            revoked_entries: self.revocations.as_ref().map_or(0, |f| f.entry_count()),
            cached_tokens: self.cache.len(),
        }
    }
}

enum SigError {
    NoKey,
    Code(ErrorCode),
}

/// Picks the key by `kid` (fetched keys first, then inline) and verifies. Without a `kid`, every
/// key of the token's algorithm is tried. The key's type fixes its algorithm: a `kid` naming a
/// key of another type is `key_alg_mismatch`, never a verification with the wrong primitive.
fn verify_signature(provider: &Provider, jws: &jwt::Jws<'_>) -> Result<(), SigError> {
    let sets = provider.fetched.iter().chain(core::iter::once(&provider.inline));
    match &jws.kid {
        Some(kid) => {
            let key: &Key = sets.clone().find_map(|s| s.by_kid(kid)).ok_or(SigError::NoKey)?;
            if key.material.alg() != jws.alg {
                return Err(SigError::Code(ErrorCode::KeyAlgMismatch));
            }
            if key.material.verify(jws.signing_input.as_bytes(), &jws.signature) {
                Ok(())
            } else {
                Err(SigError::Code(ErrorCode::SignatureInvalid))
            }
        }
        None => {
            let mut candidates = sets.flat_map(|s| s.keys.iter()).filter(|k| k.material.alg() == jws.alg).peekable();
            if candidates.peek().is_none() {
                return Err(SigError::NoKey);
            }
            if candidates.any(|k| k.material.verify(jws.signing_input.as_bytes(), &jws.signature)) {
                Ok(())
            } else {
                Err(SigError::Code(ErrorCode::SignatureInvalid))
            }
        }
    }
}

/// How often a credential header was seen, and its first value.
#[derive(Default, Clone, Copy)]
struct Seen<'a> {
    count: usize,
    first: Option<&'a str>,
}

impl<'a> Seen<'a> {
    fn add(&mut self, value: &'a str) {
        self.count += 1;
        self.first.get_or_insert(value);
    }
}

fn extract_credential<'a>(auth: Seen<'a>, key: Seen<'a>, secret: Seen<'a>) -> Result<Option<Credential<'a>>, ErrorCode> {
    if auth.count > 1 || key.count > 1 || secret.count > 1 || (auth.count == 1 && key.count + secret.count > 0) {
        return Err(ErrorCode::ConflictingCredentials);
    }
    if let Some(value) = auth.first {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return if rest.is_empty() { Err(ErrorCode::TokenMalformed) } else { Ok(Some(Credential::Bearer(rest))) };
        }
        if scheme.eq_ignore_ascii_case("apikey") {
            let (key_id, secret) = apikey::split_combined(rest).ok_or(ErrorCode::ApiKeyMalformed)?;
            return Ok(Some(Credential::ApiKey { key_id, secret }));
        }
        return Err(ErrorCode::UnsupportedScheme);
    }
    match (key.first, secret.first) {
        (Some(k), Some(s)) if !k.trim().is_empty() && !s.trim().is_empty() => {
            Ok(Some(Credential::ApiKey { key_id: k.trim(), secret: s.trim() }))
        }
        (None, None) => Ok(None),
        _ => Err(ErrorCode::ApiKeyMalformed),
    }
}

fn authorize(require: &Requirement, identity: &Identity) -> Result<(), ErrorCode> {
    let Requirement::Rules(rules) = require else { return Ok(()) };
    let has = |r: &String| identity.roles.iter().any(|x| x == r);
    if !rules.any_role.is_empty() && !rules.any_role.iter().any(has) {
        return Err(ErrorCode::InsufficientRole);
    }
    if !rules.all_roles.iter().all(has) {
        return Err(ErrorCode::InsufficientRole);
    }
    if !rules.scopes.iter().all(|s| identity.scopes.iter().any(|x| x == s)) {
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
            Some(format!(
                "Bearer {realm}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"",
                code.description()
            ))
        }
        ErrorCode::ConflictingCredentials => {
            Some(format!("Bearer {realm}, error=\"invalid_request\", error_description=\"{}\"", code.description()))
        }
        c if c.is_unauthenticated() => {
            Some(format!("Bearer {realm}, error=\"invalid_token\", error_description=\"{}\"", c.description()))
        }
        _ => None,
    }
}

fn check_url(uri: &str) -> Result<(), &'static str> {
    let rest = uri.strip_prefix("https://").or_else(|| uri.strip_prefix("http://")).ok_or("must be an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') || uri.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err("must be an http:// or https:// URL with a host");
    }
    Ok(())
}

/// Whether `decide` reads this header for cookie credentials (`cookie`, `origin`, the CSRF header).
fn is_cookie_related(name: &str, csrf_header: &str) -> bool {
    name.eq_ignore_ascii_case("cookie") || name.eq_ignore_ascii_case("origin") || name.eq_ignore_ascii_case(csrf_header)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn header_name_fields(n: &HeaderNames) -> Vec<(&'static str, &str)> {
    let mut v = vec![
        ("subject", n.subject.as_str()),
        ("org", n.org.as_str()),
        ("roles", n.roles.as_str()),
        ("method", n.method.as_str()),
        ("session", n.session.as_str()),
        ("key_id", n.key_id.as_str()),
        ("email", n.email.as_str()),
        ("scope", n.scope.as_str()),
        ("client_id", n.client_id.as_str()),
    ];
    if let Some(c) = &n.claims {
        v.push(("claims", c.as_str()));
    }
    v
}

/// Header-name comparison for stripping identity headers: case-insensitive, and `_` equal to
/// `-`, because CGI-style upstreams (WSGI, PHP, Rack) read `x_auth_subject` and
/// `x-auth-subject` as the same `HTTP_X_AUTH_SUBJECT`.
fn header_byte_eq(a: u8, b: u8) -> bool {
    let norm = |c: u8| if c == b'_' { b'-' } else { c.to_ascii_lowercase() };
    norm(a) == norm(b)
}

fn header_starts_with(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes().iter().zip(prefix.as_bytes()).all(|(a, b)| header_byte_eq(*a, *b))
}

fn header_name_matches(a: &str, b: &str) -> bool {
    a.len() == b.len() && header_starts_with(a, b)
}
