//! The verifier: credential in, identity or a typed error out. Every rule that decides whether
//! a JWT or an API key is good lives here (signature with the issuer's keys, algorithm, `typ`,
//! time claims with the issuer's skew, audience, values safe to forward), for every host: the
//! gateways call it through `decide`, the auth-server directly ([`Verifier::new`]). Revocation
//! is the caller's next step ([`crate::RevocationList`]).

use std::sync::Arc;

use crate::apikey::{self, HmacKeyRing};
use crate::cache::TokenCache;
use crate::config::{Alg, StalePolicy, VerifierConfig};
use crate::credential::Credential;
use crate::decision::Identity;
use crate::error::{ConfigError, ErrorCode};
use crate::host_crypto::{self, HostCrypto, SignatureCheck};
use crate::jwt::{self, Claims, Text, FEED_TYP};
use crate::keys::{Key, Verdict, VerificationKeys};
use crate::time::UnixTime;
use crate::CredentialKind;

/// A trusted issuer and its keys.
pub(crate) struct Provider {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub skew_s: i64,
    pub typ: Option<Vec<String>>,
    pub es256_accept_high_s: bool,
    pub inline: VerificationKeys,
    /// Keys from `jwks_uri`, once fetched, and when they were last confirmed current.
    pub fetched: Option<(VerificationKeys, UnixTime)>,
    pub has_uri: bool,
}

/// Key availability of a provider at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Inline keys only, or fetched keys within the stale bound.
    Usable,
    /// Fetched keys older than the stale bound.
    Stale,
    /// Never fetched.
    Missing,
}

/// A verified credential.
#[derive(Clone, Debug)]
pub struct Verified {
    pub identity: Arc<Identity>,
    /// Index of the issuer (`providers[i]`) for a JWT.
    pub provider: Option<usize>,
    /// Fetched keys past their stale bound were used (the route is fail-open): do not cache.
    pub stale_keys: bool,
    /// The identity came from the verified-token cache.
    pub cache_hit: bool,
    /// The token, to key the verified-token cache with (when the cache is on and this was no hit).
    pub(crate) cache_key: Option<Arc<str>>,
}

/// Why a credential was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    /// The issuer (`providers[i]`) the token named, once known.
    pub provider: Option<usize>,
    /// That issuer's JWKS should be fetched again (an unknown `kid`, keys never fetched).
    pub refetch: bool,
}

impl From<ErrorCode> for Rejection {
    fn from(code: ErrorCode) -> Rejection {
        Rejection { code, provider: None, refetch: false }
    }
}

/// Why a signature could not be checked or was bad, or that the host must check it.
pub(crate) enum SigError {
    NoKey,
    Code(ErrorCode),
    Ask(SignatureCheck),
}

/// Why a verification stopped: refused, or waiting for the host's signature check.
#[derive(Debug)]
pub enum Interrupt {
    Rejected(Rejection),
    CheckSignature(Box<SuspendedToken>),
}

/// A JWT verification stopped at the signature the host checks: what it judged before asking,
/// owned, so it goes on from there with the host's verdict ([`Verifier::resume_token`]) instead
/// of parsing and judging the token again.
#[derive(Clone, Debug)]
pub struct SuspendedToken {
    check: SignatureCheck,
    /// The verifier that suspended it (held, so the address stays its own).
    verifier: Arc<()>,
    pub(crate) token: Arc<str>,
    pub(crate) on_stale: StalePolicy,
    provider: usize,
    /// [`Verifier::keys_generation`] when asked: a key set applied since may no longer hold
    /// the key asked about, and then the token is verified again.
    keys_generation: u64,
    /// ES256 in its high-`s` form from an issuer that refuses it (hosts accept both forms).
    high_s_refused: bool,
    /// The claim checks, judged when the check was asked (expiry is judged again on resuming).
    claims: Result<Identity, ErrorCode>,
}

impl SuspendedToken {
    /// What the host is asked to check.
    pub fn check(&self) -> &SignatureCheck {
        &self.check
    }
}

impl From<Rejection> for Interrupt {
    fn from(r: Rejection) -> Interrupt {
        Interrupt::Rejected(r)
    }
}

impl From<ErrorCode> for Interrupt {
    fn from(code: ErrorCode) -> Interrupt {
        Interrupt::Rejected(code.into())
    }
}

/// Drops the host step from a result computed without host crypto, where no check is ever
/// asked (a stray one is refused, never trusted).
fn without_host<T>(result: Result<T, Interrupt>) -> Result<T, Rejection> {
    result.map_err(|i| match i {
        Interrupt::Rejected(r) => r,
        Interrupt::CheckSignature(_) => ErrorCode::SignatureInvalid.into(),
    })
}

/// Issuers, the API-key ring and the limits. See the module docs.
pub struct Verifier {
    pub(crate) providers: Vec<Provider>,
    pub(crate) hmac: HmacKeyRing,
    pub(crate) max_token_bytes: usize,
    pub(crate) jwks_max_stale_s: i64,
    /// Counts the key sets applied: a suspended verification resumes only under the keys it
    /// was suspended with.
    pub(crate) keys_generation: u64,
    /// This verifier's identity, for [`Verifier::suspended_here`].
    pub(crate) instance: Arc<()>,
}

impl Verifier {
    /// A verifier without routes or fetching: every provider must have its keys inline.
    pub fn new(config: &VerifierConfig) -> Result<Verifier, ConfigError> {
        let providers = crate::validate::providers(&config.providers)?;
        if let Some(i) = config.providers.iter().position(|p| p.jwks_uri.is_some()) {
            return Err(ConfigError::new(
                format!("providers[{i}].jwks_uri"),
                "a verifier without a gateway fetches nothing: give the keys inline in jwks",
            ));
        }
        let hmac = crate::validate::hmac_ring(config.api_keys.as_ref())?;
        crate::validate::limits(&config.limits)?;
        Ok(Verifier {
            providers,
            hmac,
            max_token_bytes: config.limits.max_token_bytes,
            jwks_max_stale_s: 0,
            keys_generation: 0,
            instance: Arc::new(()),
        })
    }

    /// Verifies a presented credential (a cookie carries a JWT).
    pub fn verify(&self, credential: Credential<'_>, now: UnixTime, on_stale: StalePolicy) -> Result<Verified, Rejection> {
        match credential {
            Credential::Bearer(token) | Credential::Cookie(token) => self.verify_token(token, now, on_stale),
            Credential::ApiKey { key_id, secret } => self.verify_api_key(key_id, secret, now),
        }
    }

    pub(crate) fn key_state(&self, provider: usize, now: UnixTime) -> KeyState {
        let p = &self.providers[provider];
        if !p.has_uri {
            return KeyState::Usable;
        }
        match &p.fetched {
            None => KeyState::Missing,
            Some((_, confirmed)) if now.secs_since(*confirmed) <= self.jwks_max_stale_s => KeyState::Usable,
            Some(_) => KeyState::Stale,
        }
    }

    /// [`Verifier::verify_token`] through `cache`: a token verified before and not yet expired
    /// costs a hash (its issuer's keys must still be usable, or the route fail-open). Call
    /// [`TokenCache::remember`] once the revocation check passed completely.
    pub fn verify_token_cached(
        &self,
        token: &str,
        now: UnixTime,
        on_stale: StalePolicy,
        cache: &mut TokenCache,
    ) -> Result<Verified, Rejection> {
        without_host(self.verify_token_cached_with(token, now, on_stale, cache, HostCrypto::default()))
    }

    /// [`Verifier::verify_token_cached`] with the host's crypto (see [`crate::host_crypto`]).
    pub fn verify_token_cached_with(
        &self,
        token: &str,
        now: UnixTime,
        on_stale: StalePolicy,
        cache: &mut TokenCache,
        host: HostCrypto<'_>,
    ) -> Result<Verified, Interrupt> {
        if token.len() > self.max_token_bytes {
            return Err(ErrorCode::TokenTooLarge.into());
        }
        if let Some((identity, provider)) = cache.enabled().then(|| cache.get(token, now.secs())).flatten() {
            let stale_keys = self.key_state(provider, now) == KeyState::Stale;
            if stale_keys && on_stale == StalePolicy::FailClosed {
                return Err(Rejection { code: ErrorCode::KeysUnavailable, provider: Some(provider), refetch: false }.into());
            }
            return Ok(Verified { identity, provider: Some(provider), stale_keys, cache_hit: true, cache_key: None });
        }
        let mut verified = self.verify_token_with(token, now, on_stale, host)?;
        verified.cache_key = cache.enabled().then(|| Arc::from(token));
        Ok(verified)
    }

    /// Goes on with a verification suspended at the host's signature check: `verdict` is the
    /// host's answer, `None` when it could not check (then the token is verified again, with
    /// `host`'s algorithms). Under the keys it was suspended with, the verdict and the claims
    /// judged before asking decide (expiry judged again at `now`, the keys' staleness too);
    /// under keys applied since, the token is verified again and the verdict counts only for
    /// the same key. May stop at another check.
    pub fn resume_token(
        &self,
        suspended: SuspendedToken,
        verdict: Option<bool>,
        now: UnixTime,
        host: HostCrypto<'_>,
    ) -> Result<Verified, Interrupt> {
        match verdict {
            Some(valid) if self.suspended_here(&suspended) && suspended.keys_generation == self.keys_generation => {
                self.resumed(suspended, valid, now)
            }
            verdict => {
                let SuspendedToken { check, token, on_stale, .. } = suspended;
                let answer = verdict.map(|valid| check.answer(valid));
                self.verify_token_with(&token, now, on_stale, HostCrypto { algs: host.algs, answer: answer.as_ref() })
            }
        }
    }

    /// `suspended` stopped in this verifier (not in another gateway's).
    pub(crate) fn suspended_here(&self, suspended: &SuspendedToken) -> bool {
        Arc::ptr_eq(&suspended.verifier, &self.instance)
    }

    fn resumed(&self, s: SuspendedToken, valid: bool, now: UnixTime) -> Result<Verified, Interrupt> {
        let reject = |code: ErrorCode| Interrupt::Rejected(Rejection { code, provider: Some(s.provider), refetch: false });
        // What a second pass would find now: keys gone stale while the host checked.
        let state = self.key_state(s.provider, now);
        if state == KeyState::Stale && s.on_stale == StalePolicy::FailClosed {
            return Err(reject(ErrorCode::KeysUnavailable));
        }
        match (valid, s.high_s_refused) {
            (false, _) => return Err(reject(ErrorCode::SignatureInvalid)),
            (true, true) => return Err(reject(ErrorCode::SignatureNotCanonical)),
            (true, false) => {}
        }
        let identity = s.claims.map_err(reject)?;
        let skew = self.providers.get(s.provider).map_or(0, |p| p.skew_s);
        if identity.expires_at.is_some_and(|exp| now.secs() > exp.saturating_add(skew)) {
            return Err(reject(ErrorCode::TokenExpired));
        }
        Ok(Verified {
            identity: Arc::new(identity),
            provider: Some(s.provider),
            stale_keys: state == KeyState::Stale,
            cache_hit: false,
            cache_key: None,
        })
    }

    /// Verifies a JWT (RFC 9068 access token, or any JWT of a configured issuer).
    pub fn verify_token(&self, token: &str, now: UnixTime, on_stale: StalePolicy) -> Result<Verified, Rejection> {
        without_host(self.verify_token_with(token, now, on_stale, HostCrypto::default()))
    }

    /// [`Verifier::verify_token`] with the host's crypto: may stop with the signature check the
    /// host must answer; call again with the answer in `host.answer`.
    pub fn verify_token_with(
        &self,
        token: &str,
        now: UnixTime,
        on_stale: StalePolicy,
        host: HostCrypto<'_>,
    ) -> Result<Verified, Interrupt> {
        if token.len() > self.max_token_bytes {
            return Err(ErrorCode::TokenTooLarge.into());
        }
        let mut scratch = jwt::JwsScratch::new();
        let jws = jwt::parse_jws(token, self.max_token_bytes, &mut scratch)?;
        let mut payload = jwt::SegmentBuf::<1024>::new();
        let claims: Claims = jwt::decode_payload(jws.payload_b64, &mut payload, ErrorCode::TokenMalformed, ErrorCode::ClaimsInvalid)?;
        let issuer = claims.iss.as_deref().ok_or(ErrorCode::IssuerUnknown)?;
        let pi = self.providers.iter().position(|p| p.issuer == issuer).ok_or(ErrorCode::IssuerUnknown)?;
        let provider = &self.providers[pi];
        let reject = |code: ErrorCode| Interrupt::Rejected(Rejection { code, provider: Some(pi), refetch: false });
        if !provider.algorithms.contains(&jws.alg) {
            return Err(reject(ErrorCode::AlgNotAllowed));
        }
        match (&jws.typ, &provider.typ) {
            (Some(t), _) if jwt::typ_matches(t, FEED_TYP) => return Err(reject(ErrorCode::TypNotAllowed)),
            (_, Some(accepted)) if !jws.typ.as_deref().is_some_and(|t| accepted.iter().any(|a| jwt::typ_matches(t, a))) => {
                return Err(reject(ErrorCode::TypNotAllowed));
            }
            _ => {}
        }
        let state = self.key_state(pi, now);
        if state == KeyState::Stale && on_stale == StalePolicy::FailClosed {
            return Err(reject(ErrorCode::KeysUnavailable));
        }
        match verify_signature(provider, &jws, host) {
            Ok(()) => {}
            Err(SigError::Code(code)) => return Err(reject(code)),
            Err(SigError::Ask(check)) => {
                let high_s_refused = jws.alg == Alg::ES256 && !provider.es256_accept_high_s && host_crypto::es256_high_s(jws.signature);
                return Err(Interrupt::CheckSignature(Box::new(SuspendedToken {
                    check,
                    verifier: self.instance.clone(),
                    token: Arc::from(token),
                    on_stale,
                    provider: pi,
                    keys_generation: self.keys_generation,
                    high_s_refused,
                    claims: jwt_identity(claims, provider, now, jws.payload_b64),
                })));
            }
            Err(SigError::NoKey) => {
                let code = if state == KeyState::Missing { ErrorCode::KeysUnavailable } else { ErrorCode::UnknownKid };
                return Err(Rejection { code, provider: Some(pi), refetch: provider.has_uri }.into());
            }
        }
        let identity = jwt_identity(claims, provider, now, jws.payload_b64).map_err(reject)?;
        Ok(Verified {
            identity: Arc::new(identity),
            provider: Some(pi),
            stale_keys: state == KeyState::Stale,
            cache_hit: false,
            cache_key: None,
        })
    }

    /// Verifies an API key: the HMAC over its id, then its expiry and claims.
    pub fn verify_api_key(&self, key_id: &str, secret: &str, now: UnixTime) -> Result<Verified, Rejection> {
        if self.hmac.is_empty() {
            return Err(ErrorCode::ApiKeyUnknownKid.into());
        }
        let mut buf = apikey::KeyIdBuf::new();
        let claims = self.hmac.verify(key_id, secret, self.max_token_bytes, &mut buf)?;
        if claims.exp.is_some_and(|exp| now.secs() >= exp) {
            return Err(ErrorCode::ApiKeyExpired.into());
        }
        if !jwt::header_safe(&claims.sub)
            || !jwt::header_safe(&claims.id)
            || claims.org.as_deref().is_some_and(|o| !jwt::header_safe(o))
            || !claims.roles.iter().all(|r| jwt::token_safe(r))
        {
            return Err(ErrorCode::ClaimsInvalid.into());
        }
        let identity = Identity {
            kind: CredentialKind::ApiKey,
            subject: claims.sub.into_string(),
            org: claims.org.map(Text::into_string),
            email: None,
            roles_header: joined(claims.roles.iter().map(|r| &**r), ','),
            scope_header: String::new(),
            session_id: None,
            key_id: Some(claims.id.into_string()),
            issuer: None,
            client_id: None,
            token_id: None,
            issued_at: Some(claims.iat),
            expires_at: claims.exp,
            claims_b64: key_id[apikey::KEY_ID_PREFIX.len()..].to_string(),
        };
        Ok(Verified { identity: Arc::new(identity), provider: None, stale_keys: false, cache_hit: false, cache_key: None })
    }

    /// The signature of a JWS by `providers[i]`'s keys (the revocation feed).
    pub(crate) fn check_signature(&self, provider: usize, jws: &jwt::Jws<'_, '_>) -> Result<(), SigError> {
        verify_signature(&self.providers[provider], jws, HostCrypto::default())
    }
}

/// The time, audience and value checks of a JWT whose signature is good, and its identity.
fn jwt_identity(claims: Claims<'_>, provider: &Provider, now: UnixTime, payload_b64: &str) -> Result<Identity, ErrorCode> {
    let now = now.secs();
    let exp = claims.exp.ok_or(ErrorCode::ClaimsInvalid)?;
    if now > exp.saturating_add(provider.skew_s) {
        return Err(ErrorCode::TokenExpired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(provider.skew_s)) {
        return Err(ErrorCode::TokenNotYetValid);
    }
    if !claims.aud.as_ref().is_some_and(|aud| aud.contains_any(&provider.audiences)) {
        return Err(ErrorCode::AudienceMismatch);
    }
    let subject = claims.sub.filter(|s| jwt::header_safe(s)).ok_or(ErrorCode::ClaimsInvalid)?;
    for v in [&claims.org, &claims.email, &claims.sid, &claims.client_id].into_iter().flatten() {
        if !jwt::header_safe(v) {
            return Err(ErrorCode::ClaimsInvalid);
        }
    }
    let roles = claims.roles.as_deref().unwrap_or_default();
    if !roles.iter().all(|r| jwt::token_safe(r)) {
        return Err(ErrorCode::ClaimsInvalid);
    }
    let scopes = claims.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty());
    if !scopes.clone().all(jwt::token_safe) {
        return Err(ErrorCode::ClaimsInvalid);
    }
    let owned = |t: Option<Text<'_>>| t.map(Text::into_string);
    Ok(Identity {
        kind: CredentialKind::Jwt,
        subject: subject.into_string(),
        org: owned(claims.org),
        email: owned(claims.email),
        roles_header: joined(roles.iter().map(|r| &**r), ','),
        scope_header: joined(scopes, ' '),
        session_id: owned(claims.sid),
        key_id: None,
        issuer: owned(claims.iss),
        client_id: owned(claims.client_id),
        token_id: owned(claims.jti),
        issued_at: claims.iat,
        expires_at: Some(exp),
        claims_b64: payload_b64.to_string(),
    })
}

/// `items` with `separator` between them, in one allocation (none for no items).
fn joined<'a>(items: impl Iterator<Item = &'a str> + Clone, separator: char) -> String {
    let mut out = String::with_capacity(items.clone().map(|i| i.len() + 1).sum());
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(separator);
        }
        out.push_str(item);
    }
    out
}

/// Picks the key by `kid` (fetched keys first, then inline) and verifies. Without a `kid`, every
/// key of the token's algorithm is tried. The key's type fixes its algorithm: a `kid` naming a
/// key of another type is `key_alg_mismatch`, never a verification with the wrong primitive.
/// A key of an algorithm in `host.algs` is checked by the host (one key at a time: without a
/// `kid` and with several candidates, the core checks them itself).
fn verify_signature(provider: &Provider, jws: &jwt::Jws<'_, '_>, host: HostCrypto<'_>) -> Result<(), SigError> {
    let sets = provider.fetched.iter().map(|(k, _)| k).chain(core::iter::once(&provider.inline));
    let verify = |key: &Key| key.material.verify(jws.signing_input.as_bytes(), jws.signature, provider.es256_accept_high_s);
    let verdict = match &jws.kid {
        Some(kid) => {
            let key: &Key = sets.clone().find_map(|s| s.by_kid(kid)).ok_or(SigError::NoKey)?;
            if key.material.alg() != jws.alg {
                return Err(SigError::Code(ErrorCode::KeyAlgMismatch));
            }
            match host_verdict(key, jws, provider.es256_accept_high_s, host)? {
                Some(verdict) => verdict,
                None => verify(key),
            }
        }
        None => {
            let candidates: Vec<&Key> = sets.flat_map(|s| s.keys.iter()).filter(|k| k.material.alg() == jws.alg).collect();
            let from_host = match candidates.as_slice() {
                [] => return Err(SigError::NoKey),
                [only] => host_verdict(only, jws, provider.es256_accept_high_s, host)?,
                _ => None,
            };
            match from_host {
                Some(verdict) => verdict,
                None => {
                    let verdicts: Vec<Verdict> = candidates.into_iter().map(verify).collect();
                    [Verdict::Valid, Verdict::HighS].into_iter().find(|v| verdicts.contains(v)).unwrap_or(Verdict::Invalid)
                }
            }
        }
    };
    match verdict {
        Verdict::Valid => Ok(()),
        Verdict::HighS => Err(SigError::Code(ErrorCode::SignatureNotCanonical)),
        Verdict::Invalid => Err(SigError::Code(ErrorCode::SignatureInvalid)),
    }
}

/// The verdict through the host: `Ok(None)` when the core checks this key itself, `Ok(Some(_))`
/// from a well-formedness refusal or the host's answer, `Err(Ask)` when the host must be asked.
fn host_verdict(key: &Key, jws: &jwt::Jws<'_, '_>, accept_high_s: bool, host: HostCrypto<'_>) -> Result<Option<Verdict>, SigError> {
    let Some(host_key) = key.host.as_ref().filter(|_| host.algs.contains(jws.alg)) else {
        return Ok(None);
    };
    if !key.well_formed(jws.signature) {
        return Ok(Some(Verdict::Invalid));
    }
    let message = jws.signing_input.as_bytes();
    let Some(valid) = host.answer.and_then(|a| a.verdict_for(host_key, message, jws.signature)) else {
        return Err(SigError::Ask(SignatureCheck {
            alg: jws.alg,
            key: host_key.clone(),
            message: message.to_vec(),
            signature: jws.signature.to_vec(),
        }));
    };
    // Hosts accept both forms of an ECDSA signature; the low-`s` rule is the core's.
    Ok(Some(match (valid, jws.alg == Alg::ES256 && !accept_high_s && host_crypto::es256_high_s(jws.signature)) {
        (false, _) => Verdict::Invalid,
        (true, true) => Verdict::HighS,
        (true, false) => Verdict::Valid,
    }))
}
