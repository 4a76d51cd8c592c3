//! Sign-in through an organisation's identity providers, this server being the relying party:
//! connections (generic OpenID Connect, presets that know Google's, Microsoft's, Entra ID's
//! and GitHub's ways, and SAML 2.0), the browser's round trip (code with PKCE S256, `state`,
//! `nonce`; or an AuthnRequest and the IdP's signed Response), and what it ends in — a sign-in
//! (accounts.rs decides who) or an identity linked to the account that started it.

mod accounts;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
mod github;
mod oidc;
mod saml;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub use accounts::{identities, unlink, IdentityInfo};
pub use saml::{NewSaml, SamlInfo};

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now};
use crate::egress::{self, Egress};
use crate::error::ApiError;
use crate::users::{self, User};

/// What a connection's provider is: the generic protocol, or a preset for a provider's quirks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Any OpenID Connect provider, from its discovery document.
    Oidc,
    /// Google accounts (`https://accounts.google.com`).
    Google,
    /// Microsoft personal accounts (the consumers tenant).
    Microsoft,
    /// Microsoft Entra ID work accounts of the listed tenants (multi-tenant app).
    Entra,
    /// GitHub (OAuth 2.0 and its REST API: not OpenID Connect).
    Github,
    /// A SAML 2.0 identity provider (this server the service provider).
    Saml,
}

/// Microsoft's tenant of personal accounts.
pub const MICROSOFT_CONSUMERS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Oidc => "oidc",
            Kind::Google => "google",
            Kind::Microsoft => "microsoft",
            Kind::Entra => "entra",
            Kind::Github => "github",
            Kind::Saml => "saml",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "google" => Kind::Google,
            "microsoft" => Kind::Microsoft,
            "entra" => Kind::Entra,
            "github" => Kind::Github,
            "saml" => Kind::Saml,
            _ => Kind::Oidc,
        }
    }

    /// The issuer when the request names none (GitHub: its web address; Entra ID: the
    /// `organizations` authority whose discovery document names the `{tenantid}` issuer).
    fn default_issuer(self) -> Option<&'static str> {
        match self {
            Kind::Oidc | Kind::Saml => None,
            Kind::Google => Some("https://accounts.google.com"),
            Kind::Microsoft => Some("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"),
            Kind::Entra => Some("https://login.microsoftonline.com/organizations/v2.0"),
            Kind::Github => Some("https://github.com"),
        }
    }

    fn is_oidc(self) -> bool {
        !matches!(self, Kind::Github | Kind::Saml)
    }
}

/// A connection as its organisation's admins see it (never the secret).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConnectionInfo {
    pub id: String,
    pub org_id: String,
    pub kind: Kind,
    pub name: String,
    /// The issuer (Entra ID: the authority; GitHub: its web address; SAML: the IdP's entity id).
    pub issuer: String,
    /// SAML: our entity id at the IdP.
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: String,
    /// Entra ID: the tenants whose people it signs in.
    pub tenants: Vec<String>,
    /// First sight of a verified address creates its account (a member with `roles`).
    pub create_accounts: bool,
    pub roles: Vec<String>,
    pub created_at: i64,
    /// SAML: what to enter at the IdP, and what is known of it.
    pub saml: Option<SamlInfo>,
}

struct Connection {
    info: ConnectionInfo,
    /// Sealed with the master key.
    client_secret: Option<String>,
    saml: Option<saml::Settings>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// Default `oidc`.
    #[serde(default = "generic")]
    pub kind: Kind,
    /// What the sign-in button says ("Acme SSO").
    pub name: String,
    /// Required for `oidc` (its discovery document is read at
    /// `<issuer>/.well-known/openid-configuration`); the presets know theirs (given, it replaces
    /// it: an Entra ID authority ending `/organizations/v2.0`, a GitHub Enterprise Server address).
    /// SAML: the IdP's entity id (default: its metadata's).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required but for SAML (whose entity id here the server makes).
    #[serde(default)]
    pub client_id: String,
    /// Absent: a public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Space-separated. Default `openid email profile` (`openid` is always asked), GitHub
    /// `read:user user:email`.
    #[serde(default)]
    pub scopes: Option<String>,
    /// Entra ID only, required: the tenant ids (GUIDs) whose people it signs in.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Roles of the members it creates or adds (ones the creating admin may grant).
    #[serde(default)]
    pub roles: Vec<String>,
    /// SAML only, required: the IdP.
    #[serde(default)]
    pub saml: Option<NewSaml>,
}

fn generic() -> Kind {
    Kind::Oidc
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

/// `url`, derived from a connection's `issuer`, as a URL the server may call (the egress rules);
/// the refusal names the field, the log says why.
async fn callable(app: &App, issuer: &str, url: &str) -> Result<url::Url, &'static str> {
    egress::check_url(egress_of(app), url).await.map_err(|why| {
        tracing::info!(issuer, why, "identity provider address refused");
        "issuer: https only, a public address, no credentials or fragment (federation.allow_http / allow_private_addresses permit more)"
    })
}

fn client(app: &App) -> Result<reqwest::Client, ApiError> {
    egress::client(egress_of(app), Duration::from_millis(app.cfg.federation.timeout_ms as u64), "authgate-federation")
        .map_err(|e| ApiError::internal(format!("federation client: {e}")))
}

fn unavailable(what: impl std::fmt::Display) -> ApiError {
    tracing::info!(error = %what, "identity provider unavailable");
    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "idp_unavailable", "the identity provider could not be reached or answered wrongly")
}

fn refused(code: &'static str, message: &'static str) -> ApiError {
    ApiError::forbidden(code, message)
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

/// An Entra ID tenant id: a GUID, lowercase as Microsoft writes it in issuers.
fn valid_tenant(t: &str) -> bool {
    t.len() == 36
        && t.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
            }
        })
}

/// Registers a connection of `org` after checking its provider (the discovery document of an
/// OpenID Connect provider; GitHub's addresses).
pub async fn create(app: &App, org: &str, req: NewConnection, actor: Who<'_>) -> Result<ConnectionInfo, ApiError> {
    let name = req.name.trim().to_string();
    let name = name.as_str();
    if !users::valid_name(name) {
        return Err(invalid("name: 1 to 100 characters, no control characters"));
    }
    if req.kind == Kind::Saml {
        return create_saml(app, org, name, req, actor).await;
    }
    if req.saml.is_some() {
        return Err(invalid("saml: only for kind saml"));
    }
    let client_id = req.client_id.trim();
    if client_id.is_empty() || client_id.len() > 200 || client_id.chars().any(char::is_control) {
        return Err(invalid("client_id: 1 to 200 characters"));
    }
    let issuer = match (req.issuer.as_deref(), req.kind.default_issuer()) {
        (Some(i), _) | (None, Some(i)) => i.to_string(),
        (None, None) => return Err(invalid("issuer: required for a generic OpenID Connect provider")),
    };
    if issuer.len() > 500 {
        return Err(invalid("issuer: at most 500 characters"));
    }
    let default_scopes = if req.kind.is_oidc() { "openid email profile" } else { "read:user user:email" };
    let mut scopes: Vec<&str> = req.scopes.as_deref().unwrap_or(default_scopes).split(' ').filter(|s| !s.is_empty()).collect();
    if req.kind.is_oidc() && !scopes.contains(&"openid") {
        scopes.insert(0, "openid");
    }
    if scopes.is_empty()
        || scopes.len() > 20
        || !scopes.iter().all(|s| s.len() <= 100 && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\'))
    {
        return Err(invalid("scopes: 1 to 20 space-separated scope tokens"));
    }
    let mut tenants: Vec<String> = req.tenants.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
    tenants.sort();
    tenants.dedup();
    match req.kind {
        Kind::Entra if tenants.is_empty() || tenants.len() > 50 || !tenants.iter().all(|t| valid_tenant(t)) => {
            return Err(invalid("tenants: 1 to 50 Entra ID tenant ids (GUIDs) whose people this connection signs in"));
        }
        Kind::Entra => {}
        _ if !tenants.is_empty() => return Err(invalid("tenants: only for kind entra")),
        _ => {}
    }
    if req.roles.len() > 50 || !req.roles.iter().all(|r| users::valid_role(r)) {
        return Err(invalid("roles: 1 to 64 visible ASCII characters without commas each; at most 50"));
    }
    match req.kind {
        Kind::Github => github::check(app, &issuer).await.map_err(invalid)?,
        kind => {
            oidc::discover(app, kind, &issuer).await.map_err(invalid)?;
        }
    }
    let id = crypto::new_id("conn");
    let secret = req.client_secret.as_deref().filter(|s| !s.is_empty()).map(|s| app.master.seal(s.as_bytes(), &secret_context(&id)));
    let created = ConnectionInfo {
        id,
        org_id: org.to_string(),
        kind: req.kind,
        name: name.to_string(),
        issuer,
        client_id: client_id.to_string(),
        has_client_secret: secret.is_some(),
        scopes: scopes.join(" "),
        tenants,
        create_accounts: req.create_accounts,
        roles: sorted(&req.roles),
        created_at: now(),
        saml: None,
    };
    insert(app, created, secret, None, actor).await
}

fn sorted(roles: &[String]) -> Vec<String> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    roles
}

/// A SAML connection: the IdP from its metadata or parts; our entity id made from the
/// connection's id.
async fn create_saml(app: &App, org: &str, name: &str, req: NewConnection, actor: Who<'_>) -> Result<ConnectionInfo, ApiError> {
    if !req.client_id.is_empty() || req.client_secret.is_some() || req.scopes.is_some() || !req.tenants.is_empty() {
        return Err(invalid("client_id, client_secret, scopes, tenants: not for kind saml"));
    }
    if req.roles.len() > 50 || !req.roles.iter().all(|r| users::valid_role(r)) {
        return Err(invalid("roles: 1 to 64 visible ASCII characters without commas each; at most 50"));
    }
    let new = req.saml.ok_or_else(|| invalid("saml: required for kind saml (metadata, or sso_url and certificates)"))?;
    let id = crypto::new_id("conn");
    let (issuer, settings) = saml::settings(app, new, req.issuer.as_deref())?;
    let settings = saml::with_new_key(app, &id, settings)?;
    let sp_entity_id = saml::sp_entity_id(app, &id);
    let created = ConnectionInfo {
        saml: Some(saml::info(app, &id, &sp_entity_id, &settings)),
        id,
        org_id: org.to_string(),
        kind: Kind::Saml,
        name: name.to_string(),
        issuer,
        client_id: sp_entity_id,
        has_client_secret: false,
        scopes: String::new(),
        tenants: Vec::new(),
        create_accounts: req.create_accounts,
        roles: sorted(&req.roles),
        created_at: now(),
    };
    insert(app, created, None, Some(settings), actor).await
}

/// Stores a checked connection (at most `federation.max_per_org` per organisation), audited.
async fn insert(
    app: &App,
    c: ConnectionInfo,
    secret: Option<String>,
    saml: Option<saml::Settings>,
    actor: Who<'_>,
) -> Result<ConnectionInfo, ApiError> {
    let org = c.org_id.as_str();
    let mut tx = db::begin_write(&app.db).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_connections WHERE org_id = $1").bind(org).fetch_one(&mut *tx).await?;
    if n >= app.cfg.federation.max_per_org {
        return Err(ApiError::conflict("too_many_connections", "this organisation has as many connections as it may: remove one first"));
    }
    sqlx::query(
        "INSERT INTO oidc_connections (id, org_id, kind, name, issuer, client_id, client_secret, scopes, tenants, create_accounts, roles, created_at, saml) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&c.id)
    .bind(org)
    .bind(c.kind.as_str())
    .bind(&c.name)
    .bind(&c.issuer)
    .bind(&c.client_id)
    .bind(&secret)
    .bind(&c.scopes)
    .bind(serde_json::to_string(&c.tenants).expect("serializes"))
    .bind(c.create_accounts as i64)
    .bind(serde_json::to_string(&c.roles).expect("serializes"))
    .bind(c.created_at)
    .bind(saml.as_ref().map(|s| serde_json::to_string(s).expect("serializes")))
    .execute(&mut *tx)
    .await?;
    let mut data = serde_json::json!({ "kind": c.kind, "issuer": c.issuer, "tenants": c.tenants, "create_accounts": c.create_accounts, "roles": c.roles });
    if let Some(s) = &c.saml {
        data["saml"] = serde_json::json!({ "sso_url": s.sso_url, "certificate_fingerprints": s.certificate_fingerprints, "allowed_roles": s.allowed_roles });
    }
    Event::new(Action::ConnectionCreated, Some(org), actor).target("connection", &c.id).data(data).write(&mut tx).await?;
    tx.commit().await?;
    Ok(c)
}

type Row = (String, String, String, String, String, String, Option<String>, String, String, i64, String, i64, Option<String>);
const COLUMNS: &str = "id, org_id, kind, name, issuer, client_id, client_secret, scopes, tenants, create_accounts, roles, created_at, saml";

fn from_row(
    app: &App,
    (id, org_id, kind, name, issuer, client_id, client_secret, scopes, tenants, create_accounts, roles, created_at, saml): Row,
) -> Connection {
    let saml: Option<saml::Settings> = saml.and_then(|s| serde_json::from_str(&s).ok());
    Connection {
        info: ConnectionInfo {
            org_id,
            kind: Kind::parse(&kind),
            name,
            issuer,
            has_client_secret: client_secret.is_some(),
            scopes,
            tenants: serde_json::from_str(&tenants).unwrap_or_default(),
            create_accounts: create_accounts != 0,
            roles: serde_json::from_str(&roles).unwrap_or_default(),
            created_at,
            saml: saml.as_ref().map(|s| saml::info(app, &id, &client_id, s)),
            id,
            client_id,
        },
        client_secret,
        saml,
    }
}

pub async fn list(app: &App, org: &str) -> Result<Vec<ConnectionInfo>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM oidc_connections WHERE org_id = $1 ORDER BY name, id"))
        .bind(org)
        .fetch_all(&app.db)
        .await?;
    Ok(rows.into_iter().map(|r| from_row(app, r).info).collect())
}

async fn get(app: &App, id: &str) -> Result<Option<Connection>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM oidc_connections WHERE id = $1")).bind(id).fetch_optional(&app.db).await?;
    Ok(row.map(|r| from_row(app, r)))
}

/// Our SAML metadata for a connection (none for other kinds).
pub async fn saml_metadata(app: &App, id: &str) -> Result<String, ApiError> {
    let conn = get(app, id).await?;
    match conn.as_ref().and_then(|c| c.saml.as_ref().map(|s| (c, s))) {
        Some((conn, settings)) => saml::metadata(app, conn, settings),
        None => Err(ApiError::not_found("connection_not_found", "no such SAML connection")),
    }
}

/// A SAML connection's IdP replaced (a certificate rollover, a new sign-on URL, another
/// attribute mapping): what a new connection would say of its IdP, checked the same way. Our
/// entity id, key and the identities linked through it stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlUpdate {
    /// The IdP's entity id (default: the new metadata's, else the current one).
    #[serde(default)]
    pub issuer: Option<String>,
    pub saml: NewSaml,
}

pub async fn update_saml(app: &App, org: &str, id: &str, req: SamlUpdate, actor: Who<'_>) -> Result<ConnectionInfo, ApiError> {
    let not_found = || ApiError::not_found("connection_not_found", "this organisation has no such SAML connection");
    let conn = get(app, id).await?.filter(|c| c.info.org_id == org).ok_or_else(not_found)?;
    let current = conn.saml.ok_or_else(not_found)?;
    let issuer = req.issuer.or_else(|| req.saml.metadata.is_none().then(|| conn.info.issuer.clone()));
    let (issuer, mut settings) = saml::settings(app, req.saml, issuer.as_deref())?;
    settings.sp_certificate = current.sp_certificate;
    settings.sp_key = current.sp_key;
    let mut tx = db::begin_write(&app.db).await?;
    let n = sqlx::query("UPDATE oidc_connections SET issuer = $1, saml = $2 WHERE id = $3 AND org_id = $4")
        .bind(&issuer)
        .bind(serde_json::to_string(&settings).expect("serializes"))
        .bind(id)
        .bind(org)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(not_found());
    }
    let info = saml::info(app, id, &conn.info.client_id, &settings);
    Event::new(Action::ConnectionUpdated, Some(org), actor)
        .target("connection", id)
        .data(serde_json::json!({ "issuer": issuer, "saml": { "sso_url": info.sso_url, "certificate_fingerprints": info.certificate_fingerprints,
            "allowed_roles": info.allowed_roles } }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(ConnectionInfo { issuer, saml: Some(info), ..conn.info })
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

/// A round trip waiting for the provider's answer, under the hash of its `state`.
#[derive(Serialize, Deserialize)]
struct Pending {
    connection: String,
    return_to: String,
    nonce: String,
    verifier: String,
    /// Set when a signed-in account links the identity rather than signing in with it.
    #[serde(default)]
    link_user: Option<String>,
    /// SAML: the AuthnRequest's id, which the answer must name.
    #[serde(default)]
    request_id: Option<String>,
}

fn pending_key(state: &str) -> String {
    format!("sso:{}", crypto::sha256_hex(state.as_bytes()))
}

/// Where providers send the browser back.
pub fn redirect_uri(app: &App) -> String {
    format!("{}/login/sso/callback", app.cfg.public_url.trim_end_matches('/'))
}

/// A connection by id, for a round trip: its organisation active, its sign-in rules allowing
/// its identity providers (`sso`).
async fn usable(app: &App, connection: &str) -> Result<Connection, ApiError> {
    let conn = get(app, connection).await?.ok_or_else(|| ApiError::not_found("connection_not_found", "no such connection"))?;
    crate::http::orgs::ensure_active(app, &conn.info.org_id).await?;
    if !crate::org_auth::rules(&app.db, &conn.info.org_id).await?.allows("sso") {
        return Err(ApiError::forbidden("method_not_allowed", "the organisation's sign-in rules do not allow its identity providers"));
    }
    Ok(conn)
}

/// Starts a round trip through `connection`: returns the provider's authorization URL and the
/// `state` (which the browser must also hold, bound by a cookie, for the answer to count).
/// `link_user`: the signed-in account the identity is to be linked to, instead of a sign-in.
pub async fn start(app: &App, connection: &str, return_to: &str, link_user: Option<&str>) -> Result<(String, String), ApiError> {
    let conn = usable(app, connection).await?;
    if let Some(uid) = link_user {
        accounts::may_link(app, &conn.info, uid).await?;
    }
    let state = crypto::new_secret("");
    if let Some(settings) = &conn.saml {
        let (url, request_id) = saml::redirect(app, &conn, settings, &state)?;
        let pending = Pending {
            connection: connection.to_string(),
            return_to: return_to.to_string(),
            nonce: String::new(),
            verifier: String::new(),
            link_user: link_user.map(str::to_string),
            request_id: Some(request_id),
        };
        app.eph.put(&pending_key(&state), &serde_json::to_string(&pending).expect("serializes"), 600).await?;
        return Ok((url, state));
    }
    let endpoint = match conn.info.kind {
        Kind::Github => github::authorization_endpoint(&conn.info.issuer),
        kind => oidc::discovered(app, kind, &conn.info.issuer).await?.authorization_endpoint.clone(),
    };
    let nonce = crypto::new_secret("");
    let verifier = crypto::new_secret("");
    let challenge = auth_core::b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let pending = Pending {
        connection: connection.to_string(),
        return_to: return_to.to_string(),
        nonce: nonce.clone(),
        verifier,
        link_user: link_user.map(str::to_string),
        request_id: None,
    };
    app.eph.put(&pending_key(&state), &serde_json::to_string(&pending).expect("serializes"), 600).await?;
    let mut url = url::Url::parse(&endpoint).map_err(unavailable)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &conn.info.client_id)
            .append_pair("redirect_uri", &redirect_uri(app))
            .append_pair("scope", &conn.info.scopes)
            .append_pair("state", &state);
        if conn.info.kind.is_oidc() {
            q.append_pair("nonce", &nonce);
        }
        q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
    }
    Ok((url.to_string(), state))
}

/// The provider answered with an error: the pending round trip is spent.
pub async fn abandon(app: &App, state: &str) -> Result<(), ApiError> {
    app.eph.take(&pending_key(state)).await?;
    Ok(())
}

/// Who the provider says the person is, in the terms account resolution needs.
struct Identity {
    /// Unique within the connection (Entra ID: `tid/sub`; GitHub: the numeric user id; SAML:
    /// the NameID).
    subject: String,
    email: Option<String>,
    /// The provider vouches that the person controls `email`.
    email_verified: bool,
    /// The display name a new account starts with.
    name: Option<String>,
    /// SAML with a roles attribute: the connection's `allowed_roles` the IdP gives the person.
    roles: Option<Vec<String>>,
}

/// What the provider's answer carried back to the browser.
pub enum Answer<'a> {
    /// OpenID Connect and GitHub: the authorization code.
    Code(&'a str),
    /// SAML: the `SAMLResponse` posted to the ACS of `connection`.
    SamlResponse { connection: &'a str, response: &'a str },
}

/// How a round trip ended.
pub enum Finished {
    /// A sign-in: the account, the organisation its session is for, where it goes next.
    SignedIn { user: User, org: String, return_to: String },
    /// The identity was linked to the signed-in account that started the round trip.
    Linked { return_to: String },
}

/// The provider's answer: the pending round trip is taken (once), the identity read (the code
/// exchanged for an ID token verified by auth-core's verifier, or for GitHub's API; a SAML
/// Response judged), then the person found or created here, or the identity linked to the
/// account that asked.
pub async fn finish(app: &App, state: &str, answer: Answer<'_>) -> Result<Finished, ApiError> {
    let invalid_state = || ApiError::bad_request("sso_state_invalid", "this sign-in is unknown, expired or already used: start again");
    let raw = app.eph.take(&pending_key(state)).await?.ok_or_else(invalid_state)?;
    let pending: Pending = serde_json::from_str(&raw).map_err(|_| invalid_state())?;
    let conn = usable(app, &pending.connection).await?;
    let mismatch = || refused("sso_failed", "the answer does not belong to this sign-in");
    let identity = match (answer, &conn.saml, pending.request_id.as_deref()) {
        (Answer::SamlResponse { connection, response }, Some(settings), Some(request_id)) if connection == conn.info.id => {
            saml::identity(app, &conn, settings, response, request_id).await?
        }
        (Answer::Code(code), None, None) if conn.info.kind == Kind::Github => github::identity(app, &conn, code, &pending).await?,
        (Answer::Code(code), None, None) => oidc::identity(app, &conn, code, &pending).await?,
        _ => return Err(mismatch()),
    };
    match pending.link_user {
        Some(uid) => {
            accounts::link_signed_in(app, &conn.info, &identity, &uid).await?;
            Ok(Finished::Linked { return_to: pending.return_to })
        }
        None => {
            let (user, org) = accounts::resolve(app, &conn.info, &identity).await?;
            Ok(Finished::SignedIn { user, org, return_to: pending.return_to })
        }
    }
}

/// How a provider takes the client's secret at its token endpoint.
enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, OpenID Connect's default).
    Basic,
    /// In the form (`client_secret_post`, what GitHub documents).
    Post,
}

/// The authorization code for the provider's tokens (with the PKCE verifier). A refusal is
/// `sso_failed`; an unreadable answer `idp_unavailable`.
async fn exchange(
    app: &App,
    conn: &Connection,
    token_endpoint: &str,
    code: &str,
    pending: &Pending,
    auth: ClientAuth,
) -> Result<Value, ApiError> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri(app)),
        ("code_verifier", pending.verifier.clone()),
        ("client_id", conn.info.client_id.clone()),
    ];
    let mut request = client(app)?.post(token_endpoint).header("accept", "application/json");
    if let Some(sealed) = &conn.client_secret {
        let secret =
            app.master.open(sealed, &secret_context(&conn.info.id)).map_err(|e| ApiError::internal(format!("connection secret: {e}")))?;
        let secret = String::from_utf8_lossy(&secret).to_string();
        match auth {
            ClientAuth::Basic => {
                form.retain(|(k, _)| *k != "client_id");
                request = request.basic_auth(form_encode(&conn.info.client_id), Some(form_encode(&secret)));
            }
            ClientAuth::Post => form.push(("client_secret", secret)),
        }
    }
    let resp = request.form(&form).send().await.map_err(unavailable)?;
    if !resp.status().is_success() {
        tracing::info!(status = %resp.status(), connection = %conn.info.id, "code exchange refused");
        return Err(refused("sso_failed", "the identity provider did not accept the sign-in"));
    }
    json_body(resp).await.map_err(unavailable)
}

/// `application/x-www-form-urlencoded` of a client id or secret, as HTTP Basic wants them for
/// OAuth (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
