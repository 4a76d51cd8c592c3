//! A registered client as the OAuth endpoints see it, and client authentication at the token
//! and revocation endpoints (RFC 6749 §2.3: HTTP Basic, the body, or none for public clients).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};

use crate::crypto;
use crate::db::Db;
use crate::error::ApiError;

/// Also the client as the API shows it (`/v1/clients`): everything but the secret's hash.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Client {
    #[serde(rename = "client_id")]
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub first_party: bool,
    pub require_pkce: bool,
    pub id_token_alg: Option<String>,
    pub access_ttl_s: Option<i64>,
    pub refresh_ttl_s: Option<i64>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    #[serde(skip)]
    secret_hash: String,
}

/// A `clients` row as stored (lists as JSON, flags as integers).
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    org_id: String,
    name: String,
    roles: String,
    scopes: String,
    grant_types: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    public_client: i64,
    first_party: i64,
    require_pkce: i64,
    id_token_alg: Option<String>,
    access_ttl_s: Option<i64>,
    refresh_ttl_s: Option<i64>,
    created_at: i64,
    revoked_at: Option<i64>,
    secret_hash: String,
}

const COLUMNS: &str = "id, org_id, name, roles, scopes, grant_types, redirect_uris, post_logout_redirect_uris, public_client, \
                       first_party, require_pkce, id_token_alg, access_ttl_s, refresh_ttl_s, created_at, revoked_at, secret_hash";

impl From<Row> for Client {
    fn from(r: Row) -> Client {
        let list = |json: &str| serde_json::from_str(json).unwrap_or_default();
        Client {
            roles: list(&r.roles),
            scopes: list(&r.scopes),
            grant_types: list(&r.grant_types),
            redirect_uris: list(&r.redirect_uris),
            post_logout_redirect_uris: list(&r.post_logout_redirect_uris),
            public: r.public_client != 0,
            first_party: r.first_party != 0,
            require_pkce: r.require_pkce != 0,
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            id_token_alg: r.id_token_alg,
            access_ttl_s: r.access_ttl_s,
            refresh_ttl_s: r.refresh_ttl_s,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            secret_hash: r.secret_hash,
        }
    }
}

impl Client {
    #[cfg(test)]
    pub fn for_tests(public: bool) -> Client {
        Client {
            id: "cli_app".into(),
            org_id: "org_a".into(),
            name: "App".into(),
            roles: Vec::new(),
            scopes: vec!["read".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            public,
            first_party: false,
            require_pkce: true,
            id_token_alg: None,
            access_ttl_s: None,
            refresh_ttl_s: None,
            created_at: 0,
            revoked_at: None,
            secret_hash: String::new(),
        }
    }

    /// A client that is not revoked.
    pub async fn load(db: &Db, id: &str) -> Result<Option<Client>, sqlx::Error> {
        if id.is_empty() || id.len() > 100 {
            return Ok(None);
        }
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM clients WHERE id = $1 AND revoked_at IS NULL"))
            .bind(id)
            .fetch_optional(db)
            .await?;
        Ok(row.map(Client::from))
    }

    /// Every client of an organisation, revoked ones included, oldest first.
    pub async fn of_org(db: &Db, org: &str) -> Result<Vec<Client>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM clients WHERE org_id = $1 ORDER BY created_at, id"))
            .bind(org)
            .fetch_all(db)
            .await?;
        Ok(rows.into_iter().map(Client::from).collect())
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Does this client skip the consent screen for `user_org`? Only its own organisation's
    /// members: another organisation's admin registering a "first-party" app gains nothing
    /// over this organisation's people.
    pub fn trusted_by(&self, user_org: &str) -> bool {
        self.first_party && self.org_id == user_org
    }
}

fn invalid_client() -> ApiError {
    ApiError::unauthorized("invalid_client", "client authentication failed")
}

/// The `client_id:client_secret` of an HTTP Basic header, each part form-urldecoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, cred.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("a={s}")).ok()?.pop().map(|p| p.1);
    Some((decode(id)?, decode(secret)?))
}

/// Who is calling the token endpoint: a confidential client by its secret (Basic or body,
/// exactly one of them), or a public client by its `client_id` alone. Unknown ids and wrong
/// secrets take the same time and get the same answer.
pub async fn authenticate(db: &Db, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<Client, ApiError> {
    let basic = basic_credentials(headers);
    if headers.contains_key(header::AUTHORIZATION) && basic.is_none() {
        return Err(invalid_client());
    }
    let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some((id, s)), None, None) => (id, Some(s)),
        (Some((id, s)), Some(body_id), None) if *body_id == id => (id, Some(s)),
        (None, Some(id), Some(s)) => (id.clone(), Some(s.clone())),
        (None, Some(id), None) => (id.clone(), None),
        _ => return Err(invalid_client()),
    };
    let client = Client::load(db, &client_id).await?;
    match secret {
        Some(secret) => {
            let presented = crypto::sha256_hex(secret.as_bytes());
            // A fixed decoy for unknown ids and public clients (whose hash is empty), so timing says nothing.
            let stored = client.as_ref().map(|c| c.secret_hash.clone()).filter(|h| h.len() == 64).unwrap_or_else(|| "0".repeat(64));
            let ok = crypto::ct_eq(presented.as_bytes(), stored.as_bytes());
            client.filter(|c| ok && !c.public).ok_or_else(invalid_client)
        }
        None => client.filter(|c| c.public).ok_or_else(invalid_client),
    }
}
