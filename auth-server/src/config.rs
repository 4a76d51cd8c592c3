//! Typed configuration: defaults, then a TOML file, then `AUTHGATE_*` environment variables
//! (`__` separates nesting levels: `AUTHGATE_TOKENS__ACCESS_TTL_S=300`), then the conventional
//! `DATABASE_URL`, `REDIS_URL`, `SMTP_URL`. Validated once at start; errors name the field.

use std::path::{Path, PathBuf};

use auth_core::config::HmacKeyConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: String,
    /// Public base URL: the `iss` of every token and the base of every URL handed out.
    pub public_url: String,
    /// Directory for the SQLite database, the generated master key and the email outbox.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `sqlite://<data_dir>/authgate.db`.
    pub database_url: Option<String>,
    /// Maximum database connections per replica.
    pub database_max_connections: u32,
    /// `redis://...`: ephemeral state (login sessions, codes, counters) shared by replicas.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    pub redis_prefix: String,
    /// base64url of 32 random bytes; seals private keys and TOTP secrets at rest. Required with
    /// PostgreSQL (replicas must share it); with SQLite it is generated into `data_dir` if unset.
    #[serde(skip_serializing)]
    pub master_key: Option<String>,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    /// tracing filter, e.g. `info` or `auth_server=debug,info`.
    pub log_level: String,
    /// Trust the last address of `x-forwarded-for` as the client address (behind a proxy).
    pub trust_forwarded_for: bool,
    pub tokens: TokensConfig,
    pub passwords: PasswordsConfig,
    pub codes: CodesConfig,
    pub login: LoginConfig,
    pub rate_limits: RateLimitsConfig,
    pub email: EmailConfig,
    pub cookies: CookiesConfig,
    pub api_keys: ApiKeysConfig,
    pub feed: FeedConfig,
    pub platform: PlatformConfig,
    pub roles: RolesConfig,
    pub signup: SignupConfig,
    pub metrics: MetricsConfig,
    pub pages: PagesConfig,
    pub passkeys: PasskeysConfig,
    pub federation: FederationConfig,
    pub domains: DomainsConfig,
    pub oidc: OidcConfig,
    pub notifications: NotificationsConfig,
    pub audit: AuditConfig,
    pub webhooks: WebhooksConfig,
}

/// Webhooks: organisations' audit events POSTed to their admins' URLs (docs/auth-server.md#webhooks).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliver (and accept registrations). Off: nothing is queued.
    pub enabled: bool,
    /// Allow `http://` URLs (default: `https://` only).
    pub allow_http: bool,
    /// Allow URLs whose host is, or resolves to, a loopback, private, link-local or otherwise
    /// non-public address (default: refused, so that a tenant cannot aim the server at its own
    /// network). Checked at registration and at each delivery's connection.
    pub allow_private_addresses: bool,
    /// Webhooks per organisation.
    pub max_per_org: i64,
    /// Attempts per event before the delivery is given up (1 to 50).
    pub max_attempts: i64,
    /// The first retry's delay; each next one doubles, up to `retry_max_ms`.
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
    /// How long a receiver may take to answer.
    pub timeout_ms: i64,
    /// How often each replica looks for due deliveries.
    pub poll_ms: i64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: true,
            allow_http: false,
            allow_private_addresses: false,
            max_per_org: 10,
            max_attempts: 15,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            timeout_ms: 10_000,
            poll_ms: 1_000,
        }
    }
}

/// The audit log (docs/auth-server.md#audit-log).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this many days are deleted (1 to 3650).
    pub retention_days: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 365 }
    }
}

/// Which security notifications are emailed (all on by default).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// A sign-in from a device or network the account had not used.
    pub new_device: bool,
    /// The account locked after repeated failures.
    pub lockout: bool,
    /// A refresh token used twice (the session was revoked).
    pub refresh_reuse: bool,
    /// The password changed (while signed in, or by reset).
    pub password_changed: bool,
    /// The account's address changed (told to the old address).
    pub email_changed: bool,
    /// A second step, the authenticator app or a passkey added or removed.
    pub factors_changed: bool,
    /// An API key created or revoked.
    pub api_keys: bool,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            new_device: true,
            lockout: true,
            refresh_reuse: true,
            password_changed: true,
            email_changed: true,
            factors_changed: true,
            api_keys: true,
        }
    }
}

/// authgate as an OpenID Connect provider (`/oauth2/authorize`): on when the hosted pages are.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// ID-token algorithms clients may ask for besides `tokens.alg` (EdDSA, ES256, RS256): a key
    /// of each is kept and rotated with the access-token key.
    pub id_token_algs: Vec<String>,
    /// How long an authorization code may wait for its exchange.
    pub code_ttl_s: i64,
    /// How long an authorization request waits for the person to sign in and consent.
    pub request_ttl_s: i64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig { id_token_algs: Vec::new(), code_ttl_s: 60, request_ttl_s: 900 }
    }
}

/// Where `/metrics` is served. Neither set: nowhere (metrics are still collected).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A separate address (e.g. `127.0.0.1:9090`) serving only `/metrics`; then the public
    /// listener does not serve it at all.
    pub listen: Option<String>,
    /// A bearer token (at least 32 characters) `/metrics` requires; without `listen`, it makes
    /// `/metrics` available on the public listener to holders of the token.
    #[serde(skip_serializing)]
    pub token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// The operator organisation: the only one whose members and credentials may hold platform
    /// roles (`gateway`, `introspect`, `platform_admin`). Created at start if missing; nobody
    /// can sign up into it.
    pub operator_org: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolesConfig {
    /// Tenant roles: the roles an organisation's admins may grant to its members (and put on
    /// keys and clients). Platform roles are never tenant roles.
    pub tenant: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    /// Let a sign-up create its own organisation (`org_name`), its creator the admin. Off: every
    /// sign-up joins the default organisation with no roles, and `org_name` is refused.
    pub allow_org_creation: bool,
    /// How long an invitation's emailed link works.
    pub invitation_ttl_s: i64,
}

impl Default for SignupConfig {
    fn default() -> Self {
        SignupConfig { allow_org_creation: false, invitation_ttl_s: 7 * 86400 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Algorithm of newly generated signing keys: EdDSA, ES256, RS256 or HS256.
    pub alg: String,
    pub access_ttl_s: i64,
    /// A refresh token is usable this long after it was issued (each use issues a new one).
    pub refresh_ttl_s: i64,
    /// Absolute lifetime of a session, whatever the refreshes.
    pub session_ttl_s: i64,
    /// `aud` of access tokens.
    pub audience: String,
    /// How often each replica reloads the signing keys from the database.
    pub key_reload_s: u64,
    /// Largest difference between a replica's clock and the database's. Revocation cut-offs
    /// (database time) reach this far beyond, so a token minted by a replica whose clock runs
    /// ahead is still covered.
    pub max_clock_skew_s: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsConfig {
    /// argon2id memory cost in KiB (OWASP: 19456 with t=2).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub min_length: usize,
    /// Hashes computed at once; further requests queue.
    pub max_concurrent_hashes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodesConfig {
    pub digits: u32,
    pub ttl_s: i64,
    pub max_attempts: i64,
    /// Password-reset token lifetime.
    pub reset_ttl_s: i64,
    /// Emailed secrets (codes, reset links, decoys alike) per address per `issue_window_s`;
    /// beyond it 429 `too_many_codes` and nothing is sent.
    pub issue_limit: i64,
    pub issue_window_s: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Lifetime of an `x-session-token` (multi-step login in progress).
    pub session_token_ttl_s: i64,
    /// Failed password/code attempts per account within `lockout_window_s` before a lockout.
    pub lockout_threshold: i64,
    pub lockout_window_s: i64,
    pub lockout_s: i64,
    /// Changing the login factors (`PUT /v1/me/mfa`, TOTP enrolment) needs a session whose login
    /// completed within this many seconds, with every factor the account requires.
    pub reauth_window_s: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Requests per client address per window on the credential endpoints (login, sign-up,
    /// codes, password reset, token).
    pub auth_per_ip: i64,
    /// Requests per account (email) per window on the same endpoints.
    pub auth_per_account: i64,
    /// Requests per user per window on `POST /v1/api-keys` and `/v1/api-keys/verify`.
    pub api_keys_per_user: i64,
    pub window_s: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:port` (plain, or STARTTLS when offered), `smtps://user:pass@host:465`.
    /// Unset: emails are written as .eml files to `outbox_dir`.
    #[serde(skip_serializing)]
    pub smtp_url: Option<String>,
    pub from: String,
    /// Default `<data_dir>/outbox`.
    pub outbox_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiesConfig {
    /// Allow `"cookie": true` logins (HttpOnly cookies + CSRF token).
    pub enabled: bool,
    /// `Secure` attribute and `__Host-` names; turn off only for plain-HTTP development.
    pub secure: bool,
    /// `Strict` or `Lax`.
    pub same_site: String,
    /// Origins allowed to make cookie-authenticated state-changing requests (an `Origin` header
    /// with any other value is refused). Empty: only `public_url`'s origin.
    pub allowed_origins: Vec<String>,
}

/// Passkeys (WebAuthn). The relying party id is `public_url`'s host, which browsers accept only
/// as a domain name (`localhost` included), never an IP address: with an IP address passkeys
/// are off (logged at start).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeysConfig {
    pub enabled: bool,
    /// The name authenticators show next to the credential.
    pub rp_name: String,
    /// Passkeys one account may hold (409 `too_many_passkeys` beyond).
    pub max_per_user: i64,
    /// `required`: every passkey verifies its user (PIN, fingerprint), so one signs in alone as
    /// two factors, discoverable. `preferred`: authenticators without user verification (a
    /// security key without a PIN) are accepted too; a passkey is then one factor, a second
    /// step after the password or an emailed code, never the first.
    pub user_verification: UserVerification,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserVerification {
    #[default]
    Required,
    Preferred,
}

impl Default for PasskeysConfig {
    fn default() -> Self {
        PasskeysConfig { enabled: true, rp_name: "authgate".into(), max_per_user: 10, user_verification: UserVerification::Required }
    }
}

/// Sign-in through organisations' OpenID Connect identity providers. Their URLs are the
/// tenants' to give: `https` and public addresses only unless allowed here (as for webhooks).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    pub allow_http: bool,
    pub allow_private_addresses: bool,
    /// How long an identity provider may take to answer.
    pub timeout_ms: i64,
    /// Connections per organisation.
    pub max_per_org: i64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig { allow_http: false, allow_private_addresses: false, timeout_ms: 10_000, max_per_org: 10 }
    }
}

/// Email domains organisations claim: an organisation's admins may prove one themselves with
/// its TXT record, read through `resolver` (the system's when unset).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// Off: only platform admins and the operator verify domains.
    pub dns_verification: bool,
    /// `ip:port` of the DNS resolver to ask.
    pub resolver: Option<String>,
    pub timeout_ms: i64,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        DomainsConfig { dns_verification: true, resolver: None, timeout_ms: 5_000 }
    }
}

/// The hosted pages (`/login`, `/signup`, `/account`): on by default, they need cookie mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    pub enabled: bool,
    /// Shown in titles, headings and emails' look.
    pub product_name: String,
    /// Logo shown above every page: an `https://` URL or a path on this server. None: the name.
    pub logo_url: Option<String>,
    /// Accent colour of buttons and links, `#rrggbb`.
    pub accent_color: String,
    /// Origins (`https://app.example.com`) a login's `return_to` may lead to, besides
    /// `public_url`'s own. Anything else is refused, so a login link cannot become an open redirect.
    pub return_to_origins: Vec<String>,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            enabled: true,
            product_name: "authgate".into(),
            logo_url: None,
            accent_color: "#2f5bd3".into(),
            return_to_origins: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The HMAC key ring; the first key mints new keys. Empty: one key derived from the master key.
    #[serde(skip_serializing)]
    pub hmac_keys: Vec<HmacKeyConfig>,
    /// Longest lifetime of a key (also the lifetime of keys created without `expires_in`), so a
    /// revoked key leaves the feed at the latest this long after its creation.
    pub max_lifetime_s: i64,
    /// Keys per user that are active or revoked-but-unexpired (409 `too_many_api_keys` beyond).
    pub max_per_user: i64,
    /// Key requests per user waiting for their code (409 `too_many_pending_api_keys` beyond).
    pub max_pending_per_user: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// `exp - iat` of the signed feed; it is re-signed after half of it.
    pub ttl_s: i64,
    /// How long a replica trusts its in-memory revocation snapshot before re-checking the version.
    pub recheck_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 8,
            redis_url: None,
            redis_prefix: "authgate:".into(),
            master_key: None,
            log_format: "json".into(),
            log_level: "info".into(),
            trust_forwarded_for: false,
            tokens: TokensConfig::default(),
            passwords: PasswordsConfig::default(),
            codes: CodesConfig::default(),
            login: LoginConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            email: EmailConfig::default(),
            cookies: CookiesConfig::default(),
            api_keys: ApiKeysConfig::default(),
            feed: FeedConfig::default(),
            platform: PlatformConfig::default(),
            roles: RolesConfig::default(),
            signup: SignupConfig::default(),
            metrics: MetricsConfig::default(),
            pages: PagesConfig::default(),
            passkeys: PasskeysConfig::default(),
            federation: FederationConfig::default(),
            domains: DomainsConfig::default(),
            oidc: OidcConfig::default(),
            notifications: NotificationsConfig::default(),
            audit: AuditConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            alg: "EdDSA".into(),
            access_ttl_s: 600,
            refresh_ttl_s: 14 * 86400,
            session_ttl_s: 30 * 86400,
            audience: "api".into(),
            key_reload_s: 10,
            max_clock_skew_s: 5,
        }
    }
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        PasswordsConfig { argon2_memory_kib: 19456, argon2_iterations: 2, argon2_parallelism: 1, min_length: 12, max_concurrent_hashes: 4 }
    }
}

impl Default for CodesConfig {
    fn default() -> Self {
        CodesConfig { digits: 6, ttl_s: 600, max_attempts: 5, reset_ttl_s: 1800, issue_limit: 10, issue_window_s: 3600 }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig { session_token_ttl_s: 600, lockout_threshold: 5, lockout_window_s: 900, lockout_s: 900, reauth_window_s: 300 }
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig { auth_per_ip: 60, auth_per_account: 20, api_keys_per_user: 10, window_s: 60 }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig { smtp_url: None, from: "authgate <no-reply@localhost>".into(), outbox_dir: None }
    }
}

impl Default for CookiesConfig {
    fn default() -> Self {
        CookiesConfig { enabled: true, secure: true, same_site: "Strict".into(), allowed_origins: Vec::new() }
    }
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig { hmac_keys: Vec::new(), max_lifetime_s: 365 * 86400, max_per_user: 25, max_pending_per_user: 5 }
    }
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig { ttl_s: 300, recheck_ms: 1000 }
    }
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig { operator_org: "org_operator".into() }
    }
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig { tenant: ["admin", "member", "reader", "editor", "org_introspect"].map(String::from).to_vec() }
    }
}

/// A configuration error naming the field.
#[derive(Debug, thiserror::Error)]
#[error("config: {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

impl Config {
    /// Loads defaults, the optional file, then the environment; validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(err("--config", format!("{} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig =
            fig.merge(Env::prefixed("AUTHGATE_").ignore(&["CONFIG", "NEW_PASSWORD", "CLIENT_SECRET", "LOG", "TEST_REDIS_URL"]).split("__"));
        let mut cfg: Config = fig.extract().map_err(|e| {
            let field = e.path.join(".");
            ConfigError { field: if field.is_empty() { ".".into() } else { field }, message: e.kind.to_string() }
        })?;
        for (var, slot) in
            [("DATABASE_URL", &mut cfg.database_url), ("REDIS_URL", &mut cfg.redis_url), ("SMTP_URL", &mut cfg.email.smtp_url)]
        {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    *slot = Some(v);
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|e| err("listen", format!("not host:port: {e}")))?;
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) || self.public_url.ends_with('/') {
            return Err(err("public_url", "must be an http(s) URL without a trailing slash"));
        }
        // It becomes a cookie path: visible ASCII without ';', ',' or quotes.
        if !self.public_url.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')) {
            return Err(err("public_url", "visible ASCII only, without ; , \" or \\"));
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(err("database_url", "must start with sqlite:, postgres:// or postgresql://"));
            }
            if self.is_postgres() && self.master_key.is_none() {
                return Err(err("master_key", "required with PostgreSQL (every replica must use the same one): set AUTHGATE_MASTER_KEY"));
            }
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(err("redis_url", "must start with redis:// or rediss://"));
            }
        }
        if let Some(k) = &self.master_key {
            if auth_core::b64::decode(k.trim().as_bytes()).map(|b| b.len()) != Some(32) {
                return Err(err("master_key", "must be base64url (no padding) of exactly 32 bytes"));
            }
        }
        if !["json", "pretty"].contains(&self.log_format.as_str()) {
            return Err(err("log_format", "json or pretty"));
        }
        if !["EdDSA", "ES256", "RS256", "HS256"].contains(&self.tokens.alg.as_str()) {
            return Err(err("tokens.alg", "one of EdDSA, ES256, RS256, HS256"));
        }
        if !(30..=86400).contains(&self.tokens.access_ttl_s) {
            return Err(err("tokens.access_ttl_s", "between 30 and 86400"));
        }
        if self.tokens.refresh_ttl_s < 60 || self.tokens.session_ttl_s < self.tokens.refresh_ttl_s.min(86400) {
            return Err(err("tokens.refresh_ttl_s", "at least 60, and session_ttl_s at least min(refresh_ttl_s, 1 day)"));
        }
        if self.tokens.audience.is_empty() {
            return Err(err("tokens.audience", "must not be empty"));
        }
        if self.tokens.key_reload_s == 0 {
            return Err(err("tokens.key_reload_s", "at least 1"));
        }
        if !(0..=300).contains(&self.tokens.max_clock_skew_s) {
            return Err(err("tokens.max_clock_skew_s", "between 0 and 300"));
        }
        let p = &self.passwords;
        if p.argon2_memory_kib < 8 * p.argon2_parallelism || p.argon2_iterations == 0 || p.argon2_parallelism == 0 {
            return Err(err(
                "passwords",
                "argon2_memory_kib must be at least 8 * argon2_parallelism, iterations and parallelism at least 1",
            ));
        }
        if p.min_length < 8 {
            return Err(err("passwords.min_length", "at least 8"));
        }
        if p.max_concurrent_hashes == 0 {
            return Err(err("passwords.max_concurrent_hashes", "at least 1"));
        }
        if !(6..=10).contains(&self.codes.digits) {
            return Err(err("codes.digits", "between 6 and 10"));
        }
        if !(30..=3600).contains(&self.codes.ttl_s) || !(1..=20).contains(&self.codes.max_attempts) {
            return Err(err("codes", "ttl_s between 30 and 3600, max_attempts between 1 and 20"));
        }
        if self.codes.issue_limit < 1 || self.codes.issue_window_s < 1 {
            return Err(err("codes.issue_limit", "issue_limit and issue_window_s at least 1"));
        }
        if self.login.lockout_threshold < 1
            || self.login.lockout_s < 1
            || self.login.lockout_window_s < 1
            || self.login.session_token_ttl_s < 30
        {
            return Err(err("login", "lockout_threshold, lockout_s, lockout_window_s at least 1; session_token_ttl_s at least 30"));
        }
        if !(1..=86400).contains(&self.login.reauth_window_s) {
            return Err(err("login.reauth_window_s", "between 1 and 86400"));
        }
        let rl = &self.rate_limits;
        if rl.auth_per_ip < 1 || rl.auth_per_account < 1 || rl.api_keys_per_user < 1 || rl.window_s < 1 {
            return Err(err("rate_limits", "every value at least 1"));
        }
        if !["Strict", "Lax"].contains(&self.cookies.same_site.as_str()) {
            return Err(err("cookies.same_site", "Strict or Lax"));
        }
        self.validate_pages()?;
        if self.passkeys.rp_name.trim().is_empty() || self.passkeys.rp_name.chars().count() > 60 {
            return Err(err("passkeys.rp_name", "1 to 60 characters"));
        }
        if !(100..=60_000).contains(&self.federation.timeout_ms) {
            return Err(err("federation.timeout_ms", "100 ms to 60 s"));
        }
        if !(1..=100).contains(&self.federation.max_per_org) {
            return Err(err("federation.max_per_org", "between 1 and 100"));
        }
        if let Some(r) = &self.domains.resolver {
            r.parse::<std::net::SocketAddr>().map_err(|e| err("domains.resolver", format!("not ip:port: {e}")))?;
        }
        if !(100..=30_000).contains(&self.domains.timeout_ms) {
            return Err(err("domains.timeout_ms", "100 ms to 30 s"));
        }
        if !(1..=100).contains(&self.passkeys.max_per_user) {
            return Err(err("passkeys.max_per_user", "between 1 and 100"));
        }
        for (i, a) in self.oidc.id_token_algs.iter().enumerate() {
            if !["EdDSA", "ES256", "RS256"].contains(&a.as_str()) {
                return Err(err(&format!("oidc.id_token_algs[{i}]"), "one of EdDSA, ES256, RS256 (an ID token is checked by public keys)"));
            }
        }
        let w = &self.webhooks;
        if !(1..=100).contains(&w.max_per_org) {
            return Err(err("webhooks.max_per_org", "between 1 and 100"));
        }
        if !(1..=50).contains(&w.max_attempts) {
            return Err(err("webhooks.max_attempts", "between 1 and 50"));
        }
        if !(10..=3_600_000).contains(&w.retry_base_ms) || w.retry_max_ms < w.retry_base_ms || w.retry_max_ms > 86_400_000 {
            return Err(err("webhooks.retry_base_ms", "10 ms to 1 hour, and retry_max_ms between it and 1 day"));
        }
        if !(100..=60_000).contains(&w.timeout_ms) {
            return Err(err("webhooks.timeout_ms", "between 100 and 60000"));
        }
        if !(50..=60_000).contains(&w.poll_ms) {
            return Err(err("webhooks.poll_ms", "between 50 and 60000"));
        }
        if !(1..=3650).contains(&self.audit.retention_days) {
            return Err(err("audit.retention_days", "between 1 and 3650"));
        }
        if !(600..=30 * 86400).contains(&self.signup.invitation_ttl_s) {
            return Err(err("signup.invitation_ttl_s", "between 600 seconds and 30 days"));
        }
        if !(10..=600).contains(&self.oidc.code_ttl_s) || !(60..=3600).contains(&self.oidc.request_ttl_s) {
            return Err(err("oidc", "code_ttl_s between 10 and 600, request_ttl_s between 60 and 3600"));
        }
        for (i, k) in self.api_keys.hmac_keys.iter().enumerate() {
            if k.kid.is_empty() || k.kid.len() > 64 {
                return Err(err(&format!("api_keys.hmac_keys[{i}].kid"), "1 to 64 characters"));
            }
            if auth_core::b64::decode(k.secret.as_bytes()).map_or(true, |b| b.len() < 32) {
                return Err(err(&format!("api_keys.hmac_keys[{i}].secret"), "base64url (no padding) of at least 32 bytes"));
            }
        }
        if !(60..=10 * 365 * 86400).contains(&self.api_keys.max_lifetime_s) {
            return Err(err("api_keys.max_lifetime_s", "between 60 seconds and 10 years"));
        }
        if self.api_keys.max_per_user < 1 || self.api_keys.max_pending_per_user < 1 {
            return Err(err("api_keys", "max_per_user and max_pending_per_user at least 1"));
        }
        if self.feed.ttl_s < 10 {
            return Err(err("feed.ttl_s", "at least 10"));
        }
        if let Some(l) = &self.metrics.listen {
            let addr: std::net::SocketAddr = l.parse().map_err(|e| err("metrics.listen", format!("not host:port: {e}")))?;
            if self.listen.parse::<std::net::SocketAddr>().ok() == Some(addr) {
                return Err(err("metrics.listen", "must differ from listen"));
            }
        }
        if self.metrics.token.as_ref().is_some_and(|t| t.len() < 32 || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(err("metrics.token", "at least 32 visible ASCII characters"));
        }
        let org = &self.platform.operator_org;
        if org.is_empty() || org.len() > 64 || !org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(err("platform.operator_org", "1 to 64 characters: letters, digits, '_' and '-'"));
        }
        if org == crate::db::DEFAULT_ORG {
            return Err(err("platform.operator_org", "must not be the default organisation, which every sign-up joins"));
        }
        for (i, r) in self.roles.tenant.iter().enumerate() {
            if !crate::users::valid_role(r) {
                return Err(err(&format!("roles.tenant[{i}]"), "1 to 64 visible ASCII characters without commas"));
            }
            if crate::authority::is_platform_role(r) {
                return Err(err(
                    &format!("roles.tenant[{i}]"),
                    format!("{r:?} is a platform role: it is granted only by the operator, never by tenants"),
                ));
            }
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/authgate.db?mode=rwc", self.data_dir.display()))
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.email.outbox_dir.clone().unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    fn validate_pages(&self) -> Result<(), ConfigError> {
        let p = &self.pages;
        // The name and colour also dress the emails, pages or not.
        if p.product_name.trim().is_empty() || p.product_name.chars().count() > 60 || p.product_name.chars().any(char::is_control) {
            return Err(err("pages.product_name", "1 to 60 characters, no control characters"));
        }
        let c = p.accent_color.as_bytes();
        if c.len() != 7 || c[0] != b'#' || !c[1..].iter().all(u8::is_ascii_hexdigit) {
            return Err(err("pages.accent_color", "#rrggbb"));
        }
        if !p.enabled {
            return Ok(());
        }
        if !self.cookies.enabled {
            return Err(err("pages.enabled", "the hosted pages need cookie mode (cookies.enabled = true)"));
        }
        if let Some(logo) = &p.logo_url {
            let shape = logo.starts_with("https://") || (logo.starts_with('/') && !logo.starts_with("//"));
            if !shape || !logo.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b';')) {
                return Err(err(
                    "pages.logo_url",
                    "an https:// URL or a path starting with /, visible ASCII without quotes, <, >, ; or \\",
                ));
            }
        }
        for (i, o) in p.return_to_origins.iter().enumerate() {
            if !is_origin(o) {
                return Err(err(&format!("pages.return_to_origins[{i}]"), "an origin: http(s)://host[:port], lower case, no path"));
            }
        }
        Ok(())
    }

    /// The path of `public_url` (empty when it has none), e.g. `/auth` for `https://x.example/auth`.
    pub fn public_path(&self) -> &str {
        &self.public_url[self.public_origin().len()..]
    }

    /// The host of `public_url`, without port (the WebAuthn relying party id).
    pub fn public_host(&self) -> String {
        let origin = self.public_origin();
        let authority = origin.split("://").nth(1).unwrap_or("");
        if let Some(v6) = authority.strip_prefix('[') {
            return format!("[{}]", v6.split(']').next().unwrap_or(""));
        }
        authority.split(':').next().unwrap_or("").to_string()
    }

    /// The algorithms an ID token may be signed with: the access tokens' (unless HS256, which a
    /// client could not check with public keys) and `oidc.id_token_algs`.
    pub fn id_token_algs(&self) -> Vec<&str> {
        let mut algs: Vec<&str> = self.oidc.id_token_algs.iter().map(String::as_str).collect();
        if self.tokens.alg != "HS256" {
            algs.insert(0, &self.tokens.alg);
        }
        algs.dedup();
        algs.sort_unstable();
        algs.dedup();
        algs
    }

    /// The origin (`scheme://host[:port]`) of `public_url`.
    pub fn public_origin(&self) -> String {
        let url = &self.public_url;
        let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
        match url[after_scheme..].find('/') {
            Some(i) => url[..after_scheme + i].to_string(),
            None => url.clone(),
        }
    }
}

/// The origin (`scheme://host[:port]`) a URL starts with: everything before the first `/`, `?`
/// or `#` after the scheme (what a browser takes for it; `public_origin` cuts at `/` only, which
/// `public_path` relies on).
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find(['/', '?', '#']).map_or(url, |i| &url[..after_scheme + i])
}

/// `http(s)://host[:port]` in lower case, nothing after: what a browser sends as `Origin`.
pub fn is_origin(o: &str) -> bool {
    let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
    host.is_some_and(|h| {
        !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::default();
        c.tokens.alg = "none".into();
        assert_eq!(c.validate().unwrap_err().field, "tokens.alg");
        let mut c = Config::default();
        c.database_url = Some("postgres://x/y".into());
        assert_eq!(c.validate().unwrap_err().field, "master_key");
        let mut c = Config::default();
        c.master_key = Some("short".into());
        assert_eq!(c.validate().unwrap_err().field, "master_key");
    }

    #[test]
    fn platform_and_tenant_roles_never_mix() {
        let mut c = Config::default();
        c.roles.tenant.push("gateway".into());
        let e = c.validate().unwrap_err();
        assert!(e.field.starts_with("roles.tenant[") && e.message.contains("platform role"), "{e}");
        let mut c = Config::default();
        c.platform.operator_org = crate::db::DEFAULT_ORG.into();
        assert_eq!(c.validate().unwrap_err().field, "platform.operator_org");
        let mut c = Config::default();
        c.platform.operator_org = "org operator".into();
        assert_eq!(c.validate().unwrap_err().field, "platform.operator_org");
    }

    #[test]
    fn origin() {
        let mut c = Config::default();
        c.public_url = "https://auth.example.com/base".into();
        assert_eq!(c.public_origin(), "https://auth.example.com");
        assert_eq!(c.public_path(), "/base");
        c.public_url = "https://auth.example.com".into();
        assert_eq!(c.public_path(), "");
        c.public_url = "https://auth.example.com/a;b".into();
        assert_eq!(c.validate().unwrap_err().field, "public_url");
    }

    #[test]
    fn pages_config_names_the_bad_field() {
        let bad: [(&str, fn(&mut Config)); 6] = [
            ("pages.enabled", |c| c.cookies.enabled = false),
            ("pages.product_name", |c| c.pages.product_name = " ".into()),
            ("pages.logo_url", |c| c.pages.logo_url = Some("javascript:alert(1)".into())),
            ("pages.logo_url", |c| c.pages.logo_url = Some("//evil.example/logo.png".into())),
            ("pages.accent_color", |c| c.pages.accent_color = "red;}".into()),
            ("pages.return_to_origins[0]", |c| c.pages.return_to_origins = vec!["https://app.example.com/path".into()]),
        ];
        for (field, change) in bad {
            let mut c = Config::default();
            change(&mut c);
            assert_eq!(c.validate().unwrap_err().field, field);
        }
        let mut c = Config::default();
        c.pages.logo_url = Some("https://cdn.example.com/logo.svg".into());
        c.pages.return_to_origins = vec!["https://app.example.com".into(), "http://127.0.0.1:3000".into()];
        c.validate().unwrap();
        c.cookies.enabled = false;
        c.pages.enabled = false;
        c.validate().unwrap();
    }
}
