//! An OpenID Connect provider's side of the round trip: its discovery document (checked
//! against mix-up), the ID token judged by auth-core's verifier (one verifier) plus what OpenID
//! Connect adds (`nonce`, `azp`), and what each preset's claims mean — Google's
//! `email_verified`, Microsoft personal accounts' addresses, Entra ID's `{tenantid}` issuer,
//! `tid` and its missing `email_verified`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use auth_core::config::{Alg, ProviderConfig, VerifierConfig};
use auth_core::{StalePolicy, UnixTime, Verifier};
use serde::Deserialize;
use serde_json::Value;

use super::MICROSOFT_CONSUMERS_TENANT;
use super::{
    callable, client, egress_of, exchange, json_body, refused, unavailable, ClientAuth, Connection, ConnectionInfo, Identity, Kind, Pending,
};
use crate::app::App;
use crate::crypto;
use crate::db::now;
use crate::egress;
use crate::error::ApiError;
use crate::users;

/// An identity provider's discovery document: what the round trip needs of it.
#[derive(Deserialize, Clone)]
pub(super) struct Discovery {
    issuer: String,
    pub authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Entra ID's issuer template for a multi-tenant authority (`…/organizations/v2.0`).
fn entra_template(authority: &str) -> Option<String> {
    authority.strip_suffix("/organizations/v2.0").map(|base| format!("{base}/{{tenantid}}/v2.0"))
}

/// The issuers whose ID tokens a connection takes: its own, or for Entra ID the template with
/// each allowed tenant.
fn issuers(conn: &ConnectionInfo) -> Vec<String> {
    match (conn.kind, entra_template(&conn.issuer)) {
        (Kind::Entra, Some(template)) => conn.tenants.iter().map(|t| template.replace("{tenantid}", t)).collect(),
        _ => vec![conn.issuer.clone()],
    }
}

/// Reads and checks the issuer's discovery document: its `issuer` must be the one asked for
/// (mix-up; Entra ID: the `{tenantid}` template of the authority), and every endpoint a URL the
/// server may call. The error says what is wrong (the details go to the log, not the answer).
pub(super) async fn discover(app: &App, kind: Kind, issuer: &str) -> Result<Discovery, &'static str> {
    let expected = match kind {
        Kind::Entra => entra_template(issuer).ok_or("issuer: an Entra ID authority ends with /organizations/v2.0")?,
        _ => issuer.to_string(),
    };
    let url = callable(app, issuer, &format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))).await?;
    let client = client(app).map_err(|_| "issuer: no HTTP client")?;
    let failed = |e: &dyn std::fmt::Display| {
        tracing::info!(issuer, error = %e, "discovery failed");
        "issuer: its discovery document could not be read"
    };
    let resp = client.get(url).send().await.map_err(|e| failed(&e))?;
    if !resp.status().is_success() {
        return Err(failed(&resp.status()));
    }
    let doc: Discovery = json_body(resp).await.map_err(|e| failed(&e))?;
    if doc.issuer != expected {
        return Err("issuer: the discovery document names another issuer");
    }
    for endpoint in [&doc.authorization_endpoint, &doc.token_endpoint, &doc.jwks_uri] {
        egress::check_url(egress_of(app), endpoint)
            .await
            .map_err(|_| "issuer: an endpoint of its discovery document is not a URL the server may call")?;
    }
    Ok(doc)
}

/// What this process read of providers lately: a sign-in then costs the provider its code
/// exchange alone. Entries live [`FRESH`]; a set of keys is read again at once when a token
/// names a key it lacks (the provider rotated) — such early reads at most every [`REREAD`].
struct Cache<T> {
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

const FRESH: Duration = Duration::from_secs(300);
const REREAD: Duration = Duration::from_secs(10);
/// Connections are tenants' input: the cache forgets everything rather than grow past this.
const MAX_ENTRIES: usize = 1000;

impl<T: Clone> Cache<T> {
    fn get(&self, key: &str, max_age: Duration) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < max_age).map(|(_, v)| v.clone())
    }

    fn put(&self, key: &str, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_string(), (Instant::now(), value));
    }
}

static DISCOVERED: LazyLock<Cache<Arc<Discovery>>> = LazyLock::new(|| Cache { entries: Mutex::default() });
static KEYS: LazyLock<Cache<Arc<Value>>> = LazyLock::new(|| Cache { entries: Mutex::default() });
static EARLY_READS: LazyLock<Cache<()>> = LazyLock::new(|| Cache { entries: Mutex::default() });

/// [`discover`] for a round trip: the document this process checked lately, else read now.
pub(super) async fn discovered(app: &App, kind: Kind, issuer: &str) -> Result<Arc<Discovery>, ApiError> {
    let key = format!("{}|{issuer}", kind.as_str());
    if let Some(doc) = DISCOVERED.get(&key, FRESH) {
        return Ok(doc);
    }
    let doc = Arc::new(discover(app, kind, issuer).await.map_err(unavailable)?);
    DISCOVERED.put(&key, doc.clone());
    Ok(doc)
}

/// The provider's published keys: read lately (`max_age`), else now.
async fn keys(app: &App, jwks_uri: &str, max_age: Duration) -> Result<Arc<Value>, ApiError> {
    if let Some(jwks) = KEYS.get(jwks_uri, max_age) {
        return Ok(jwks);
    }
    let jwks: Value = json_body(client(app)?.get(jwks_uri).send().await.map_err(unavailable)?).await.map_err(unavailable)?;
    let jwks = Arc::new(jwks);
    KEYS.put(jwks_uri, jwks.clone());
    Ok(jwks)
}

/// The provider's answer to this round trip, read: code exchanged, ID token verified, the
/// identity in it.
pub(super) async fn identity(app: &App, conn: &Connection, code: &str, pending: &Pending) -> Result<Identity, ApiError> {
    let doc = discovered(app, conn.info.kind, &conn.info.issuer).await?;
    let tokens = exchange(app, conn, &doc.token_endpoint, code, pending, ClientAuth::Basic).await?;
    let id_token = tokens.get("id_token").and_then(Value::as_str).ok_or_else(|| unavailable("no id_token"))?;
    let jwks = keys(app, &doc.jwks_uri, FRESH).await?;
    let claims = match verify_id_token(&conn.info, &jwks, id_token, &pending.nonce, now()) {
        // A key the cached set lacks: the provider may have rotated since.
        Err(Refused::UnknownKey) if EARLY_READS.get(&doc.jwks_uri, REREAD).is_none() => {
            EARLY_READS.put(&doc.jwks_uri, ());
            let jwks = keys(app, &doc.jwks_uri, Duration::ZERO).await?;
            verify_id_token(&conn.info, &jwks, id_token, &pending.nonce, now())
        }
        other => other,
    }
    .map_err(|r| bad_token(&conn.info, r.why()))?;
    identity_of(&conn.info, &claims)
}

/// Why an ID token was refused (for the log; the answer says only `id_token_invalid`).
pub(super) enum Refused {
    UnknownKey,
    Because(&'static str),
}

impl Refused {
    fn why(&self) -> &'static str {
        match self {
            Refused::UnknownKey => "unknown_kid",
            Refused::Because(why) => why,
        }
    }
}

fn bad_token(conn: &ConnectionInfo, why: &str) -> ApiError {
    tracing::info!(why, connection = %conn.id, "id_token refused");
    refused("id_token_invalid", "the identity provider's answer could not be verified")
}

/// The ID token through auth-core's verifier, then what OpenID Connect adds: the `nonce` of this
/// round trip, and `azp` when there are several audiences; for Entra ID, the `tid` the issuer
/// names. Public-key algorithms only (never a token signed with the client secret: no
/// algorithm confusion).
pub(super) fn verify_id_token(conn: &ConnectionInfo, jwks: &Value, id_token: &str, nonce: &str, now: i64) -> Result<Value, Refused> {
    let bad = Refused::Because;
    let providers = issuers(conn)
        .into_iter()
        .map(|issuer| ProviderConfig {
            issuer,
            audiences: vec![conn.client_id.clone()],
            jwks: Some(jwks.clone()),
            jwks_uri: None,
            algorithms: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
            clock_skew_s: 60,
            typ: None,
            es256_accept_high_s: false,
        })
        .collect();
    let verifier = Verifier::new(&VerifierConfig { providers, ..Default::default() }).map_err(|_| bad("provider keys"))?;
    let verified = verifier.verify_token(id_token, UnixTime::from_secs(now), StalePolicy::FailClosed).map_err(|r| match r.code {
        auth_core::ErrorCode::UnknownKid => Refused::UnknownKey,
        code => Refused::Because(code.as_str()),
    })?;
    let claims: Value = auth_core::b64::decode(verified.identity.claims_b64.as_bytes())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("claims"))?;
    let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !crypto::ct_eq(sent.as_bytes(), nonce.as_bytes()) {
        return Err(bad("nonce"));
    }
    if let Some(aud) = claims.get("aud").and_then(Value::as_array).filter(|a| a.len() > 1) {
        let azp = claims.get("azp").and_then(Value::as_str);
        if azp != Some(conn.client_id.as_str()) || !aud.iter().any(|a| a.as_str() == Some(conn.client_id.as_str())) {
            return Err(bad("azp"));
        }
    }
    if conn.kind == Kind::Entra {
        // The issuer was one of the allowed tenants'; the token's `tid` must be that tenant.
        let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let template = entra_template(&conn.issuer).unwrap_or_default();
        if !conn.tenants.iter().any(|t| t == tid) || iss != template.replace("{tenantid}", tid) {
            return Err(bad("tid"));
        }
    }
    Ok(claims)
}

fn is_true(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || v.and_then(Value::as_str) == Some("true")
}

/// Who the verified claims say the person is, read the way the connection's provider means them.
pub(super) fn identity_of(conn: &ConnectionInfo, claims: &Value) -> Result<Identity, ApiError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(|| refused("id_token_invalid", "the identity has no subject"))?;
    let email = claims.get("email").and_then(Value::as_str).and_then(users::normalize_email);
    let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
    let (subject, email_verified) = match conn.kind {
        // A personal account's address is the one Microsoft confirmed at sign-up (its tokens
        // carry no `email_verified`); the consumers tenant's tokens only.
        Kind::Microsoft => (sub.to_string(), email.is_some() && tid == MICROSOFT_CONSUMERS_TENANT),
        // Entra ID's `email` is whatever a tenant's admin typed: only `xms_edov` (the domain's
        // owner verified it) vouches for it (accounts.rs also trusts a domain the organisation
        // holds). `sub` is unique per tenant: the tenant is part of the subject.
        Kind::Entra => (format!("{tid}/{sub}"), is_true(claims.get("xms_edov"))),
        _ => (sub.to_string(), is_true(claims.get("email_verified"))),
    };
    let name = claims.get("name").and_then(Value::as_str).filter(|n| users::valid_name(n)).map(str::to_string);
    Ok(Identity { subject, email, email_verified, name, roles: None })
}
