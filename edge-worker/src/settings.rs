//! The worker's settings, read from its environment (vars and secrets; see
//! docs/edge-worker.md):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `AUTHGATE_CONFIG` | var (JSON text or a JSON object) | the auth-core gateway document, the schema the plugin and the CLI read |
//! | `AUTHGATE_API_KEYS` | secret, optional | the document's `api_keys` object (the HMAC keys), kept out of the var |
//! | `AUTHGATE_FEED_KEY_ID`, `AUTHGATE_FEED_SECRET` | secrets, optional | the revocation-feed credential |
//! | `AUTHGATE_CACHE_KEY` | secret, optional | authenticates the copies kept in the Cache API (default: derived from the other secrets) |
//! | `AUTHGATE_ORIGIN` | var | `scheme://host[:port]` requests are forwarded to |
//! | `ORIGIN` | service binding | alternative to `AUTHGATE_ORIGIN`: forward to another Worker |
//! | `AUTHGATE_REQUEST_ID_HEADER` | var, optional | request header whose value becomes `x-error-id` (default `x-request-id`; `cf-ray` is the fallback) |
//! | `AUTHGATE_SIGNATURES` | var, optional | `runtime` (default): EdDSA, ES256 and RS256 signatures checked by the runtime's WebCrypto; `worker`: by the worker's own WebAssembly code |
//!
//! Every error names the field it is about, in auth-core's `path: message` form: a path in the
//! gateway document, or the name of the variable. URLs follow auth-core's one rule.

use auth_core::url::HttpUrl;
use auth_core::{b64, ConfigError, Gateway};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const CONFIG_VAR: &str = "AUTHGATE_CONFIG";
pub const API_KEYS_SECRET: &str = "AUTHGATE_API_KEYS";
pub const FEED_KEY_ID_SECRET: &str = "AUTHGATE_FEED_KEY_ID";
pub const FEED_SECRET_SECRET: &str = "AUTHGATE_FEED_SECRET";
pub const CACHE_KEY_SECRET: &str = "AUTHGATE_CACHE_KEY";
pub const ORIGIN_VAR: &str = "AUTHGATE_ORIGIN";
pub const ORIGIN_SERVICE: &str = "ORIGIN";
pub const REQUEST_ID_HEADER_VAR: &str = "AUTHGATE_REQUEST_ID_HEADER";
pub const SIGNATURES_VAR: &str = "AUTHGATE_SIGNATURES";

/// Every environment name the worker reads, in the order [`EnvValues`] holds them.
pub const ENV_NAMES: [&str; 8] = [
    CONFIG_VAR,
    API_KEYS_SECRET,
    FEED_KEY_ID_SECRET,
    FEED_SECRET_SECRET,
    CACHE_KEY_SECRET,
    ORIGIN_VAR,
    REQUEST_ID_HEADER_VAR,
    SIGNATURES_VAR,
];

/// The environment's values as text (`None` when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvValues {
    pub config: Option<String>,
    pub api_keys: Option<String>,
    pub feed_key_id: Option<String>,
    pub feed_secret: Option<String>,
    pub cache_key: Option<String>,
    pub origin: Option<String>,
    pub request_id_header: Option<String>,
    pub signatures: Option<String>,
    /// Whether the `ORIGIN` service binding exists.
    pub origin_service: bool,
}

impl EnvValues {
    /// From the values of [`ENV_NAMES`], in order.
    pub fn from_names(values: [Option<String>; 8], origin_service: bool) -> EnvValues {
        let [config, api_keys, feed_key_id, feed_secret, cache_key, origin, request_id_header, signatures] = values;
        EnvValues { config, api_keys, feed_key_id, feed_secret, cache_key, origin, request_id_header, signatures, origin_service }
    }
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
    /// Authenticates Cache API copies; `None`: the worker has no secret, the Cache API is not used.
    pub cache_key: Option<[u8; 32]>,
    /// EdDSA, ES256 and RS256 signatures go to the runtime's WebCrypto (`AUTHGATE_SIGNATURES`).
    pub webcrypto: bool,
}

impl core::fmt::Debug for Settings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Settings").field("origin", &self.origin).field("request_id_header", &self.request_id_header).finish_non_exhaustive()
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Builds the settings from the environment.
pub fn parse(env: &EnvValues) -> Result<Settings, ConfigError> {
    let text = non_empty(&env.config)
        .ok_or_else(|| ConfigError::new(CONFIG_VAR, "not set: it must hold the gateway JSON document (a [vars] entry in wrangler.toml)"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::new(CONFIG_VAR, format!("not JSON: {e}")))?;
    let Value::Object(mut doc) = value else {
        return Err(ConfigError::new(CONFIG_VAR, "must be a JSON object (the gateway document)"));
    };
    if let Some(secret) = non_empty(&env.api_keys) {
        if doc.contains_key("api_keys") {
            return Err(ConfigError::new(
                "api_keys",
                format!("set both in {CONFIG_VAR} and in the {API_KEYS_SECRET} secret; keep it in the secret only"),
            ));
        }
        // The message must not echo the secret: serde's errors carry positions, not input.
        let keys: Value = serde_json::from_str(secret).map_err(|e| ConfigError::new(API_KEYS_SECRET, format!("not JSON: {e}")))?;
        if !keys.is_object() {
            return Err(ConfigError::new(
                API_KEYS_SECRET,
                "must be the api_keys object: {\"hmac_keys\": [{\"kid\": ..., \"secret\": ...}]}",
            ));
        }
        doc.insert("api_keys".to_string(), keys);
    }
    let bytes = serde_json::to_vec(&Value::Object(doc)).map_err(|e| ConfigError::new(CONFIG_VAR, e.to_string()))?;
    let mut gateway = Gateway::from_json(&bytes)?;

    match (non_empty(&env.feed_key_id), non_empty(&env.feed_secret)) {
        (None, None) => {}
        (Some(key_id), Some(secret)) => gateway
            .set_feed_credential(key_id.to_string(), secret.to_string())
            .map_err(|e| ConfigError::new(FEED_KEY_ID_SECRET, format!("{FEED_KEY_ID_SECRET} and {FEED_SECRET_SECRET}: {}", e.message)))?,
        (Some(_), None) => {
            return Err(ConfigError::new(FEED_SECRET_SECRET, format!("not set, but {FEED_KEY_ID_SECRET} is; set both or neither")))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(FEED_KEY_ID_SECRET, format!("not set, but {FEED_SECRET_SECRET} is; set both or neither")))
        }
    }

    let origin = match (non_empty(&env.origin), env.origin_service) {
        (Some(_), true) => {
            return Err(ConfigError::new(ORIGIN_VAR, format!("set together with the {ORIGIN_SERVICE} service binding; use one of them")))
        }
        (None, true) => Origin::Service,
        (Some(url), false) => Origin::Url(parse_origin(url).ok_or_else(|| {
            ConfigError::new(ORIGIN_VAR, "must be an http(s) URL origin such as https://api.internal.example.com (no path)")
        })?),
        (None, false) => {
            return Err(ConfigError::new(
                ORIGIN_VAR,
                format!("not set: set it to the origin's URL, or bind the origin Worker as the service {ORIGIN_SERVICE}"),
            ))
        }
    };

    let request_id_header = match non_empty(&env.request_id_header) {
        None => "x-request-id".to_string(),
        Some(h) if h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') => h.to_string(),
        Some(_) => return Err(ConfigError::new(REQUEST_ID_HEADER_VAR, "must be a lowercase header name")),
    };
    let cache_key = cache_key(env)?;
    let webcrypto = match non_empty(&env.signatures) {
        None | Some("runtime") => true,
        Some("worker") => false,
        Some(_) => return Err(ConfigError::new(SIGNATURES_VAR, "must be runtime (WebCrypto, the default) or worker")),
    };
    Ok(Settings { gateway, origin, request_id_header, cache_key, webcrypto })
}

/// The key Cache API copies are sealed with: `AUTHGATE_CACHE_KEY` (base64url, at least 32 bytes),
/// else derived from the secrets the worker holds anyway (the feed secret, the HMAC keys). A
/// worker with no secret at all keeps nothing in the Cache API: any Worker of the zone can write
/// there, and an unauthenticated copy could bring its own keys.
fn cache_key(env: &EnvValues) -> Result<Option<[u8; 32]>, ConfigError> {
    let derive = |label: &str, secret: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"authgate/edge-worker/cache-key/v1\0");
        h.update(label.as_bytes());
        h.update(b"\0");
        h.update(secret);
        h.finalize().into()
    };
    if let Some(k) = non_empty(&env.cache_key) {
        let raw = b64::decode(k.as_bytes())
            .filter(|r| r.len() >= 32)
            .ok_or_else(|| ConfigError::new(CACHE_KEY_SECRET, "must be at least 32 random bytes, base64url without padding"))?;
        return Ok(Some(derive(CACHE_KEY_SECRET, &raw)));
    }
    Ok(non_empty(&env.feed_secret)
        .map(|s| derive(FEED_SECRET_SECRET, s.as_bytes()))
        .or_else(|| non_empty(&env.api_keys).map(|s| derive(API_KEYS_SECRET, s.as_bytes()))))
}

/// `scheme://host[:port]` in lowercase, for an origin with no path (a trailing `/` is allowed).
pub fn parse_origin(url: &str) -> Option<String> {
    HttpUrl::parse(url).ok().filter(HttpUrl::is_origin).map(|u| u.origin())
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
        assert_eq!(s.gateway.sources().len(), 2);
        assert!(s.cache_key.is_some(), "derived from the feed secret");
        let now = auth_core::UnixTime::from_secs(0);
        let keys = s.gateway.poll_fetch(now).unwrap();
        s.gateway.fetch_failed(keys.id, now);
        let feed = s.gateway.poll_fetch(now).unwrap();
        assert_eq!(feed.source, auth_core::Source::Revocations);
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
            (with(&|e| e.api_keys = Some(r#"{"hmac_keys": [{"kid": "k", "secret": "short"}]}"#.into())), "api_keys.hmac_keys[0].secret"),
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
    fn origins() {
        assert_eq!(parse_origin("HTTPS://Api.Example.com/").as_deref(), Some("https://api.example.com"));
        assert_eq!(parse_origin("http://h:1").as_deref(), Some("http://h:1"));
        for bad in ["http://h/x", "http://u@h", "h", "http://", "http://h?x"] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn cache_keys_come_from_a_secret_or_not_at_all() {
        let with = |f: &dyn Fn(&mut EnvValues)| {
            let mut e = env();
            f(&mut e);
            parse(&e).map(|s| s.cache_key)
        };
        assert_eq!(with(&|_| {}).unwrap(), None, "no secret: no Cache API");
        let own = with(&|e| e.cache_key = Some("kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE".into())).unwrap();
        let from_feed = with(&|e| {
            e.feed_key_id = Some("agk_x".into());
            e.feed_secret = Some("s".into());
        })
        .unwrap();
        let from_ring = with(&|e| e.api_keys = Some(HMAC.into())).unwrap();
        assert!(own.is_some() && from_feed.is_some() && from_ring.is_some());
        assert_ne!(own, from_feed);
        assert_ne!(from_feed, from_ring);
        assert_eq!(with(&|e| e.cache_key = Some("short".into())).unwrap_err().path, CACHE_KEY_SECRET);
    }
}
