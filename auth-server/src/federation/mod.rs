//! Sign-in through an organisation's OpenID Connect identity providers, this server being the
//! relying party: connections, the authorization request (code with PKCE S256, `state`,
//! `nonce`), the code exchange, the ID token judged by auth-core's verifier (one verifier), and
//! who the person is here — an identity linked before, an account whose verified address is in
//! a domain the organisation holds, or a new account when the connection creates them.

use std::time::Duration;

use auth_core::config::{Alg, ProviderConfig, VerifierConfig};
use auth_core::{StalePolicy, UnixTime, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now, Db};
use crate::egress::{self, Egress};
use crate::error::ApiError;
use crate::users::{self, User};

/// An identity provider's discovery document: what the login needs of it.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// A connection as its organisation's admins see it (never the secret).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConnectionInfo {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: String,
    /// First sight of a verified address creates its account (a member with `roles`).
    pub create_accounts: bool,
    pub roles: Vec<String>,
    pub created_at: i64,
}

struct Connection {
    info: ConnectionInfo,
    /// Sealed with the master key.
    client_secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// What the sign-in button says ("Acme SSO").
    pub name: String,
    /// The issuer; its discovery document is read at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Absent: a public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Space-separated; `openid` is always asked. Default `openid email profile`.
    #[serde(default)]
    pub scopes: Option<String>,
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Roles of the members it creates or adds (ones the creating admin may grant).
    #[serde(default)]
    pub roles: Vec<String>,
}

fn yes() -> bool {
    true
}

fn secret_context(id: &str) -> String {
    format!("oidc-connection:{id}")
}

fn egress_of(app: &App) -> Egress {
    Egress { allow_http: app.cfg.federation.allow_http, allow_private_addresses: app.cfg.federation.allow_private_addresses }
}

fn client(app: &App) -> Result<reqwest::Client, ApiError> {
    egress::client(egress_of(app), Duration::from_millis(app.cfg.federation.timeout_ms as u64), "authgate-federation")
        .map_err(|e| ApiError::internal(format!("federation client: {e}")))
}

fn unavailable(what: impl std::fmt::Display) -> ApiError {
    tracing::info!(error = %what, "identity provider unavailable");
    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "idp_unavailable", "the identity provider could not be reached or answered wrongly")
}

/// Reads and checks the issuer's discovery document: its `issuer` must be the one asked for
/// (mix-up), and every endpoint a URL the server may call. The error says what is wrong (the
/// details go to the log, not to the answer).
async fn discover(app: &App, issuer: &str) -> Result<Discovery, &'static str> {
    let policy = egress_of(app);
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let url = egress::check_url(policy, &url).await.map_err(|m| {
        tracing::info!(issuer, why = m, "issuer refused");
        "issuer: https only, a public address, no credentials or fragment (federation.allow_http / allow_private_addresses permit more)"
    })?;
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
    if doc.issuer != issuer {
        return Err("issuer: the discovery document names another issuer");
    }
    for endpoint in [&doc.authorization_endpoint, &doc.token_endpoint, &doc.jwks_uri] {
        egress::check_url(policy, endpoint)
            .await
            .map_err(|_| "issuer: an endpoint of its discovery document is not a URL the server may call")?;
    }
    Ok(doc)
}

/// A provider's JSON answer, 1 MiB at most (read no further).
async fn json_body<T: serde::de::DeserializeOwned>(mut resp: reqwest::Response) -> Result<T, String> {
    const MAX: usize = 1 << 20;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX {
            return Err("answer larger than 1 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_connection", message)
}

/// Registers a connection of `org` after reading its provider's discovery document.
pub async fn create(app: &App, org: &str, req: NewConnection, actor: Who<'_>) -> Result<ConnectionInfo, ApiError> {
    let name = req.name.trim();
    if !users::valid_name(name) {
        return Err(invalid("name: 1 to 100 characters, no control characters"));
    }
    let client_id = req.client_id.trim();
    if client_id.is_empty() || client_id.len() > 200 || client_id.chars().any(char::is_control) {
        return Err(invalid("client_id: 1 to 200 characters"));
    }
    let mut scopes: Vec<&str> = req.scopes.as_deref().unwrap_or("openid email profile").split(' ').filter(|s| !s.is_empty()).collect();
    if !scopes.contains(&"openid") {
        scopes.insert(0, "openid");
    }
    if scopes.len() > 20
        || !scopes.iter().all(|s| s.len() <= 100 && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\'))
    {
        return Err(invalid("scopes: at most 20 space-separated scope tokens"));
    }
    if req.roles.len() > 50 || !req.roles.iter().all(|r| users::valid_role(r)) {
        return Err(invalid("roles: 1 to 64 visible ASCII characters without commas each; at most 50"));
    }
    discover(app, &req.issuer).await.map_err(invalid)?;
    let id = crypto::new_id("conn");
    let secret = req.client_secret.as_deref().filter(|s| !s.is_empty()).map(|s| app.master.seal(s.as_bytes(), &secret_context(&id)));
    let t = now();
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    let mut tx = db::begin_write(&app.db).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_connections WHERE org_id = $1").bind(org).fetch_one(&mut *tx).await?;
    if n >= app.cfg.federation.max_per_org {
        return Err(ApiError::conflict("too_many_connections", "this organisation has as many connections as it may: remove one first"));
    }
    sqlx::query(
        "INSERT INTO oidc_connections (id, org_id, name, issuer, client_id, client_secret, scopes, create_accounts, roles, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(org)
    .bind(name)
    .bind(&req.issuer)
    .bind(client_id)
    .bind(&secret)
    .bind(scopes.join(" "))
    .bind(req.create_accounts as i64)
    .bind(serde_json::to_string(&roles).expect("serializes"))
    .bind(t)
    .execute(&mut *tx)
    .await?;
    Event::new(Action::ConnectionCreated, Some(org), actor)
        .target("connection", &id)
        .data(serde_json::json!({ "issuer": req.issuer, "create_accounts": req.create_accounts, "roles": roles }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(ConnectionInfo {
        id,
        org_id: org.to_string(),
        name: name.to_string(),
        issuer: req.issuer,
        client_id: client_id.to_string(),
        has_client_secret: secret.is_some(),
        scopes: scopes.join(" "),
        create_accounts: req.create_accounts,
        roles,
        created_at: t,
    })
}

type Row = (String, String, String, String, String, Option<String>, String, i64, String, i64);
const COLUMNS: &str = "id, org_id, name, issuer, client_id, client_secret, scopes, create_accounts, roles, created_at";

fn from_row((id, org_id, name, issuer, client_id, client_secret, scopes, create_accounts, roles, created_at): Row) -> Connection {
    Connection {
        info: ConnectionInfo {
            id,
            org_id,
            name,
            issuer,
            client_id,
            has_client_secret: client_secret.is_some(),
            scopes,
            create_accounts: create_accounts != 0,
            roles: serde_json::from_str(&roles).unwrap_or_default(),
            created_at,
        },
        client_secret,
    }
}

pub async fn list(db: &Db, org: &str) -> Result<Vec<ConnectionInfo>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM oidc_connections WHERE org_id = $1 ORDER BY name, id"))
        .bind(org)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| from_row(r).info).collect())
}

async fn get(db: &Db, id: &str) -> Result<Option<Connection>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM oidc_connections WHERE id = $1")).bind(id).fetch_optional(db).await?;
    Ok(row.map(from_row))
}

/// Removes a connection of `org` and the identities linked through it (the accounts stay).
pub async fn delete(app: &App, org: &str, id: &str, actor: Who<'_>) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let n = sqlx::query("DELETE FROM oidc_connections WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(org)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        sqlx::query("DELETE FROM federated_identities WHERE connection_id = $1").bind(id).execute(&mut *tx).await?;
        Event::new(Action::ConnectionDeleted, Some(org), actor).target("connection", id).write(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// A sign-in waiting for the provider's answer, under the hash of its `state`.
#[derive(Serialize, Deserialize)]
struct Pending {
    connection: String,
    return_to: String,
    nonce: String,
    verifier: String,
}

fn pending_key(state: &str) -> String {
    format!("sso:{}", crypto::sha256_hex(state.as_bytes()))
}

/// Where providers send the browser back.
pub fn redirect_uri(app: &App) -> String {
    format!("{}/login/sso/callback", app.cfg.public_url.trim_end_matches('/'))
}

/// Starts a sign-in with `connection`: returns the provider's authorization URL and the
/// `state` (which the browser must also hold, bound by a cookie, for the answer to count).
pub async fn start(app: &App, connection: &str, return_to: &str) -> Result<(String, String), ApiError> {
    let conn = get(&app.db, connection).await?.ok_or_else(|| ApiError::not_found("connection_not_found", "no such connection"))?;
    crate::http::orgs::ensure_active(app, &conn.info.org_id).await?;
    let doc = discover(app, &conn.info.issuer).await.map_err(unavailable)?;
    let state = crypto::new_secret("");
    let nonce = crypto::new_secret("");
    let verifier = crypto::new_secret("");
    let challenge = auth_core::b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let pending = Pending { connection: connection.to_string(), return_to: return_to.to_string(), nonce: nonce.clone(), verifier };
    app.eph.put(&pending_key(&state), &serde_json::to_string(&pending).expect("serializes"), 600).await?;
    let mut url = url::Url::parse(&doc.authorization_endpoint).map_err(unavailable)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &conn.info.client_id)
        .append_pair("redirect_uri", &redirect_uri(app))
        .append_pair("scope", &conn.info.scopes)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((url.to_string(), state))
}

/// The provider answered with an error: the pending sign-in is spent.
pub async fn abandon(app: &App, state: &str) -> Result<(), ApiError> {
    app.eph.take(&pending_key(state)).await?;
    Ok(())
}

/// A finished sign-in: the account, the organisation its session is for, where it goes next.
pub struct SignedIn {
    pub user: User,
    pub org: String,
    pub return_to: String,
}

fn refused(code: &'static str, message: &'static str) -> ApiError {
    ApiError::forbidden(code, message)
}

/// The provider's answer: the pending sign-in is taken (once), the code exchanged, the ID token
/// verified (signature by the provider's published keys, issuer, audience, time, then the
/// nonce), and the person found or created here.
pub async fn finish(app: &App, state: &str, code: &str) -> Result<SignedIn, ApiError> {
    let invalid_state = || ApiError::bad_request("sso_state_invalid", "this sign-in is unknown, expired or already used: start again");
    let raw = app.eph.take(&pending_key(state)).await?.ok_or_else(invalid_state)?;
    let pending: Pending = serde_json::from_str(&raw).map_err(|_| invalid_state())?;
    let conn = get(&app.db, &pending.connection).await?.ok_or_else(|| ApiError::not_found("connection_not_found", "no such connection"))?;
    let doc = discover(app, &conn.info.issuer).await.map_err(unavailable)?;
    let client = client(app)?;
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri(app)),
        ("code_verifier", pending.verifier.clone()),
    ];
    let mut request = client.post(&doc.token_endpoint);
    match &conn.client_secret {
        Some(sealed) => {
            let secret = app
                .master
                .open(sealed, &secret_context(&conn.info.id))
                .map_err(|e| ApiError::internal(format!("connection secret: {e}")))?;
            let secret = String::from_utf8_lossy(&secret).to_string();
            request = request.basic_auth(form_encode(&conn.info.client_id), Some(form_encode(&secret)));
        }
        None => form.push(("client_id", conn.info.client_id.clone())),
    }
    let resp = request.form(&form).send().await.map_err(unavailable)?;
    if !resp.status().is_success() {
        tracing::info!(status = %resp.status(), connection = %conn.info.id, "code exchange refused");
        return Err(refused("sso_failed", "the identity provider did not accept the sign-in"));
    }
    let tokens: Value = json_body(resp).await.map_err(unavailable)?;
    let id_token = tokens.get("id_token").and_then(Value::as_str).ok_or_else(|| unavailable("no id_token"))?;
    let jwks: Value = json_body(client.get(&doc.jwks_uri).send().await.map_err(unavailable)?).await.map_err(unavailable)?;
    let claims = verify_id_token(&conn.info, &jwks, id_token, &pending.nonce)?;
    let (user, org) = resolve(app, &conn.info, &claims).await?;
    Ok(SignedIn { user, org, return_to: pending.return_to })
}

/// `application/x-www-form-urlencoded` of a client id or secret, as HTTP Basic wants them for
/// OAuth (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The ID token through auth-core's verifier, then what OpenID Connect adds: the `nonce` of this
/// sign-in, and `azp` when there are several audiences. Public-key algorithms only (never a
/// token signed with the client secret: no algorithm confusion).
fn verify_id_token(conn: &ConnectionInfo, jwks: &Value, id_token: &str, nonce: &str) -> Result<Value, ApiError> {
    let bad = |why: &str| {
        tracing::info!(why, connection = %conn.id, "id_token refused");
        refused("id_token_invalid", "the identity provider's answer could not be verified")
    };
    let config = VerifierConfig {
        providers: vec![ProviderConfig {
            issuer: conn.issuer.clone(),
            audiences: vec![conn.client_id.clone()],
            jwks: Some(jwks.clone()),
            jwks_uri: None,
            algorithms: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
            clock_skew_s: 60,
            typ: None,
            es256_accept_high_s: false,
        }],
        ..Default::default()
    };
    let verifier = Verifier::new(&config).map_err(|_| bad("provider keys"))?;
    let verified =
        verifier.verify_token(id_token, UnixTime::from_secs(now()), StalePolicy::FailClosed).map_err(|r| bad(r.code.as_str()))?;
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
    Ok(claims)
}

/// The account an identity signs in: linked before; else an account whose address the provider
/// asserts verified, in a domain the connection's organisation holds (linked now); else a new
/// account when the connection creates them and the address is verified. An address that has an
/// account but no such proof is refused: an unverified (or foreign-domain) assertion never takes
/// over an account.
async fn resolve(app: &App, conn: &ConnectionInfo, claims: &Value) -> Result<(User, String), ApiError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(|| refused("id_token_invalid", "the identity has no subject"))?;
    let email = claims.get("email").and_then(Value::as_str).and_then(users::normalize_email);
    let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || claims.get("email_verified").and_then(Value::as_str) == Some("true");
    let org = conn.org_id.clone();
    let t = now();
    let linked: Option<String> = sqlx::query_scalar("SELECT user_id FROM federated_identities WHERE connection_id = $1 AND subject = $2")
        .bind(&conn.id)
        .bind(sub)
        .fetch_optional(&app.db)
        .await?;
    if let Some(uid) = linked {
        sqlx::query("UPDATE federated_identities SET last_used_at = $1 WHERE connection_id = $2 AND subject = $3")
            .bind(t)
            .bind(&conn.id)
            .bind(sub)
            .execute(&app.db)
            .await?;
        let user = users::by_id(&app.db, &uid).await?.filter(|u| u.status == "active").ok_or_else(|| crate::members::not_active(false))?;
        return Ok((user, org));
    }
    let email = email.ok_or_else(|| refused("email_not_verified", "the identity provider gave no usable email address"))?;
    if !verified {
        return Err(refused("email_not_verified", "the identity provider does not say the email address is verified"));
    }
    let holder = crate::org_auth::holder(&app.db, &email).await?;
    // An address of a domain another organisation holds is that organisation's to sign in: no
    // other organisation's provider links or creates it.
    if holder.as_deref().is_some_and(|h| h != org) {
        return Err(refused("domain_held_elsewhere", "this address's domain belongs to another organisation: sign in through it"));
    }
    let held = holder.is_some();
    let existing = users::by_email(&app.db, &email).await?;
    if existing.is_some() && !held {
        return Err(ApiError::conflict(
            "account_exists",
            "an account with this address exists: sign in with it (linking needs the organisation to hold the address's domain)",
        ));
    }
    if existing.is_none() && !conn.create_accounts {
        return Err(refused("account_not_found", "no account here for this identity, and this connection does not create them"));
    }
    // A new account's password is a random secret nobody holds: it signs in through the
    // provider (or sets a password with a reset link).
    let unusable = app.hasher.hash(&crypto::new_secret("")).await?;
    match link(app, conn, sub, &email, existing.as_ref(), &unusable, t).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ApiError::conflict("sso_conflict", "this sign-in raced another: try again"))
        }
        Err(e) => Err(e.into()),
        Ok(uid) => {
            let user = users::by_id(&app.db, &uid).await?.ok_or_else(|| ApiError::internal("linked account vanished"))?;
            Ok((user, org))
        }
    }
}

/// In one transaction: the account (created when there is none), its membership of the
/// connection's organisation (added when missing) and the identity's link. Returns the user id.
async fn link(
    app: &App,
    conn: &ConnectionInfo,
    sub: &str,
    email: &str,
    existing: Option<&User>,
    unusable: &str,
    t: i64,
) -> Result<String, sqlx::Error> {
    let org = conn.org_id.as_str();
    let mut tx = db::begin_write(&app.db).await?;
    let uid = match existing {
        Some(u) => u.id.clone(),
        None => {
            let id = crypto::new_id("usr");
            sqlx::query(
                "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, verified_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, 'active', 'none', $5, $5, $5)",
            )
            .bind(&id)
            .bind(email)
            .bind(org)
            .bind(unusable)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            Event::new(Action::UserCreated, Some(org), Who::Anonymous)
                .target("user", &id)
                .data(serde_json::json!({ "via": "federation", "connection_id": conn.id, "roles": conn.roles }))
                .write(&mut tx)
                .await?;
            id
        }
    };
    if !crate::members::belongs(&mut *tx, &uid, org).await? {
        crate::members::add(&mut tx, &uid, org, &conn.roles, t).await?;
        if existing.is_some() {
            Event::new(Action::MemberAdded, Some(org), Who::Anonymous)
                .target("user", &uid)
                .data(serde_json::json!({ "via": "federation", "connection_id": conn.id, "roles": conn.roles }))
                .write(&mut tx)
                .await?;
        }
    }
    sqlx::query("INSERT INTO federated_identities (connection_id, subject, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $4, $4)")
        .bind(&conn.id)
        .bind(sub)
        .bind(&uid)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    Event::new(Action::IdentityLinked, Some(org), Who::Anonymous)
        .target("user", &uid)
        .data(serde_json::json!({ "connection_id": conn.id }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(uid)
}
