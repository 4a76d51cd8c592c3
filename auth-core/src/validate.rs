//! Config validation: the typed config (see [`crate::config`]) into the parts a gateway runs,
//! every error naming its field. Used by `Gateway::new` and `Verifier::new`, so `authgate
//! config check`, both gateways and the auth-server accept exactly the same documents.

use crate::apikey::HmacKeyRing;
use crate::b64;
use crate::config::{
    ApiKeysConfig, FeedCredential, FetchPolicy, GatewayConfig, HeaderNames, Limits, ProviderConfig, Requirement, RouteConfig,
};
use crate::error::ConfigError;
use crate::headers::is_header_name;
use crate::jwt;
use crate::keys::{KeyOrigin, VerificationKeys};
use crate::path::canonical_path;
use crate::route::{is_method, Route};
use crate::url::HttpUrl;
use crate::verifier::Provider;

pub(crate) fn routes(routes: &[RouteConfig]) -> Result<Vec<Route>, ConfigError> {
    if routes.is_empty() {
        return Err(ConfigError::new("routes", "at least one route is required"));
    }
    let mut out = Vec::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}]{field}");
        let (pattern, field) = match (&r.prefix, &r.path) {
            (Some(p), None) => (p, ".prefix"),
            (None, Some(p)) => (p, ".path"),
            _ => return Err(ConfigError::new(at(""), "set exactly one of prefix and path")),
        };
        // A `;` or `?` is cut by canonicalisation, so such a pattern is refused here too.
        if canonical_path(pattern).as_deref() != Some(pattern.as_str()) {
            return Err(ConfigError::new(
                at(field),
                "must be a canonical path starting with / (no dot segments, //, ;, ? or escapes of unreserved characters)",
            ));
        }
        if let Some(methods) = &r.methods {
            if methods.is_empty() {
                return Err(ConfigError::new(at(".methods"), "must not be empty (omit it to match every method)"));
            }
            if let Some(j) = methods.iter().position(|m| !is_method(m)) {
                return Err(ConfigError::new(at(&format!(".methods[{j}]")), "not an HTTP method"));
            }
        }
        if let Requirement::Rules(rules) = &r.require {
            if rules.orgs.is_empty() && rules.any_role.is_empty() && rules.all_roles.is_empty() && rules.scopes.is_empty() {
                return Err(ConfigError::new(at(".require"), "name at least one of orgs, any_role, all_roles, scopes"));
            }
            if let Some(j) = rules.orgs.iter().position(|o| !jwt::header_safe(o)) {
                return Err(ConfigError::new(
                    at(&format!(".require.orgs[{j}]")),
                    "must be a non-empty organisation id without control characters",
                ));
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
        out.push(Route::compile(r));
    }
    Ok(out)
}

pub(crate) fn url(field: &str, value: &str) -> Result<HttpUrl, ConfigError> {
    HttpUrl::parse(value).map_err(|e| ConfigError::new(field, e.to_string()))
}

pub(crate) fn providers(providers: &[ProviderConfig]) -> Result<Vec<Provider>, ConfigError> {
    let mut out = Vec::with_capacity(providers.len());
    for (i, p) in providers.iter().enumerate() {
        let at = |field: &str| format!("providers[{i}]{field}");
        if p.issuer.is_empty() {
            return Err(ConfigError::new(at(".issuer"), "must not be empty"));
        }
        if providers[..i].iter().any(|q| q.issuer == p.issuer) {
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
            url(&at(".jwks_uri"), uri)?;
        }
        let inline = match &p.jwks {
            Some(v) => VerificationKeys::from_value(v, KeyOrigin::Inline).map_err(|e| {
                let path = if e.path == "." { at(".jwks") } else { at(&format!(".jwks.{}", e.path)) };
                ConfigError::new(path, e.message)
            })?,
            None => VerificationKeys::default(),
        };
        out.push(Provider {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms: p.algorithms.clone(),
            skew_s: p.clock_skew_s as i64,
            typ: p.typ.clone(),
            es256_accept_high_s: p.es256_accept_high_s,
            inline,
            fetched: None,
            has_uri: p.jwks_uri.is_some(),
        });
    }
    Ok(out)
}

pub(crate) fn hmac_ring(api_keys: Option<&ApiKeysConfig>) -> Result<HmacKeyRing, ConfigError> {
    let mut pairs = Vec::new();
    if let Some(ak) = api_keys {
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
            pairs.push((k.kid.clone(), secret));
        }
    }
    Ok(HmacKeyRing::new(pairs.iter().map(|(k, s)| (k.as_str(), s.as_slice()))))
}

pub(crate) fn limits(limits: &Limits) -> Result<(), ConfigError> {
    if !(512..=1_048_576).contains(&limits.max_token_bytes) {
        return Err(ConfigError::new("limits.max_token_bytes", "between 512 and 1048576"));
    }
    Ok(())
}

pub(crate) fn fetch(f: &FetchPolicy) -> Result<(), ConfigError> {
    if f.jwks_refresh_s == 0 || f.timeout_s == 0 || f.retry_min_s == 0 {
        return Err(ConfigError::new("fetch", "jwks_refresh_s, timeout_s and retry_min_s must be at least 1"));
    }
    if f.retry_max_s < f.retry_min_s {
        return Err(ConfigError::new("fetch.retry_max_s", "must be at least retry_min_s"));
    }
    if f.cold_start_wait_ms > 60_000 {
        return Err(ConfigError::new("fetch.cold_start_wait_ms", "at most 60000 (a minute)"));
    }
    Ok(())
}

/// Header names; returns nothing, the names stay in the config.
pub(crate) fn header_names(names: &HeaderNames) -> Result<(), ConfigError> {
    if names.strip_prefix.is_empty() || !is_header_name(&names.strip_prefix) {
        return Err(ConfigError::new("headers.strip_prefix", "must be a non-empty lowercase header name prefix"));
    }
    for (field, name) in names.all() {
        if !is_header_name(name) {
            return Err(ConfigError::new(format!("headers.{field}"), "must be a lowercase header name"));
        }
    }
    Ok(())
}

/// The feed credential goes into request headers: visible ASCII only.
pub(crate) fn feed_credential(c: &FeedCredential, field: &str) -> Result<(), ConfigError> {
    let ok = |v: &str| !v.is_empty() && v.len() <= 8192 && v.bytes().all(|b| b.is_ascii_graphic());
    if !ok(&c.key_id) {
        return Err(ConfigError::new(format!("{field}.key_id"), "must be a non-empty API key id (visible ASCII)"));
    }
    if !ok(&c.secret) {
        return Err(ConfigError::new(format!("{field}.secret"), "must be a non-empty API key secret (visible ASCII)"));
    }
    Ok(())
}

/// The whole gateway document, beyond what the parts above check.
pub(crate) fn gateway(config: &GatewayConfig, has_verifier_material: bool) -> Result<(), ConfigError> {
    if !has_verifier_material && config.routes.iter().any(|r| r.require != Requirement::Anonymous) {
        return Err(ConfigError::new("providers", "no provider and no api_keys: no credential could ever be verified"));
    }
    fetch(&config.fetch)?;
    if config.cache.max_entries > 1_000_000 {
        return Err(ConfigError::new("cache.max_entries", "at most 1000000"));
    }
    limits(&config.limits)?;
    header_names(&config.headers)?;
    if let Some(cookie) = &config.cookie {
        crate::cookie::validate(cookie, is_header_name, &config.headers.strip_prefix)?;
    }
    if let Some(rev) = &config.revocations {
        url("revocations.uri", &rev.uri)?;
        if !(1..=3600).contains(&rev.refresh_s) {
            return Err(ConfigError::new("revocations.refresh_s", "between 1 and 3600 seconds"));
        }
        if let Some(c) = &rev.credential {
            feed_credential(c, "revocations.credential")?;
        }
    }
    Ok(())
}
