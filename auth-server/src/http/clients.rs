//! Registered clients (machine clients with `client_credentials`; web, single-page and native
//! apps with the authorization-code flow) and the `client_credentials` grant (RFC 6749 §4.4).
//! Client secrets are 256 random bits, stored as SHA-256 (a slow hash adds nothing to a secret
//! that cannot be guessed) and compared in constant time.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{Action, Event, Who};
use crate::authority::Actor;
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::oidc::{check_redirect_uri, Client};
use crate::revocations;
use crate::sessions::{mint_access, Subject};
use crate::users::valid_role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    pub name: String,
    /// Roles the creator holds and may grant: tenant roles (platform roles only for a platform
    /// admin of the operator organisation). Carried by `client_credentials` tokens only.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes the client may ask for (all of them when it asks for none); `openid`, `email`,
    /// `profile` and `offline_access` are always allowed in the authorization-code flow.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `client_credentials`, `authorization_code`, `refresh_token`. Default:
    /// `authorization_code` + `refresh_token` with redirect URIs, else `client_credentials`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Exact redirect URIs (https, loopback http, or a reverse-domain scheme for native apps).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards (exact).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (single-page or native app): no secret, PKCE always.
    #[serde(default)]
    pub public: bool,
    /// This organisation's own app: its members are not asked for consent, and its tokens
    /// carry their roles. Other organisations' members are always asked, and get no roles.
    #[serde(default)]
    pub first_party: bool,
    /// PKCE for confidential clients too (default true; public clients always).
    #[serde(default)]
    pub require_pkce: Option<bool>,
    /// `EdDSA`, `ES256` or `RS256` (one of the server's ID-token algorithms); default the
    /// access tokens' algorithm.
    #[serde(default)]
    pub id_token_alg: Option<String>,
    /// Access-token lifetime for this client (at most the server's `tokens.access_ttl_s`).
    #[serde(default)]
    pub access_ttl_s: Option<i64>,
    /// Refresh-token lifetime for this client (at most the server's `tokens.refresh_ttl_s`).
    #[serde(default)]
    pub refresh_ttl_s: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedClient {
    /// Shown once; absent for public clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(flatten)]
    pub info: ClientInfo,
}

const GRANTS: [&str; 3] = ["client_credentials", "authorization_code", "refresh_token"];

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

/// The request checked field by field; returns the grant types to store.
fn validate(app: &App, req: &CreateClientRequest) -> ApiResult<Vec<String>> {
    if req.name.trim().is_empty() || req.name.len() > 100 || req.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_name", "name must have 1 to 100 characters"));
    }
    if !req.roles.iter().chain(req.scopes.iter()).all(|r| valid_role(r) && !r.contains(' '))
        || req.roles.len() > 50
        || req.scopes.len() > 50
    {
        return Err(ApiError::bad_request(
            "invalid_role",
            "roles and scopes are 1 to 64 visible ASCII characters without commas or spaces",
        ));
    }
    let grants = req.grant_types.clone().unwrap_or_else(|| {
        if req.redirect_uris.is_empty() {
            vec!["client_credentials".into()]
        } else {
            vec!["authorization_code".into(), "refresh_token".into()]
        }
    });
    if grants.is_empty() || grants.iter().any(|g| !GRANTS.contains(&g.as_str())) {
        return Err(bad("invalid_grant_types", format!("grant_types: a non-empty list of {}", GRANTS.join(", "))));
    }
    let code_flow = grants.iter().any(|g| g == "authorization_code");
    if req.public && grants.iter().any(|g| g == "client_credentials") {
        return Err(bad("invalid_grant_types", "a public client has no secret: it cannot use client_credentials".into()));
    }
    if code_flow == req.redirect_uris.is_empty() {
        return Err(bad("invalid_redirect_uri", "redirect_uris: required with authorization_code, and only with it".into()));
    }
    if req.redirect_uris.len() > 20 || req.post_logout_redirect_uris.len() > 20 {
        return Err(bad("invalid_redirect_uri", "at most 20 redirect URIs of each kind".into()));
    }
    for (field, list) in [("redirect_uris", &req.redirect_uris), ("post_logout_redirect_uris", &req.post_logout_redirect_uris)] {
        for (i, uri) in list.iter().enumerate() {
            check_redirect_uri(uri).map_err(|why| bad("invalid_redirect_uri", format!("{field}[{i}]: {why}")))?;
        }
    }
    if let Some(alg) = &req.id_token_alg {
        let allowed = app.cfg.id_token_algs();
        if !allowed.contains(&alg.as_str()) {
            return Err(bad(
                "invalid_id_token_alg",
                format!("id_token_alg: one of the server's ID-token algorithms ({})", allowed.join(", ")),
            ));
        }
    } else if code_flow && app.cfg.id_token_algs().is_empty() {
        return Err(bad("invalid_id_token_alg", "the server signs with HS256: set oidc.id_token_algs for ID tokens".into()));
    }
    let ttl_ok = |v: Option<i64>, max: i64| v.is_none_or(|v| (30..=max).contains(&v));
    if !ttl_ok(req.access_ttl_s, app.cfg.tokens.access_ttl_s) || !ttl_ok(req.refresh_ttl_s, app.cfg.tokens.refresh_ttl_s) {
        return Err(bad("invalid_ttl", "access_ttl_s and refresh_ttl_s: at least 30 and at most the server's".into()));
    }
    Ok(grants)
}

#[utoipa::path(post, path = "/v1/clients", tag = "admin", request_body = CreateClientRequest, security(("bearer" = [])),
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(State(app): State<AppState>, caller: Caller, Json(req): Json<CreateClientRequest>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    for r in &req.roles {
        actor.may_delegate(&app.cfg, r)?;
    }
    let created = register(&app, &actor.org, Some(&actor.user.id), req).await?;
    let mut resp = (StatusCode::CREATED, axum::Json(created)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Registers a client in `org` (the caller has checked who may, and the roles); the secret is
/// in the answer only.
pub async fn register(app: &App, org: &str, created_by: Option<&str>, req: CreateClientRequest) -> ApiResult<CreatedClient> {
    let grants = validate(app, &req)?;
    let id = crypto::new_id("cli");
    let secret = (!req.public).then(|| crypto::new_secret("cs_"));
    let json = |v: &Vec<String>| serde_json::to_string(v).expect("serializes");
    let require_pkce = req.public || req.require_pkce.unwrap_or(true);
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    sqlx::query(
        "INSERT INTO clients (id, secret_hash, org_id, name, roles, scopes, created_by, created_at, grant_types, redirect_uris, \
         post_logout_redirect_uris, public_client, first_party, require_pkce, id_token_alg, access_ttl_s, refresh_ttl_s) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&id)
    .bind(secret.as_ref().map_or(String::new(), |s| crypto::sha256_hex(s.as_bytes())))
    .bind(org)
    .bind(req.name.trim())
    .bind(json(&req.roles))
    .bind(json(&req.scopes))
    .bind(created_by)
    .bind(t)
    .bind(json(&grants))
    .bind(json(&req.redirect_uris))
    .bind(json(&req.post_logout_redirect_uris))
    .bind(req.public as i64)
    .bind(req.first_party as i64)
    .bind(require_pkce as i64)
    .bind(&req.id_token_alg)
    .bind(req.access_ttl_s)
    .bind(req.refresh_ttl_s)
    .execute(&mut *tx)
    .await?;
    Event::new(Action::ClientCreated, Some(org), created_by.map_or(Who::Operator, Who::User))
        .target("client", &id)
        .data(serde_json::json!({ "name": req.name.trim(), "roles": req.roles, "scopes": req.scopes, "grant_types": grants, "public": req.public }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    let info = Client::load(&app.db, &id).await?.ok_or_else(|| ApiError::internal("the client just registered is gone"))?;
    Ok(CreatedClient { client_secret: secret, info })
}

/// A registered client as listed (never its secret).
pub type ClientInfo = Client;

#[utoipa::path(get, path = "/v1/clients", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<ClientInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<ClientInfo>>> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    Ok(axum::Json(list_org(&app, &actor.org).await?))
}

/// The clients of an organisation, oldest first.
pub async fn list_org(app: &App, org: &str) -> ApiResult<Vec<ClientInfo>> {
    Ok(Client::of_org(&app.db, org).await?)
}

#[utoipa::path(delete, path = "/v1/clients/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "revoked, with every token and session it holds"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    revoke_client(&app, &id, Some(&actor.org), Who::User(&actor.user.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a client of `org` (any organisation's for the operator, `None`): its own tokens
/// (`client_credentials`: `sub` is the client) and every session it holds for people.
pub async fn revoke_client(app: &App, id: &str, org: Option<&str>, actor: Who<'_>) -> ApiResult<()> {
    let mut tx = crate::db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let owner: Option<String> =
        sqlx::query_scalar("SELECT org_id FROM clients WHERE id = $1 AND revoked_at IS NULL").bind(id).fetch_optional(&mut *tx).await?;
    let n = match &owner {
        Some(o) if org.is_none_or(|org| org == o) => sqlx::query("UPDATE clients SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(t)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        _ => 0,
    };
    if n == 0 {
        return Err(ApiError::not_found("client_not_found", "no such client"));
    }
    let cutoff = revocations::subject_cutoff(&app.cfg, t);
    revocations::insert(&mut tx, "sub", id, Some(cutoff), cutoff + app.cfg.tokens.access_ttl_s).await?;
    let sids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE client_id = $1 AND revoked_at IS NULL").bind(id).fetch_all(&mut *tx).await?;
    for sid in &sids {
        crate::sessions::revoke_in_tx(&mut tx, &app.cfg, t, sid, "client_revoked").await?;
    }
    Event::new(Action::ClientRevoked, owner.as_deref(), actor)
        .target("client", id)
        .data(serde_json::json!({ "sessions_revoked": sids.len() }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(())
}

/// Decodes an `application/x-www-form-urlencoded` body; a parameter sent twice is refused
/// (RFC 6749 §3.1, §3.2).
pub fn parse_form(body: &[u8]) -> ApiResult<HashMap<String, String>> {
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| ApiError::bad_request("invalid_request", "the body is not a valid form"))?;
    let mut form = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if form.insert(k, v).is_some() {
            return Err(ApiError::bad_request("invalid_request", "a parameter is repeated"));
        }
    }
    Ok(form)
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The `client_credentials` grant (RFC 6749 §4.4): a confidential client's own token, with the
/// roles it was created with and the scopes it asks for among those allowed.
pub async fn client_credentials(app: &AppState, client: &Client, form: &HashMap<String, String>) -> ApiResult<Response> {
    if client.public || !client.allows_grant("client_credentials") {
        return Err(ApiError::bad_request("unauthorized_client", "this client may not use the client_credentials grant"));
    }
    super::orgs::ensure_active(app, &client.org_id).await?;
    let granted: Vec<String> = match form.get("scope").map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
        Some(asked) if !asked.is_empty() => {
            if asked.iter().any(|s| !client.scopes.contains(s)) {
                return Err(ApiError::bad_request("invalid_scope", "a requested scope is not allowed for this client"));
            }
            asked
        }
        _ => client.scopes.clone(),
    };
    let scope = (!granted.is_empty()).then(|| granted.join(" "));
    let (access, ttl) = mint_access(
        app,
        Subject {
            sub: &client.id,
            email: None,
            org: Some(&client.org_id),
            roles: client.roles.clone(),
            sid: None,
            amr: Vec::new(),
            scope: scope.clone(),
            client_id: Some(&client.id),
            ttl_s: client.access_ttl_s,
        },
    )?;
    metrics::counter!("authgate_logins_total", "flow" => "client_credentials").increment(1);
    Ok(super::oauth::no_store(
        axum::Json(TokenResponse { access_token: access, token_type: "Bearer", expires_in: ttl, scope }).into_response(),
    ))
}
