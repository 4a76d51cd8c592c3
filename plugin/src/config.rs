//! The plugin configuration: the auth-core gateway document (the same schema the edge worker
//! and the `authgate` CLI read) plus one `host` object with what only a proxy host needs.
//!
//! ```json
//! {
//!   "host": {
//!     "upstreams": { "https://auth.example.com": "authgate_issuer" },
//!     "request_id_header": "x-request-id",
//!     "tick_ms": 500,
//!     "feed_credential_env": { "key_id": "AUTHGATE_FEED_KEY_ID", "secret": "AUTHGATE_FEED_SECRET" }
//!   },
//!   "providers": [ ... ], "routes": [ ... ]
//! }
//! ```
//!
//! Every error names the field it is about, in the same `path: message` form as auth-core's.

use auth_core::{ConfigError, Gateway, Source};
use serde_json::{Map, Value};

/// Smallest and largest accepted `host.tick_ms`.
pub const TICK_MS_RANGE: (u64, u64) = (50, 10_000);
/// Default `host.tick_ms`: how often each worker looks at shared material and the schedule.
pub const DEFAULT_TICK_MS: u64 = 500;

/// Host-only settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// URL origin (`scheme://host[:port]`, lowercase) → upstream name given to
    /// `dispatch_http_call` (an Envoy cluster; a `host:port` in Kong).
    pub upstreams: Vec<(String, String)>,
    /// Request header whose value becomes `x-error-id` (lowercase).
    pub request_id_header: String,
    pub tick_ms: u64,
    /// Environment variables holding the revocation-feed credential (Envoy:
    /// `vm_config.environment_variables.host_env_keys`), so it stays out of the config dump.
    pub feed_credential_env: Option<(String, String)>,
    /// Prepended to every shared-data key. Kong keeps shared data in named zones and reads the
    /// zone from the key (`<zone>/<key>`), so there it is e.g. `authgate/`.
    pub shared_key_prefix: String,
}

/// Where a material source is fetched from, resolved against `host.upstreams`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub source: Source,
    pub url: String,
    /// Upstream name for `dispatch_http_call`.
    pub upstream: String,
    /// `:authority` of the request.
    pub authority: String,
    /// `:path` of the request (path and query).
    pub path: String,
    /// `:scheme` of the request.
    pub scheme: String,
}

/// A parsed, validated plugin configuration.
pub struct PluginConfig {
    pub host: HostConfig,
    pub gateway: Gateway,
    pub targets: Vec<Target>,
    /// The gateway document without `host`, as JSON bytes (identifies the config for leasing).
    pub gateway_json: Vec<u8>,
}

impl core::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PluginConfig").field("host", &self.host).field("targets", &self.targets).finish_non_exhaustive()
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), message: message.into() }
}

/// Parses the plugin configuration. `env` looks up an environment variable (the host's).
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<PluginConfig, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(err(".", "the plugin configuration is empty; it must be the gateway JSON document"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| err(".", format!("not JSON: {e}")))?;
    let Value::Object(mut doc) = value else {
        return Err(err(".", "must be a JSON object"));
    };
    let host_value = doc.remove("host");
    let gateway_json = serde_json::to_vec(&Value::Object(doc)).map_err(|e| err(".", e.to_string()))?;
    let mut gateway = Gateway::from_json(&gateway_json)?;
    let host = parse_host(host_value.as_ref())?;

    if let Some((key_env, secret_env)) = &host.feed_credential_env {
        if gateway.config().revocations.is_none() {
            return Err(err("host.feed_credential_env", "set, but there is no revocations feed"));
        }
        let key_id = env(key_env).filter(|v| !v.is_empty());
        let secret = env(secret_env).filter(|v| !v.is_empty());
        match (key_id, secret) {
            (Some(k), Some(s)) => gateway.set_feed_credential(k, s),
            _ => {
                return Err(err(
                    "host.feed_credential_env",
                    format!("environment variables {key_env} and {secret_env} must both be set and non-empty"),
                ))
            }
        }
    }

    let mut targets = Vec::new();
    for s in gateway.status().sources {
        let field = match s.source {
            Source::Jwks(i) => format!("providers[{i}].jwks_uri"),
            Source::Revocations => "revocations.uri".to_string(),
        };
        let parts = split_url(&s.url).ok_or_else(|| err(&field, "not an http(s) URL with a host"))?;
        let upstream = host
            .upstreams
            .iter()
            .find(|(origin, _)| *origin == parts.origin)
            .map(|(_, u)| u.clone())
            .ok_or_else(|| {
                err("host.upstreams", format!("no upstream for origin \"{}\" (needed by {field})", parts.origin))
            })?;
        targets.push(Target {
            source: s.source,
            url: s.url.clone(),
            upstream,
            authority: parts.authority,
            path: parts.path,
            scheme: parts.scheme,
        });
    }
    Ok(PluginConfig { host, gateway, targets, gateway_json })
}

fn parse_host(value: Option<&Value>) -> Result<HostConfig, ConfigError> {
    let empty = Map::new();
    let obj = match value {
        None => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(err("host", "must be an object")),
    };
    for key in obj.keys() {
        if !["upstreams", "request_id_header", "tick_ms", "feed_credential_env", "shared_key_prefix"].contains(&key.as_str()) {
            return Err(err(
                format!("host.{key}"),
                "unknown field, expected one of upstreams, request_id_header, tick_ms, feed_credential_env, shared_key_prefix",
            ));
        }
    }
    let mut upstreams = Vec::new();
    match obj.get("upstreams") {
        None => {}
        Some(Value::Object(map)) => {
            for (origin, upstream) in map {
                let at = format!("host.upstreams[\"{origin}\"]");
                let parts = split_url(origin).ok_or_else(|| err(&at, "key must be a URL origin such as https://auth.example.com"))?;
                if parts.path != "/" || origin.ends_with('/') {
                    return Err(err(&at, "key must be an origin (scheme://host[:port]) without a path"));
                }
                let name = upstream.as_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b > 0x20 && b < 0x7f));
                let name = name.ok_or_else(|| err(&at, "must be a non-empty upstream name (an Envoy cluster, a Kong host:port)"))?;
                if upstreams.iter().any(|(o, _): &(String, String)| *o == parts.origin) {
                    return Err(err(&at, "the same origin is listed twice"));
                }
                upstreams.push((parts.origin, name.to_string()));
            }
        }
        Some(_) => return Err(err("host.upstreams", "must be an object mapping URL origins to upstream names")),
    }
    let request_id_header = match obj.get("request_id_header") {
        None => "x-request-id".to_string(),
        Some(Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') =>
        {
            s.clone()
        }
        Some(_) => return Err(err("host.request_id_header", "must be a lowercase header name")),
    };
    let tick_ms = match obj.get("tick_ms") {
        None => DEFAULT_TICK_MS,
        Some(v) => v
            .as_u64()
            .filter(|t| (TICK_MS_RANGE.0..=TICK_MS_RANGE.1).contains(t))
            .ok_or_else(|| err("host.tick_ms", format!("must be an integer between {} and {}", TICK_MS_RANGE.0, TICK_MS_RANGE.1)))?,
    };
    let feed_credential_env = match obj.get("feed_credential_env") {
        None => None,
        Some(Value::Object(o)) => {
            for key in o.keys() {
                if key != "key_id" && key != "secret" {
                    return Err(err(format!("host.feed_credential_env.{key}"), "unknown field, expected key_id or secret"));
                }
            }
            let get = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("host.feed_credential_env.{k}"), "must name an environment variable"))
            };
            Some((get("key_id")?, get("secret")?))
        }
        Some(_) => return Err(err("host.feed_credential_env", "must be an object with key_id and secret")),
    };
    let shared_key_prefix = match obj.get("shared_key_prefix") {
        None => String::new(),
        Some(Value::String(s))
            if s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':')) =>
        {
            s.clone()
        }
        Some(_) => {
            return Err(err("host.shared_key_prefix", "at most 64 characters of A-Z a-z 0-9 _ - . / :"));
        }
    };
    Ok(HostConfig { upstreams, request_id_header, tick_ms, feed_credential_env, shared_key_prefix })
}

/// The parts of an absolute http(s) URL a proxy needs to make the request.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts {
    /// `scheme://authority`, lowercase.
    pub origin: String,
    pub scheme: String,
    pub authority: String,
    /// Path and query; `/` when empty. The fragment is dropped.
    pub path: String,
}

/// Splits `http(s)://authority/path?query#fragment`. `None` for anything else.
pub fn split_url(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || !authority.bytes().all(|b| b > 0x20 && b < 0x7f) {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if path.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return None;
    }
    Some(UrlParts { origin: format!("{scheme}://{authority}"), scheme, authority, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = r#""providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "http://127.0.0.1:9000/jwks/0.json"}],
        "revocations": {"uri": "http://127.0.0.1:9000/v1/revocations?x=1"},
        "routes": [{"prefix": "/", "require": "authenticated"}]"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_str(s: &str) -> Result<PluginConfig, ConfigError> {
        parse(s.as_bytes(), &no_env)
    }

    #[test]
    fn full_config_resolves_every_source_to_an_upstream() {
        let cfg = parse_str(&format!(
            r#"{{"host": {{"upstreams": {{"HTTP://127.0.0.1:9000": "fixtures"}}, "tick_ms": 100, "request_id_header": "x-req"}}, {CORE}}}"#
        ))
        .unwrap();
        assert_eq!(cfg.host.tick_ms, 100);
        assert_eq!(cfg.host.request_id_header, "x-req");
        assert_eq!(cfg.targets.len(), 2);
        assert_eq!(cfg.targets[0].source, Source::Jwks(0));
        assert_eq!(cfg.targets[0].upstream, "fixtures");
        assert_eq!(cfg.targets[0].authority, "127.0.0.1:9000");
        assert_eq!(cfg.targets[0].path, "/jwks/0.json");
        assert_eq!(cfg.targets[1].source, Source::Revocations);
        assert_eq!(cfg.targets[1].path, "/v1/revocations?x=1");
        assert!(!String::from_utf8(cfg.gateway_json).unwrap().contains("host"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("", "."),
            ("[]", "."),
            ("{", "."),
            (r#"{"routes": []}"#, "routes"),
            (r#"{"routes": [{"prefix": "/", "require": "nope"}]}"#, "routes[0].require"),
            (&format!(r#"{{{CORE}}}"#), "host.upstreams"),
            (&format!(r#"{{"host": {{"upstreams": {{"http://other:1": "x"}}}}, {CORE}}}"#), "host.upstreams"),
            (&format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000/x": "x"}}}}, {CORE}}}"#), "host.upstreams[\"http://127.0.0.1:9000/x\"]"),
            (&format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": ""}}}}, {CORE}}}"#), "host.upstreams[\"http://127.0.0.1:9000\"]"),
            (&format!(r#"{{"host": {{"tick_ms": 5}}, {CORE}}}"#), "host.tick_ms"),
            (&format!(r#"{{"host": {{"request_id_header": "X-Id"}}, {CORE}}}"#), "host.request_id_header"),
            (&format!(r#"{{"host": {{"clusters": {{}}}}, {CORE}}}"#), "host.clusters"),
            (&format!(r#"{{"host": 3, {CORE}}}"#), "host"),
            (&format!(r#"{{"host": {{"shared_key_prefix": "a b"}}, {CORE}}}"#), "host.shared_key_prefix"),
            (
                &format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "f"}}, "feed_credential_env": {{"key_id": "A", "secret": "B"}}}}, {CORE}}}"#),
                "host.feed_credential_env",
            ),
            (
                &format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "f"}}, "feed_credential_env": {{"key_id": "A"}}}}, {CORE}}}"#),
                "host.feed_credential_env.secret",
            ),
        ];
        for (input, path) in cases {
            match parse_str(input) {
                Ok(_) => panic!("{input}: accepted"),
                Err(e) => assert_eq!(e.path, path, "{input}: {e}"),
            }
        }
    }

    #[test]
    fn feed_credential_comes_from_the_environment() {
        let env = |k: &str| Some(format!("value-of-{k}"));
        let doc = format!(
            r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "f"}}, "feed_credential_env": {{"key_id": "K", "secret": "S"}}}}, {CORE}}}"#
        );
        let mut cfg = parse(doc.as_bytes(), &env).unwrap();
        let fetch = std::iter::from_fn(|| cfg.gateway.poll_fetch(0)).find(|f| f.source == Source::Revocations).unwrap();
        assert!(fetch.headers.contains(&("x-api-key".to_string(), "value-of-K".to_string())));
        assert!(fetch.headers.contains(&("x-api-secret".to_string(), "value-of-S".to_string())));
    }

    #[test]
    fn inline_only_config_needs_no_host_block() {
        let doc = r#"{"api_keys": {"hmac_keys": [{"kid": "k", "secret": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}]},
                      "routes": [{"prefix": "/", "require": "authenticated"}]}"#;
        let cfg = parse_str(doc).unwrap();
        assert!(cfg.targets.is_empty());
        assert_eq!(cfg.host.request_id_header, "x-request-id");
        assert_eq!(cfg.host.tick_ms, DEFAULT_TICK_MS);
    }

    #[test]
    fn urls_split() {
        let p = split_url("https://Auth.Example.com/.well-known/jwks.json#frag").unwrap();
        assert_eq!(p.origin, "https://auth.example.com");
        assert_eq!(p.path, "/.well-known/jwks.json");
        assert_eq!(split_url("http://h:1").unwrap().path, "/");
        assert_eq!(split_url("http://h:1?a=b").unwrap().path, "/?a=b");
        for bad in ["ftp://h/x", "http:///x", "http://u@h/x", "h/x", "http://h/a b"] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }
}
