//! Authorization codes (single use, short-lived, bound to client, redirect URI and PKCE
//! challenge; a replay revokes what the first exchange issued), remembered consents, and the
//! tokens an exchange or a refresh hands to a client (access, refresh, ID token).

use serde::Serialize;

use super::{AuthRequest, Client, IdTokenClaims};
use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto::{self, SigAlg};
use crate::db::now;
use crate::error::ApiError;
use crate::sessions::{self, ClientSession, SessionMeta};
use crate::users::{self, User};

/// The token endpoint's answer to a client (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientTokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Who signed in, for a code: the browser session's account and how it signed in.
pub struct SignedIn<'a> {
    pub user: &'a User,
    /// The organisation of the browser session.
    pub org: &'a str,
    pub auth_time: i64,
    pub amr: &'a str,
}

/// Issues a code for a request the person signed in to (and consented to); returns it.
pub async fn issue_code(app: &App, req: &AuthRequest, who: &SignedIn<'_>) -> Result<String, ApiError> {
    let code = crypto::new_secret("ac_");
    let t = now();
    sqlx::query(
        "INSERT INTO oauth_codes (hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, auth_time, amr, created_at, expires_at, org_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(crypto::sha256_hex(code.as_bytes()))
    .bind(&req.client_id)
    .bind(&who.user.id)
    .bind(&req.redirect_uri)
    .bind(req.scope.join(" "))
    .bind(&req.code_challenge)
    .bind(&req.nonce)
    .bind(who.auth_time)
    .bind(who.amr)
    .bind(t)
    .bind(t + app.cfg.oidc.code_ttl_s)
    .bind(who.org)
    .execute(&app.db)
    .await?;
    metrics::counter!("authgate_oauth_codes_issued_total").increment(1);
    Ok(code)
}

fn invalid_grant(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_grant", message)
}

/// The `authorization_code` grant: the code is claimed first (exactly one request can), then
/// checked against the client, the redirect URI and the PKCE verifier. A code presented again
/// revokes the session its first exchange opened.
pub async fn exchange_code(
    app: &App,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    meta: (Option<&str>, Option<&str>),
) -> Result<ClientTokens, ApiError> {
    if !code.starts_with("ac_") || code.len() > 100 {
        return Err(invalid_grant("the authorization code is invalid or expired"));
    }
    let hash = crypto::sha256_hex(code.as_bytes());
    let t = now();
    type Row =
        (String, String, String, String, Option<String>, Option<String>, i64, String, i64, Option<i64>, Option<String>, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT client_id, user_id, redirect_uri, scope, code_challenge, nonce, auth_time, amr, expires_at, used_at, session_id, org_id \
         FROM oauth_codes WHERE hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&app.db)
    .await?;
    let Some((code_client, user_id, code_redirect, scope, challenge, nonce, auth_time, amr, expires_at, used_at, _, org)) = row else {
        return Err(invalid_grant("the authorization code is invalid or expired"));
    };
    let claimed = if used_at.is_none() {
        sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE hash = $2 AND used_at IS NULL")
            .bind(t)
            .bind(&hash)
            .execute(&app.db)
            .await?
            .rows_affected()
    } else {
        0
    };
    if claimed == 0 {
        // A replay: whoever holds a copy gets nothing, and what the first exchange got stops.
        // The mark covers a first exchange still under way: it checks the mark once its
        // session is recorded (each side writes, then reads the other's write).
        metrics::counter!("authgate_oauth_code_replays_total").increment(1);
        sqlx::query("UPDATE oauth_codes SET replayed_at = $1 WHERE hash = $2").bind(t).bind(&hash).execute(&app.db).await?;
        let issued: Option<Option<String>> =
            sqlx::query_scalar("SELECT session_id FROM oauth_codes WHERE hash = $1").bind(&hash).fetch_optional(&app.db).await?;
        if let Some(sid) = issued.flatten() {
            tracing::warn!(session_id = %sid, client_id = %code_client, "authorization code replayed: its session is revoked");
            sessions::revoke_session(app, &sid, "authorization_code_replay", Who::Client(&code_client)).await?;
        }
        return Err(invalid_grant("the authorization code was already used"));
    }
    if code_client != client.id {
        return Err(invalid_grant("the authorization code was issued to another client"));
    }
    if expires_at <= t {
        return Err(invalid_grant("the authorization code is invalid or expired"));
    }
    if redirect_uri != Some(code_redirect.as_str()) {
        return Err(invalid_grant("redirect_uri differs from the authorization request's"));
    }
    match (challenge.as_deref(), verifier) {
        (Some(c), Some(v)) if super::pkce_matches(v, c) => {}
        (None, None) => {}
        // A verifier without a challenge is a downgrade attempt (RFC 9700 §2.1.1).
        _ => return Err(invalid_grant("the PKCE code_verifier does not match the code_challenge")),
    }
    let user = users::by_id(&app.db, &user_id)
        .await?
        .filter(|u| u.status == "active")
        .ok_or_else(|| invalid_grant("the account is not active"))?;
    let org = org.ok_or_else(|| invalid_grant("the authorization code is invalid or expired"))?;
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let cs = ClientSession { client, scope: &scope };
    let amr_list: Vec<String> = amr.split_whitespace().map(str::to_string).collect();
    let issued = sessions::create(
        app,
        &user,
        &org,
        amr_list.clone(),
        SessionMeta { user_agent: meta.0, ip: meta.1, cookie_mode: false, client: Some(&cs) },
    )
    .await?;
    sqlx::query("UPDATE oauth_codes SET session_id = $1 WHERE hash = $2").bind(&issued.session_id).bind(&hash).execute(&app.db).await?;
    let replayed: Option<i64> =
        sqlx::query_scalar("SELECT replayed_at FROM oauth_codes WHERE hash = $1").bind(&hash).fetch_one(&app.db).await?;
    if replayed.is_some() {
        sessions::revoke_session(app, &issued.session_id, "authorization_code_replay", Who::Client(&client.id)).await?;
        return Err(invalid_grant("the authorization code was already used"));
    }
    let id_token = if scopes.contains(&"openid") {
        let who = IdentityFacts {
            user: &user,
            org: &org,
            auth_time,
            amr: amr_list,
            sid: &issued.session_id,
            nonce: nonce.as_deref(),
            email: scopes.contains(&"email"),
        };
        Some(id_token(app, client, &who)?)
    } else {
        None
    };
    metrics::counter!("authgate_logins_total", "flow" => "authorization_code").increment(1);
    Ok(ClientTokens {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: client.allows_grant("refresh_token").then_some(issued.refresh_token),
        id_token,
        scope: Some(scope).filter(|s| !s.is_empty()),
    })
}

/// The `refresh_token` grant for a client: rotation and reuse detection as every session's,
/// only for the client whose session it is; a new ID token (without nonce) when `openid` was granted.
pub async fn refresh(app: &App, client: &Client, presented: &str) -> Result<ClientTokens, ApiError> {
    if !client.allows_grant("refresh_token") {
        return Err(ApiError::bad_request("unauthorized_client", "this client may not use refresh tokens"));
    }
    let issued = sessions::refresh(app, presented, Some(client)).await.map_err(|e| match e.code {
        "invalid_refresh_token" | "refresh_token_reused" | "session_revoked" | "session_expired" | "account_disabled" => {
            ApiError::bad_request("invalid_grant", e.message)
        }
        _ => e,
    })?;
    type Row = (String, i64, String, Option<String>, Option<String>);
    let (user_id, auth_time, amr, scope, org): Row =
        sqlx::query_as("SELECT user_id, created_at, amr, scope, org_id FROM sessions WHERE id = $1")
            .bind(&issued.session_id)
            .fetch_one(&app.db)
            .await?;
    let scope = scope.unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').collect();
    // The account is read only when an ID token is due (refresh is a hot path).
    let user = if scopes.contains(&"openid") { users::by_id(&app.db, &user_id).await? } else { None };
    let id_token = match user {
        Some(user) => {
            let org = org.unwrap_or_default();
            let amr = amr.split_whitespace().map(str::to_string).collect();
            let who = IdentityFacts {
                user: &user,
                org: &org,
                auth_time,
                amr,
                sid: &issued.session_id,
                nonce: None,
                email: scopes.contains(&"email"),
            };
            Some(id_token(app, client, &who)?)
        }
        None => None,
    };
    Ok(ClientTokens {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: Some(issued.refresh_token),
        id_token,
        scope: Some(scope).filter(|s| !s.is_empty()),
    })
}

struct IdentityFacts<'a> {
    user: &'a User,
    org: &'a str,
    auth_time: i64,
    amr: Vec<String>,
    sid: &'a str,
    nonce: Option<&'a str>,
    email: bool,
}

/// The ID token for `client`, signed in its algorithm (`id_token_alg`, else the access tokens').
fn id_token(app: &App, client: &Client, who: &IdentityFacts<'_>) -> Result<String, ApiError> {
    let t = now();
    let alg_name = client.id_token_alg.as_deref().unwrap_or(&app.cfg.tokens.alg);
    let alg = SigAlg::parse(alg_name)
        .filter(|a| *a != SigAlg::HS256)
        .ok_or_else(|| ApiError::internal("no ID-token algorithm for this client"))?;
    let keys = app.keys.get();
    let key = keys.current_for_id_token(alg, t).ok_or_else(|| ApiError::internal(format!("no active {alg_name} key for ID tokens")))?;
    let issuer = app.issuer();
    let claims = IdTokenClaims {
        iss: issuer,
        sub: &who.user.id,
        aud: &client.id,
        azp: &client.id,
        exp: t + app.cfg.tokens.access_ttl_s,
        iat: t,
        auth_time: who.auth_time,
        nonce: who.nonce,
        amr: who.amr.clone(),
        sid: Some(who.sid),
        email: who.email.then_some(who.user.email.as_str()),
        // Active accounts proved their address at sign-up (or were made by the operator).
        email_verified: who.email.then_some(who.user.status == "active"),
        org: Some(who.org),
    };
    Ok(key.key.sign_jws("JWT", &claims))
}

/// Has the person already granted `client` every scope in `scope`?
pub async fn consented(app: &App, user_id: &str, client_id: &str, scope: &[String]) -> Result<bool, ApiError> {
    let granted: Option<String> = sqlx::query_scalar("SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&app.db)
        .await?;
    Ok(granted.is_some_and(|g| {
        let g: Vec<&str> = g.split(' ').collect();
        scope.iter().all(|s| g.contains(&s.as_str()))
    }))
}

/// Remembers a consent: what was granted before and `scope`.
pub async fn remember_consent(app: &App, user_id: &str, client_id: &str, scope: &[String]) -> Result<(), ApiError> {
    let before: Option<String> = sqlx::query_scalar("SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&app.db)
        .await?;
    let mut all: Vec<String> = before.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    for s in scope {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    sqlx::query(
        "INSERT INTO oauth_consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
    )
    .bind(user_id)
    .bind(client_id)
    .bind(all.join(" "))
    .bind(now())
    .execute(&app.db)
    .await?;
    Ok(())
}

/// Takes a consent back: the consent row, and every session the client holds for the person.
pub async fn revoke_consent(app: &App, user_id: &str, client_id: &str) -> Result<bool, ApiError> {
    let mut tx = crate::db::begin_write(&app.db).await?;
    let n = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
        .bind(user_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        let user = users::by_id(&mut *tx, user_id).await?;
        Event::new(Action::ConsentRevoked, user.as_ref().and_then(|u| u.event_org()), Who::User(user_id))
            .target("client", client_id)
            .write(&mut tx)
            .await?;
    }
    tx.commit().await?;
    let sids: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL")
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&app.db)
        .await?;
    for sid in &sids {
        sessions::revoke_session(app, sid, "consent_revoked", Who::User(user_id)).await?;
    }
    Ok(n > 0 || !sids.is_empty())
}
