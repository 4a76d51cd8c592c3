//! The plugin's settings: the auth-core gateway document (the same schema the edge worker and
//! the `authgate` CLI read) plus one `host` object with what only a proxy needs.
//!
//! ```json
//! {
//!   "host": {
//!     "upstreams": { "https://auth.example.com": "authgate_issuer" },
//!     "request_id_header": "x-request-id",
//!     "tick_ms": 500,
//!     "feed_credential_env": { "key_id": "AUTHGATE_FEED_KEY_ID", "secret": "AUTHGATE_FEED_SECRET" },
//!     "signatures": "proxy"
//!   },
//!   "providers": [ ... ], "routes": [ ... ]
//! }
//! ```
//!
//! Every error names the field it is about, in the same `path: message` form as auth-core's;
//! URLs follow auth-core's one rule (`auth_core::url`), so `authgate config check` accepts
//! exactly what the plugin accepts.

use auth_core::url::HttpUrl;
use auth_core::{ConfigError, Gateway, Source};
use serde_json::{Map, Value};

/// Smallest and largest accepted `host.tick_ms`.
pub const TICK_MS_RANGE: (u64, u64) = (50, 10_000);
/// Default `host.tick_ms`: how often each worker looks at shared material and the schedule.
pub const DEFAULT_TICK_MS: u64 = 500;

/// What only a proxy needs: the `host` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
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
    /// Who checks ES256 and RS256 signatures.
    pub signatures: SignatureChecks,
}

/// Who checks asymmetric signatures (`host.signatures`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureChecks {
    /// The proxy's BoringSSL through Envoy's `verify_signature` foreign function, where the
    /// proxy has it (the filter falls back to its own code where it does not, as in Kong).
    #[default]
    Proxy,
    /// The filter's own WebAssembly code, always.
    Filter,
}

/// A parsed, validated plugin configuration.
pub struct PluginSettings {
    pub proxy: ProxySettings,
    pub gateway: Gateway,
    /// The upstream each fetched source is requested through.
    pub upstreams: Vec<(Source, String)>,
    /// Identifies the gateway document (the `host` block aside), for the fetcher lease.
    pub config_id: String,
}

impl core::fmt::Debug for PluginSettings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PluginSettings").field("proxy", &self.proxy).field("upstreams", &self.upstreams).finish_non_exhaustive()
    }
}

impl PluginSettings {
    /// The upstream `source` is fetched through.
    pub fn upstream(&self, source: Source) -> Option<&str> {
        self.upstreams.iter().find(|(s, _)| *s == source).map(|(_, u)| u.as_str())
    }
}

/// Parses the plugin configuration. `env` looks up an environment variable (the host's).
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<PluginSettings, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(".", "the plugin configuration is empty; it must be the gateway JSON document"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::new(".", format!("not JSON: {e}")))?;
    let Value::Object(mut doc) = value else {
        return Err(ConfigError::new(".", "must be a JSON object"));
    };
    let host_value = doc.remove("host");
    let gateway_json = serde_json::to_vec(&Value::Object(doc)).map_err(|e| ConfigError::new(".", e.to_string()))?;
    let mut gateway = Gateway::from_json(&gateway_json)?;
    let proxy = parse_host(host_value.as_ref())?;

    if let Some((key_env, secret_env)) = &proxy.feed_credential_env {
        if gateway.config().revocations.is_none() {
            return Err(ConfigError::new("host.feed_credential_env", "set, but there is no revocations feed"));
        }
        match (env(key_env).filter(|v| !v.is_empty()), env(secret_env).filter(|v| !v.is_empty())) {
            (Some(k), Some(s)) => gateway.set_feed_credential(k, s).map_err(|e| {
                ConfigError::new("host.feed_credential_env", format!("environment variables {key_env} and {secret_env}: {}", e.message))
            })?,
            _ => {
                return Err(ConfigError::new(
                    "host.feed_credential_env",
                    format!("environment variables {key_env} and {secret_env} must both be set and non-empty"),
                ))
            }
        }
    }

    let mut upstreams = Vec::new();
    for info in gateway.sources() {
        let field = match info.source {
            Source::Jwks(i) => format!("providers[{i}].jwks_uri"),
            Source::Revocations => "revocations.uri".to_string(),
        };
        let origin = info.url.origin();
        let upstream = proxy
            .upstreams
            .iter()
            .find(|(o, _)| *o == origin)
            .map(|(_, u)| u.clone())
            .ok_or_else(|| ConfigError::new("host.upstreams", format!("no upstream for origin \"{origin}\" (needed by {field})")))?;
        upstreams.push((info.source, upstream));
    }
    let config_id = auth_core::material::stable_key(&String::from_utf8_lossy(&gateway_json));
    Ok(PluginSettings { proxy, gateway, upstreams, config_id })
}

fn parse_host(value: Option<&Value>) -> Result<ProxySettings, ConfigError> {
    let empty = Map::new();
    let obj = match value {
        None => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ConfigError::new("host", "must be an object")),
    };
    const FIELDS: [&str; 6] = ["upstreams", "request_id_header", "tick_ms", "feed_credential_env", "shared_key_prefix", "signatures"];
    if let Some(key) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ConfigError::new(format!("host.{key}"), format!("unknown field, expected one of {}", FIELDS.join(", "))));
    }
    let mut upstreams = Vec::new();
    match obj.get("upstreams") {
        None => {}
        Some(Value::Object(map)) => {
            for (origin, upstream) in map {
                let at = format!("host.upstreams[\"{origin}\"]");
                let url = HttpUrl::parse(origin)
                    .map_err(|e| ConfigError::new(&at, format!("key must be a URL origin such as https://auth.example.com: {e}")))?;
                if !url.is_origin() || origin.ends_with('/') {
                    return Err(ConfigError::new(&at, "key must be an origin (scheme://host[:port]) without a path"));
                }
                let name = upstream.as_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b > 0x20 && b < 0x7f));
                let name =
                    name.ok_or_else(|| ConfigError::new(&at, "must be a non-empty upstream name (an Envoy cluster, a Kong host:port)"))?;
                if upstreams.iter().any(|(o, _): &(String, String)| *o == url.origin()) {
                    return Err(ConfigError::new(&at, "the same origin is listed twice"));
                }
                upstreams.push((url.origin(), name.to_string()));
            }
        }
        Some(_) => return Err(ConfigError::new("host.upstreams", "must be an object mapping URL origins to upstream names")),
    }
    let request_id_header = match obj.get("request_id_header") {
        None => "x-request-id".to_string(),
        Some(Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') =>
        {
            s.clone()
        }
        Some(_) => return Err(ConfigError::new("host.request_id_header", "must be a lowercase header name")),
    };
    let tick_ms = match obj.get("tick_ms") {
        None => DEFAULT_TICK_MS,
        Some(v) => v.as_u64().filter(|t| (TICK_MS_RANGE.0..=TICK_MS_RANGE.1).contains(t)).ok_or_else(|| {
            ConfigError::new("host.tick_ms", format!("must be an integer between {} and {}", TICK_MS_RANGE.0, TICK_MS_RANGE.1))
        })?,
    };
    let feed_credential_env = match obj.get("feed_credential_env") {
        None => None,
        Some(Value::Object(o)) => {
            if let Some(key) = o.keys().find(|k| *k != "key_id" && *k != "secret") {
                return Err(ConfigError::new(format!("host.feed_credential_env.{key}"), "unknown field, expected key_id or secret"));
            }
            let get = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| ConfigError::new(format!("host.feed_credential_env.{k}"), "must name an environment variable"))
            };
            Some((get("key_id")?, get("secret")?))
        }
        Some(_) => return Err(ConfigError::new("host.feed_credential_env", "must be an object with key_id and secret")),
    };
    let shared_key_prefix = match obj.get("shared_key_prefix") {
        None => String::new(),
        Some(Value::String(s))
            if s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':')) =>
        {
            s.clone()
        }
        Some(_) => return Err(ConfigError::new("host.shared_key_prefix", "at most 64 characters of A-Z a-z 0-9 _ - . / :")),
    };
    let signatures = match obj.get("signatures").map(|v| v.as_str()) {
        None | Some(Some("proxy")) => SignatureChecks::Proxy,
        Some(Some("filter")) => SignatureChecks::Filter,
        Some(_) => return Err(ConfigError::new("host.signatures", "must be \"proxy\" (the proxy's crypto where it has it) or \"filter\"")),
    };
    Ok(ProxySettings { upstreams, request_id_header, tick_ms, feed_credential_env, shared_key_prefix, signatures })
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

    fn parse_str(s: &str) -> Result<PluginSettings, ConfigError> {
        parse(s.as_bytes(), &no_env)
    }

    #[test]
    fn full_config_resolves_every_source_to_an_upstream() {
        let cfg = parse_str(&format!(
            r#"{{"host": {{"upstreams": {{"HTTP://127.0.0.1:9000": "fixtures"}}, "tick_ms": 100, "request_id_header": "x-req"}}, {CORE}}}"#
        ))
        .unwrap();
        assert_eq!(cfg.proxy.tick_ms, 100);
        assert_eq!(cfg.proxy.request_id_header, "x-req");
        assert_eq!(cfg.upstreams, vec![(Source::Jwks(0), "fixtures".to_string()), (Source::Revocations, "fixtures".to_string())]);
        let sources = cfg.gateway.sources();
        assert_eq!(sources[0].url.authority(), "127.0.0.1:9000");
        assert_eq!(sources[0].url.path_and_query(), "/jwks/0.json");
        assert_eq!(sources[1].url.path_and_query(), "/v1/revocations?x=1");
        // The `host` block is not part of what identifies the gateway document.
        let other_host = parse_str(&format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "other"}}}}, {CORE}}}"#)).unwrap();
        assert_eq!(cfg.config_id, other_host.config_id);
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
            (
                &format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000/x": "x"}}}}, {CORE}}}"#),
                "host.upstreams[\"http://127.0.0.1:9000/x\"]",
            ),
            (
                &format!(r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": ""}}}}, {CORE}}}"#),
                "host.upstreams[\"http://127.0.0.1:9000\"]",
            ),
            (&format!(r#"{{"host": {{"tick_ms": 5}}, {CORE}}}"#), "host.tick_ms"),
            (&format!(r#"{{"host": {{"request_id_header": "X-Id"}}, {CORE}}}"#), "host.request_id_header"),
            (&format!(r#"{{"host": {{"clusters": {{}}}}, {CORE}}}"#), "host.clusters"),
            (&format!(r#"{{"host": 3, {CORE}}}"#), "host"),
            (&format!(r#"{{"host": {{"shared_key_prefix": "a b"}}, {CORE}}}"#), "host.shared_key_prefix"),
            (
                &format!(
                    r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "f"}}, "feed_credential_env": {{"key_id": "A", "secret": "B"}}}}, {CORE}}}"#
                ),
                "host.feed_credential_env",
            ),
            (
                &format!(
                    r#"{{"host": {{"upstreams": {{"http://127.0.0.1:9000": "f"}}, "feed_credential_env": {{"key_id": "A"}}}}, {CORE}}}"#
                ),
                "host.feed_credential_env.secret",
            ),
            // auth-core's URL rule: what `authgate config check` refuses, the plugin refuses.
            (&format!("{{{}}}", CORE.replace("http://127.0.0.1:9000/jwks", "http://user@127.0.0.1:9000/jwks")), "providers[0].jwks_uri"),
            (
                r#"{"host": {"upstreams": {"http://u@h": "x"}}, "routes": [{"prefix": "/", "require": "anonymous"}]}"#,
                "host.upstreams[\"http://u@h\"]",
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
        let now = auth_core::UnixTime::from_secs(0);
        let keys = cfg.gateway.poll_fetch(now).unwrap();
        cfg.gateway.fetch_failed(keys.id, now);
        let fetch = cfg.gateway.poll_fetch(now).unwrap();
        assert_eq!(fetch.source, Source::Revocations);
        assert!(fetch.headers.contains(&("x-api-key".to_string(), "value-of-K".to_string())));
        assert!(fetch.headers.contains(&("x-api-secret".to_string(), "value-of-S".to_string())));
    }

    #[test]
    fn inline_only_config_needs_no_host_block() {
        let doc = r#"{"api_keys": {"hmac_keys": [{"kid": "k", "secret": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}]},
                      "routes": [{"prefix": "/", "require": "authenticated"}]}"#;
        let cfg = parse_str(doc).unwrap();
        assert!(cfg.upstreams.is_empty());
        assert_eq!(cfg.proxy.request_id_header, "x-request-id");
        assert_eq!(cfg.proxy.tick_ms, DEFAULT_TICK_MS);
    }
}
