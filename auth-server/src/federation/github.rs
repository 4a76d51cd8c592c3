//! GitHub's side of the round trip: OAuth 2.0 (not OpenID Connect — no ID token), so the
//! person is read from its REST API with the access token: `/user` for the stable numeric id,
//! `/user/emails` for the primary address and whether GitHub verified it. GitHub Enterprise
//! Server is the same at its own address (API under `/api/v3`).

use serde::Deserialize;
use serde_json::Value;

use super::{callable, client, exchange, json_body, refused, unavailable, ClientAuth, Connection, Identity, Pending};
use crate::app::App;
use crate::error::ApiError;
use crate::users;

const GITHUB: &str = "https://github.com";

fn web_base(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// The REST API's address: `api.github.com` for github.com, `<host>/api/v3` for an Enterprise
/// Server.
fn api_base(issuer: &str) -> String {
    match web_base(issuer) {
        GITHUB => "https://api.github.com".to_string(),
        other => format!("{other}/api/v3"),
    }
}

pub(super) fn authorization_endpoint(issuer: &str) -> String {
    format!("{}/login/oauth/authorize", web_base(issuer))
}

fn token_endpoint(issuer: &str) -> String {
    format!("{}/login/oauth/access_token", web_base(issuer))
}

/// The addresses the round trip calls must be ones the server may call.
pub(super) async fn check(app: &App, issuer: &str) -> Result<(), &'static str> {
    for url in [authorization_endpoint(issuer), token_endpoint(issuer), api_base(issuer)] {
        callable(app, issuer, &url).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct User {
    id: u64,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    primary: bool,
    verified: bool,
}

/// The code for an access token, then who it belongs to. GitHub answers a refused code with
/// 200 and an `error` field: no `access_token` is a refusal.
pub(super) async fn identity(app: &App, conn: &Connection, code: &str, pending: &Pending) -> Result<Identity, ApiError> {
    let tokens = exchange(app, conn, &token_endpoint(&conn.info.issuer), code, pending, ClientAuth::Post).await?;
    let Some(access) = tokens.get("access_token").and_then(Value::as_str) else {
        tracing::info!(error = ?tokens.get("error"), connection = %conn.info.id, "GitHub refused the code");
        return Err(refused("sso_failed", "the identity provider did not accept the sign-in"));
    };
    let api = api_base(&conn.info.issuer);
    let client = client(app)?;
    let get = |path: &str| {
        client
            .get(format!("{api}{path}"))
            .bearer_auth(access)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
    };
    let resp = get("/user").await.map_err(unavailable)?;
    if !resp.status().is_success() {
        return Err(unavailable(resp.status()));
    }
    let user: User = json_body(resp).await.map_err(unavailable)?;
    let resp = get("/user/emails").await.map_err(unavailable)?;
    if !resp.status().is_success() {
        // Without the `user:email` scope there is no address to go by.
        return Err(unavailable(resp.status()));
    }
    let emails: Vec<Email> = json_body(resp).await.map_err(unavailable)?;
    let primary = emails.into_iter().find(|e| e.primary);
    Ok(Identity {
        subject: user.id.to_string(),
        email_verified: primary.as_ref().is_some_and(|e| e.verified),
        email: primary.and_then(|e| users::normalize_email(&e.email)),
        name: None,
        roles: None,
    })
}
