//! The worker's configuration, read from its environment (vars and secrets; see
//! docs/edge-worker.md):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `AUTHGATE_CONFIG` | var (JSON text or a JSON object) | the auth-core gateway document, the schema the plugin and the CLI read |
//! | `AUTHGATE_API_KEYS` | secret, optional | the document's `api_keys` object (the HMAC keys), kept out of the var |
//! | `AUTHGATE_FEED_KEY_ID`, `AUTHGATE_FEED_SECRET` | secrets, optional | the revocation-feed credential |
//! | `AUTHGATE_ORIGIN` | var | `scheme://host[:port]` requests are forwarded to |
//! | `ORIGIN` | service binding | alternative to `AUTHGATE_ORIGIN`: forward to another Worker |
//! | `AUTHGATE_REQUEST_ID_HEADER` | var, optional | request header whose value becomes `x-error-id` (default `x-request-id`; `cf-ray` is the fallback) |
//!
//! Every error names the field it is about, in auth-core's `path: message` form: a path in the
//! gateway document, or the name of the variable.

use auth_core::{ConfigError, Gateway, Source};
use serde_json::Value;

pub const CONFIG_VAR: &str = "AUTHGATE_CONFIG";
pub const API_KEYS_SECRET: &str = "AUTHGATE_API_KEYS";
pub const FEED_KEY_ID_SECRET: &str = "AUTHGATE_FEED_KEY_ID";
pub const FEED_SECRET_SECRET: &str = "AUTHGATE_FEED_SECRET";
pub const ORIGIN_VAR: &str = "AUTHGATE_ORIGIN";
pub const ORIGIN_SERVICE: &str = "ORIGIN";
pub const REQUEST_ID_HEADER_VAR: &str = "AUTHGATE_REQUEST_ID_HEADER";

/// Every environment name the worker reads, in the order [`EnvValues`] holds them.
pub const ENV_NAMES: [&str; 6] =
    [CONFIG_VAR, API_KEYS_SECRET, FEED_KEY_ID_SECRET, FEED_SECRET_SECRET, ORIGIN_VAR, REQUEST_ID_HEADER_VAR];

/// The environment's values as text (`None` when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvValues {
    pub config: Option<String>,
    pub api_keys: Option<String>,
    pub feed_key_id: Option<String>,
    pub feed_secret: Option<String>,
    pub origin: Option<String>,
    pub request_id_header: Option<String>,
    /// Whether the `ORIGIN` service binding exists.
    pub origin_service: bool,
}

/// Where allowed requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `scheme://host[:port]` (lowercase); the request's path and query are appended.
    Url(String),
    /// The `ORIGIN` service binding.
    Service,
}

/// A parsed, validated worker configuration.
pub struct Settings {
    pub gateway: Gateway,
    pub origin: Origin,
    pub request_id_header: String,
    /// The fetched sources (JWKS per provider with a `jwks_uri`, the feed) and their URLs.
    pub sources: Vec<(Source, String)>,
    /// How long a fetched copy is worth keeping in the Cache API (the stale bound).
    pub cache_ttl_s: u64,
}

impl core::fmt::Debug for Settings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Settings")
            .field("origin", &self.origin)
            .field("request_id_header", &self.request_id_header)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), message: message.into() }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Builds the settings from the environment.
pub fn parse(env: &EnvValues) -> Result<Settings, ConfigError> {
    let text = non_empty(&env.config)
        .ok_or_else(|| err(CONFIG_VAR, "not set: it must hold the gateway JSON document (a [vars] entry in wrangler.toml)"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| err(CONFIG_VAR, format!("not JSON: {e}")))?;
    let Value::Object(mut doc) = value else {
        return Err(err(CONFIG_VAR, "must be a JSON object (the gateway document)"));
    };
    if let Some(secret) = non_empty(&env.api_keys) {
        if doc.contains_key("api_keys") {
            return Err(err(
                "api_keys",
                format!("set both in {CONFIG_VAR} and in the {API_KEYS_SECRET} secret; keep it in the secret only"),
            ));
        }
        // The message must not echo the secret: serde's errors carry positions, not input.
        let keys: Value = serde_json::from_str(secret).map_err(|e| err(API_KEYS_SECRET, format!("not JSON: {e}")))?;
        if !keys.is_object() {
            return Err(err(API_KEYS_SECRET, "must be the api_keys object: {\"hmac_keys\": [{\"kid\": ..., \"secret\": ...}]}"));
        }
        doc.insert("api_keys".to_string(), keys);
    }
    let bytes = serde_json::to_vec(&Value::Object(doc)).map_err(|e| err(CONFIG_VAR, e.to_string()))?;
    let mut gateway = Gateway::from_json(&bytes)?;

    match (non_empty(&env.feed_key_id), non_empty(&env.feed_secret)) {
        (None, None) => {}
        (Some(key_id), Some(secret)) => {
            if gateway.config().revocations.is_none() {
                return Err(err(FEED_KEY_ID_SECRET, "set, but the configuration has no revocations feed"));
            }
            gateway.set_feed_credential(key_id.to_string(), secret.to_string());
        }
        (Some(_), None) => return Err(err(FEED_SECRET_SECRET, format!("not set, but {FEED_KEY_ID_SECRET} is; set both or neither"))),
        (None, Some(_)) => return Err(err(FEED_KEY_ID_SECRET, format!("not set, but {FEED_SECRET_SECRET} is; set both or neither"))),
    }

    let origin = match (non_empty(&env.origin), env.origin_service) {
        (Some(_), true) => {
            return Err(err(ORIGIN_VAR, format!("set together with the {ORIGIN_SERVICE} service binding; use one of them")))
        }
        (None, true) => Origin::Service,
        (Some(url), false) => Origin::Url(parse_origin(url).ok_or_else(|| {
            err(ORIGIN_VAR, "must be an http(s) URL origin such as https://api.internal.example.com (no path)")
        })?),
        (None, false) => {
            return Err(err(
                ORIGIN_VAR,
                format!("not set: set it to the origin's URL, or bind the origin Worker as the service {ORIGIN_SERVICE}"),
            ))
        }
    };

    let request_id_header = match non_empty(&env.request_id_header) {
        None => "x-request-id".to_string(),
        Some(h) if h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') => h.to_string(),
        Some(_) => return Err(err(REQUEST_ID_HEADER_VAR, "must be a lowercase header name")),
    };

    let sources: Vec<(Source, String)> = gateway.status().sources.into_iter().map(|s| (s.source, s.url)).collect();
    for (source, url) in &sources {
        if parse_origin_prefix(url).is_none() {
            let field = match source {
                Source::Jwks(i) => format!("providers[{i}].jwks_uri"),
                Source::Revocations => "revocations.uri".to_string(),
            };
            return Err(err(field, "must be an absolute http(s) URL"));
        }
    }
    let cache_ttl_s = gateway.config().fetch.jwks_max_stale_s.max(60);
    Ok(Settings { gateway, origin, request_id_header, sources, cache_ttl_s })
}

/// `scheme://host[:port]` in lowercase, for an origin with no path (a trailing `/` is allowed).
pub fn parse_origin(url: &str) -> Option<String> {
    let (origin, rest) = parse_origin_prefix(url)?;
    (rest.is_empty() || rest == "/").then_some(origin)
}

/// Splits an absolute http(s) URL into its lowercase origin and the rest.
fn parse_origin_prefix(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || !authority.bytes().all(|b| b > 0x20 && b < 0x7f) {
        return None;
    }
    Some((format!("{scheme}://{}", authority.to_ascii_lowercase()), tail))
}

/// The Cache API key of a fetched source: a URL on a reserved name, derived from the URL the
/// material comes from (so two deployments with the same issuer share it, and a changed URL
/// never reads another's copy).
pub fn cache_key(url: &str) -> String {
    // FNV-1a, 64-bit: a key, not a security boundary (the material is verified when applied).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("https://authgate-material.invalid/v1/{h:016x}")
}

/// Whether a client-sent request id is worth echoing (auth-core sanitises it further).
pub fn usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().any(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = r#"{"providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "http://127.0.0.1:9000/jwks/0.json"}],
        "revocations": {"uri": "http://127.0.0.1:9000/v1/revocations"},
        "routes": [{"prefix": "/", "require": "authenticated"}]}"#;
    const HMAC: &str = r#"{"hmac_keys": [{"kid": "k", "secret": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}]}"#;

    fn env() -> EnvValues {
        EnvValues { config: Some(CORE.into()), origin: Some("http://127.0.0.1:8001".into()), ..Default::default() }
    }

    #[test]
    fn full_environment_parses() {
        let mut e = env();
        e.api_keys = Some(HMAC.into());
        e.feed_key_id = Some("agk_x".into());
        e.feed_secret = Some("s".into());
        e.request_id_header = Some("x-trace".into());
        let mut s = parse(&e).unwrap();
        assert_eq!(s.origin, Origin::Url("http://127.0.0.1:8001".into()));
        assert_eq!(s.request_id_header, "x-trace");
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.cache_ttl_s, 3600);
        let feed = std::iter::from_fn(|| s.gateway.poll_fetch(0)).find(|f| f.source == Source::Revocations).unwrap();
        assert!(feed.headers.contains(&("x-api-key".to_string(), "agk_x".to_string())));
        assert!(feed.headers.contains(&("x-api-secret".to_string(), "s".to_string())));
    }

    #[test]
    fn service_binding_is_an_origin() {
        let e = EnvValues { origin: None, origin_service: true, ..env() };
        assert_eq!(parse(&e).unwrap().origin, Origin::Service);
    }

    #[test]
    fn errors_name_the_field() {
        let with = |f: &dyn Fn(&mut EnvValues)| {
            let mut e = env();
            f(&mut e);
            e
        };
        let cases: Vec<(EnvValues, &str)> = vec![
            (with(&|e| e.config = None), CONFIG_VAR),
            (with(&|e| e.config = Some("  ".into())), CONFIG_VAR),
            (with(&|e| e.config = Some("{".into())), CONFIG_VAR),
            (with(&|e| e.config = Some("[]".into())), CONFIG_VAR),
            (with(&|e| e.config = Some(r#"{"routes": [{"prefix": "/", "require": "nope"}]}"#.into())), "routes[0].require"),
            (with(&|e| e.api_keys = Some("nope".into())), API_KEYS_SECRET),
            (with(&|e| e.api_keys = Some("[1]".into())), API_KEYS_SECRET),
            (
                with(&|e| e.api_keys = Some(r#"{"hmac_keys": [{"kid": "k", "secret": "short"}]}"#.into())),
                "api_keys.hmac_keys[0].secret",
            ),
            (
                with(&|e| {
                    e.config = Some(CORE.replacen('{', &format!("{{\"api_keys\": {HMAC},"), 1));
                    e.api_keys = Some(HMAC.into());
                }),
                "api_keys",
            ),
            (with(&|e| e.feed_key_id = Some("agk_x".into())), FEED_SECRET_SECRET),
            (with(&|e| e.feed_secret = Some("s".into())), FEED_KEY_ID_SECRET),
            (with(&|e| e.origin = None), ORIGIN_VAR),
            (with(&|e| e.origin = Some("http://h/path".into())), ORIGIN_VAR),
            (with(&|e| e.origin = Some("ftp://h".into())), ORIGIN_VAR),
            (with(&|e| e.origin_service = true), ORIGIN_VAR),
            (with(&|e| e.request_id_header = Some("X-Id".into())), REQUEST_ID_HEADER_VAR),
        ];
        for (e, path) in cases {
            match parse(&e) {
                Ok(_) => panic!("{e:?}: accepted"),
                Err(got) => assert_eq!(got.path, path, "{e:?}: {got}"),
            }
        }
    }

    #[test]
    fn secret_values_stay_out_of_error_messages() {
        let mut e = env();
        e.api_keys = Some(r#"{"hmac_keys": [{"kid": "k", "secret": "TOPSECRETVALUE"}"#.into());
        let msg = parse(&e).unwrap_err().to_string();
        assert!(!msg.contains("TOPSECRETVALUE"), "{msg}");
        e.api_keys = Some(r#"{"hmac_keys": [{"kid": "k", "secret": "TOPSECRETVALUE"}]}"#.into());
        let msg = parse(&e).unwrap_err().to_string();
        assert!(!msg.contains("TOPSECRETVALUE"), "{msg}");
    }

    #[test]
    fn origins_and_cache_keys() {
        assert_eq!(parse_origin("HTTPS://Api.Example.com/").as_deref(), Some("https://api.example.com"));
        assert_eq!(parse_origin("http://h:1").as_deref(), Some("http://h:1"));
        for bad in ["http://h/x", "http://u@h", "h", "http://", "http://h?x"] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
        assert_ne!(cache_key("http://a/jwks"), cache_key("http://a/jwks2"));
        assert!(cache_key("x").starts_with("https://authgate-material.invalid/v1/"));
        assert!(usable_request_id("abc-1") && !usable_request_id("--") && !usable_request_id(""));
    }
}
