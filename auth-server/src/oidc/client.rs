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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::Engine;

    use super::*;
    use crate::tests::test_app_with;

    const SECRET: &str = "s3cret:with%odd+chars";

    async fn insert(db: &Db, id: &str, secret: Option<&str>, revoked: bool) {
        sqlx::query(
            "INSERT INTO clients (id, secret_hash, org_id, name, roles, scopes, created_at, revoked_at, public_client) \
             VALUES ($1, $2, 'org_default', 'app', '[]', '[]', 1, $3, $4)",
        )
        .bind(id)
        .bind(secret.map(|s| crypto::sha256_hex(s.as_bytes())).unwrap_or_default())
        .bind(revoked.then_some(2i64))
        .bind(secret.is_none() as i64)
        .execute(db)
        .await
        .unwrap();
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let enc = |s: &str| serde_urlencoded::to_string([("a", s)]).unwrap()[2..].to_string();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {value}")).unwrap());
        h
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// RFC 6749 §2.3: a confidential client by its secret in Basic or the body (one of them), a
    /// public client by its id alone; anything else, and any mismatch, is `invalid_client`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_authentication() {
        let (app, dir) = test_app_with(|_| {}).await;
        let db = &app.db;
        insert(db, "cli_conf", Some(SECRET), false).await;
        insert(db, "cli_pub", None, false).await;
        insert(db, "cli_gone", Some(SECRET), true).await;
        let none = HeaderMap::new();
        let id = |r: Result<Client, ApiError>| r.map(|c| c.id).map_err(|e| e.code);
        // Accepted.
        assert_eq!(id(authenticate(db, &basic("cli_conf", SECRET), &form(&[])).await), Ok("cli_conf".into()));
        assert_eq!(id(authenticate(db, &basic("cli_conf", SECRET), &form(&[("client_id", "cli_conf")])).await), Ok("cli_conf".into()));
        assert_eq!(
            id(authenticate(db, &none, &form(&[("client_id", "cli_conf"), ("client_secret", SECRET)])).await),
            Ok("cli_conf".into())
        );
        assert_eq!(id(authenticate(db, &none, &form(&[("client_id", "cli_pub")])).await), Ok("cli_pub".into()));
        let mut lower = basic("cli_conf", SECRET);
        let v = lower[header::AUTHORIZATION].to_str().unwrap().replacen("Basic", "bAsIc", 1);
        lower.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        assert_eq!(id(authenticate(db, &lower, &form(&[])).await), Ok("cli_conf".into()), "the scheme in any case");
        // Refused.
        let refused: Vec<(HeaderMap, HashMap<String, String>, &str)> = vec![
            (basic("cli_conf", "wrong"), form(&[]), "wrong secret"),
            (basic("cli_conf", SECRET), form(&[("client_id", "cli_pub")]), "two ids"),
            (basic("cli_conf", SECRET), form(&[("client_secret", SECRET)]), "two secrets"),
            (none.clone(), form(&[("client_id", "cli_conf")]), "a confidential client without its secret"),
            (none.clone(), form(&[("client_id", "cli_pub"), ("client_secret", "")]), "a public client with a secret"),
            (basic("cli_pub", ""), form(&[]), "a public client by Basic"),
            (basic("cli_gone", SECRET), form(&[]), "a revoked client"),
            (basic("cli_none", SECRET), form(&[]), "an unknown client"),
            (none.clone(), form(&[("client_secret", SECRET)]), "no id"),
            (none.clone(), form(&[]), "nothing"),
        ];
        for (headers, body, why) in refused {
            assert_eq!(id(authenticate(db, &headers, &body).await), Err("invalid_client"), "{why}");
        }
        // An Authorization header that is not Basic, or not decodable, is refused outright (not
        // ignored in favour of the body).
        for bad in ["Bearer x", "Basic !!!", "Basic bm9jb2xvbg==", "Basic"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            let body = form(&[("client_id", "cli_conf"), ("client_secret", SECRET)]);
            assert_eq!(id(authenticate(db, &h, &body).await), Err("invalid_client"), "{bad}");
        }
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A stored row reads back as the client it describes (flags are integers in the table).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_client_reads_back() {
        let (app, dir) = test_app_with(|_| {}).await;
        sqlx::query(
            "INSERT INTO clients (id, secret_hash, org_id, name, roles, scopes, created_at, public_client, first_party, require_pkce, \
             grant_types, redirect_uris, access_ttl_s) VALUES ('cli_own', '', 'org_default', 'Own', '[\"admin\"]', '[\"read\"]', 7, 1, 1, 0, \
             '[\"authorization_code\"]', '[\"https://app.example/cb\"]', 60)",
        )
        .execute(&app.db)
        .await
        .unwrap();
        let c = Client::load(&app.db, "cli_own").await.unwrap().unwrap();
        assert_eq!((c.public, c.first_party, c.require_pkce), (true, true, false));
        assert_eq!(
            (c.roles, c.scopes, c.grant_types),
            (vec!["admin".to_string()], vec!["read".to_string()], vec!["authorization_code".to_string()])
        );
        assert_eq!(
            (c.redirect_uris, c.access_ttl_s, c.refresh_ttl_s, c.created_at),
            (vec!["https://app.example/cb".to_string()], Some(60), None, 7)
        );
        insert(&app.db, "cli_plain", Some(SECRET), false).await;
        let c = Client::load(&app.db, "cli_plain").await.unwrap().unwrap();
        assert_eq!((c.public, c.first_party, c.require_pkce), (false, false, true));
        // Only ids of 1 to 100 bytes are looked up (rows planted at 0, 100 and 101 bytes).
        for id in [String::new(), "c".repeat(100), "c".repeat(101)] {
            insert(&app.db, &id, Some(SECRET), false).await;
        }
        assert!(Client::load(&app.db, "").await.unwrap().is_none());
        assert!(Client::load(&app.db, &"c".repeat(100)).await.unwrap().is_some());
        assert!(Client::load(&app.db, &"c".repeat(101)).await.unwrap().is_none());
        // Grants by name; trust only for the client's own organisation, and only first-party.
        let own = Client::load(&app.db, "cli_own").await.unwrap().unwrap();
        assert!(own.allows_grant("authorization_code") && !own.allows_grant("refresh_token"));
        assert!(own.trusted_by("org_default") && !own.trusted_by("org_other"));
        assert!(!c.trusted_by("org_default"), "not first-party");
        // An organisation's clients, revoked ones too, oldest first.
        insert(&app.db, "cli_gone", Some(SECRET), true).await;
        let ids: Vec<String> = Client::of_org(&app.db, "org_default").await.unwrap().into_iter().map(|c| c.id).collect();
        let (c100, c101) = ("c".repeat(100), "c".repeat(101));
        assert_eq!(ids, ["", c100.as_str(), c101.as_str(), "cli_gone", "cli_plain", "cli_own"]);
        assert!(Client::of_org(&app.db, "org_other").await.unwrap().is_empty());
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(basic_credentials(&basic("a b", "c:d%e+f")), Some(("a b".into(), "c:d%e+f".into())));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YSUyMGI6YyUzQWQ="));
        assert_eq!(basic_credentials(&h), Some(("a b".into(), "c:d".into())));
    }
}
