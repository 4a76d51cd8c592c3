//! The gateway configuration: one JSON schema shared by the proxy-wasm plugin, the edge worker,
//! the `authgate` CLI and `auth-server gateway-config`. Parsed once into these types; every
//! unknown field is an error, and every error names the field it is about.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ConfigError;
use crate::objects::objects_only;

// Every struct of the document is read from an object only (see `objects`).
objects_only!(
    serialize: GatewayConfig, ProviderConfig, ApiKeysConfig, HmacKeyConfig, RevocationsConfig, FeedCredential, RouteConfig,
    AccessRules, HeaderNames, CookieConfig, FetchPolicy, CacheConfig, Limits, VerifierConfig
);

/// The whole gateway configuration document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Trusted JWT issuers.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// HMAC key ring for API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<ApiKeysConfig>,
    /// The auth-server's revocation feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations: Option<RevocationsConfig>,
    /// Route rules, first match wins. A request no rule matches is denied.
    pub routes: Vec<RouteConfig>,
    /// Names of the identity headers set on allowed requests.
    #[serde(default)]
    pub headers: HeaderNames,
    /// When and how JWKS are (re)fetched.
    #[serde(default)]
    pub fetch: FetchPolicy,
    /// The verified-token cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Input limits.
    #[serde(default)]
    pub limits: Limits,
    /// Web apps: the access token may come in a cookie (the auth-server's cookie mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieConfig>,
}

/// A trusted JWT issuer and its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Exact `iss` value of this issuer's tokens.
    pub issuer: String,
    /// The token's `aud` (string or array) must contain one of these.
    pub audiences: Vec<String>,
    /// Inline JWKS (`{"keys": [...]}`); the only place symmetric (`oct`, HS256) keys may come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Where the issuer publishes its JWKS; fetched by the host when `poll_fetch` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Algorithms accepted from this issuer.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// Leeway for `exp` and `nbf`, in seconds (at most 300).
    #[serde(default = "default_clock_skew")]
    pub clock_skew_s: u64,
    /// Accepted `typ` header values (compared case-insensitively, `application/` prefix optional).
    /// When set, a token without `typ` is refused. When absent, any `typ` is accepted except
    /// `revocations+jwt`, which is never accepted as a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<Vec<String>>,
    /// ES256 signatures whose `s` is in the upper half of the group order are malleable (a second
    /// valid signature of the same token); they are refused unless this is set, for issuers whose
    /// signer does not normalise `s` (OpenSSL-based ones often do not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub es256_accept_high_s: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The JWS algorithms authgate verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

impl Alg {
    /// The JOSE name of the algorithm.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::HS256 => "HS256",
        }
    }

    /// Parses a JOSE `alg` value exactly (case-sensitive, as RFC 7515 requires).
    pub fn from_jose(s: &str) -> Option<Alg> {
        match s {
            "EdDSA" => Some(Alg::EdDSA),
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            "HS256" => Some(Alg::HS256),
            _ => None,
        }
    }
}

fn default_algorithms() -> Vec<Alg> {
    vec![Alg::EdDSA, Alg::ES256, Alg::RS256]
}

impl ProviderConfig {
    /// `clock_skew_s` when the config does not say.
    pub const DEFAULT_CLOCK_SKEW_S: u64 = 30;
}

fn default_clock_skew() -> u64 {
    ProviderConfig::DEFAULT_CLOCK_SKEW_S
}

/// The HMAC key ring API keys are verified with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    pub hmac_keys: Vec<HmacKeyConfig>,
}

/// One HMAC key: `secret` is base64url (no padding), at least 32 bytes once decoded.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct HmacKeyConfig {
    pub kid: String,
    pub secret: String,
}

impl core::fmt::Debug for HmacKeyConfig {
    // Secrets never reach logs, not even through Debug.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HmacKeyConfig").field("kid", &self.kid).field("secret", &"<redacted>").finish()
    }
}

/// The revocation feed (`GET /v1/revocations` on the auth-server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RevocationsConfig {
    pub uri: String,
    /// Poll interval in seconds.
    #[serde(default = "default_feed_refresh")]
    pub refresh_s: u64,
    /// Issuer whose keys sign the feed; defaults to the first provider's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The gateway's own API key (role `gateway`), sent as `x-api-key` / `x-api-secret`.
    /// Hosts may inject it from a secret store instead of the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<FeedCredential>,
}

fn default_feed_refresh() -> u64 {
    5
}

/// The API key a gateway presents to the revocation feed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct FeedCredential {
    pub key_id: String,
    pub secret: String,
}

impl core::fmt::Debug for FeedCredential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FeedCredential").field("key_id", &self.key_id).field("secret", &"<redacted>").finish()
    }
}

/// One route rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matches this path and everything below it, by whole segments (`/api` matches `/api` and
    /// `/api/x`, not `/apix`; a prefix ending in `/` matches any path starting with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Matches exactly this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Methods this rule applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    pub require: Requirement,
    /// Credential kinds accepted; both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialKind>>,
    /// What to do when the revocation feed or an issuer's keys are past their stale bound.
    #[serde(default)]
    pub on_stale: StalePolicy,
    /// Remove the credential headers before the request goes upstream.
    #[serde(default)]
    pub strip_credential: bool,
}

/// What a route requires of the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    /// No credential looked at; no identity forwarded.
    Anonymous,
    /// Any valid credential.
    Authenticated,
    /// A valid credential meeting every non-empty rule.
    Rules(AccessRules),
}

/// Organisation, role and scope rules; every non-empty list must be satisfied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    /// The credential's `org` must be one of these (an operator's `/admin` is not a tenant's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_role: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequirementVisitor;
        impl<'de> Visitor<'de> for RequirementVisitor {
            type Value = Requirement;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str(r#""anonymous", "authenticated" or an object with orgs, any_role, all_roles, scopes"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Requirement, E> {
                match v {
                    "anonymous" => Ok(Requirement::Anonymous),
                    "authenticated" => Ok(Requirement::Authenticated),
                    other => Err(E::unknown_variant(other, &["anonymous", "authenticated"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Requirement, A::Error> {
                <AccessRules as Deserialize>::deserialize(de::value::MapAccessDeserializer::new(map)).map(Requirement::Rules)
            }
        }
        deserializer.deserialize_any(RequirementVisitor)
    }
}

impl Serialize for Requirement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Requirement::Anonymous => serializer.serialize_str("anonymous"),
            Requirement::Authenticated => serializer.serialize_str("authenticated"),
            Requirement::Rules(rules) => rules.serialize(serializer),
        }
    }
}

/// The two kinds of credential a gateway verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Jwt,
    ApiKey,
}

impl CredentialKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::ApiKey => "api_key",
        }
    }
}

/// Behaviour once verification material is older than its bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Answer 503 (`revocations_stale` / `keys_unavailable`).
    #[default]
    FailClosed,
    /// Keep verifying signatures with the last good keys and skip revocation checks.
    FailOpen,
}

/// Identity header names. Client-sent headers starting with `strip_prefix`, and every name
/// below, are removed from every request before anything else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub subject: String,
    pub org: String,
    pub roles: String,
    pub method: String,
    pub session: String,
    pub key_id: String,
    pub email: String,
    pub scope: String,
    pub client_id: String,
    /// `x-auth-claims` (base64url JSON of the verified claims); not sent when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
    pub strip_prefix: String,
}

impl HeaderNames {
    /// Every identity header name with its field name (`claims` only when set).
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![
            ("subject", self.subject.as_str()),
            ("org", self.org.as_str()),
            ("roles", self.roles.as_str()),
            ("method", self.method.as_str()),
            ("session", self.session.as_str()),
            ("key_id", self.key_id.as_str()),
            ("email", self.email.as_str()),
            ("scope", self.scope.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        if let Some(c) = &self.claims {
            v.push(("claims", c.as_str()));
        }
        v
    }
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            subject: "x-auth-subject".into(),
            org: "x-auth-org".into(),
            roles: "x-auth-roles".into(),
            method: "x-auth-method".into(),
            session: "x-auth-session".into(),
            key_id: "x-auth-key-id".into(),
            email: "x-auth-email".into(),
            scope: "x-auth-scope".into(),
            client_id: "x-auth-client-id".into(),
            claims: None,
            strip_prefix: "x-auth-".into(),
        }
    }
}

/// Where a browser's access token is, and how its requests prove they are not cross-site
/// forgeries (double submit: a page of the site copies the readable CSRF cookie into a header,
/// which another site can neither read nor set).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// The cookie holding the access token (auth-server: `__Host-authgate_at`).
    pub name: String,
    /// The cookie holding the CSRF token (auth-server: `__Host-authgate_csrf`).
    pub csrf_cookie: String,
    /// The request header that must repeat the CSRF cookie on unsafe methods.
    #[serde(default = "default_csrf_header")]
    pub csrf_header: String,
    /// When non-empty, an `Origin` header sent with an unsafe cookie request must be one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

fn default_csrf_header() -> String {
    "x-csrf-token".into()
}

/// Timing rules for JWKS and feed fetches, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields, default)]
pub struct FetchPolicy {
    /// Fetched JWKS are refreshed this long after the last success.
    pub jwks_refresh_s: u64,
    /// Last good JWKS keep being used this long after the last success when refreshes fail.
    pub jwks_max_stale_s: u64,
    /// An unknown `kid` triggers at most one refetch per this interval and issuer.
    pub unknown_kid_cooldown_s: u64,
    /// First retry delay after a failed fetch; doubles per failure up to `retry_max_s`.
    pub retry_min_s: u64,
    pub retry_max_s: u64,
    /// A fetch with no answer after this long counts as failed.
    pub timeout_s: u64,
    /// Cold start: a request that needs material the gateway has never had (its first JWKS or
    /// feed fetch is still on its way) is held this long at most (and never longer than
    /// `timeout_s`), then decided; 0 answers 503 at once. Both gateways follow it (see
    /// `Deny::hold_until`). At most 60000.
    pub cold_start_wait_ms: u64,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            jwks_refresh_s: 300,
            jwks_max_stale_s: 3600,
            unknown_kid_cooldown_s: 30,
            retry_min_s: 1,
            retry_max_s: 60,
            timeout_s: 10,
            cold_start_wait_ms: 3000,
        }
    }
}

/// Verified-token cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Entries at most; 0 disables the cache.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_entries: 10_000 }
    }
}

/// Input limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest bearer token or API key accepted, in bytes.
    pub max_token_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_token_bytes: 8192 }
    }
}

/// What a verifier needs without routes or fetching (the auth-server checking the credentials it
/// issued): issuers with inline keys, the API-key ring, the limits. The same types as the
/// gateway document, so the rules are the same.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<ApiKeysConfig>,
    #[serde(default)]
    pub limits: Limits,
}

impl GatewayConfig {
    /// Parses a JSON document into the typed config. Type errors name the field; semantic
    /// validation happens in [`crate::Gateway::new`].
    pub fn from_json(bytes: &[u8]) -> Result<GatewayConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let cfg: GatewayConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::new(if path.is_empty() { ".".to_string() } else { path }, strip_position(&inner))
        })?;
        de.end().map_err(|e| ConfigError::new(".", strip_position(&e)))?;
        Ok(cfg)
    }

    /// The config as pretty JSON (what `auth-server gateway-config` prints).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// serde_json appends "at line L column C"; the field path already says where.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    // Every error here comes from a slice deserializer, so each carries a position.
    let s = match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    crate::objects::json_words(&s)
}
