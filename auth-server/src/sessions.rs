//! Sessions and tokens: access JWTs (RFC 9068 profile, auth-core's `AccessTokenClaims`), opaque
//! refresh tokens stored as SHA-256, rotated on every use, with reuse detection that revokes the
//! whole session.

use std::sync::Arc;

use auth_core::formats::{AccessTokenClaims, ACCESS_TOKEN_TYP};
use auth_core::{ErrorCode, Identity, StalePolicy, UnixTime};
use axum::http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now};
use crate::error::ApiError;
use crate::revocations;
use crate::users::User;

/// What a successful login or refresh hands out.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub session_id: String,
}

pub struct Subject<'a> {
    pub sub: &'a str,
    pub email: Option<&'a str>,
    pub org: Option<&'a str>,
    pub roles: Vec<String>,
    pub sid: Option<&'a str>,
    pub amr: Vec<String>,
    pub scope: Option<String>,
    pub client_id: Option<&'a str>,
    /// A client's own access-token lifetime (at most the server's).
    pub ttl_s: Option<i64>,
}

/// Signs an access token with the current key; returns it and its lifetime.
pub fn mint_access(app: &App, s: Subject<'_>) -> Result<(String, i64), ApiError> {
    let t = now();
    let ttl = s.ttl_s.map_or(app.cfg.tokens.access_ttl_s, |c| c.min(app.cfg.tokens.access_ttl_s));
    let keys = app.keys.get();
    let key = keys.current(t).ok_or_else(|| ApiError::internal("no active signing key"))?;
    let claims = AccessTokenClaims {
        iss: app.issuer().to_string(),
        aud: app.cfg.tokens.audience.clone(),
        sub: s.sub.to_string(),
        exp: t + ttl,
        iat: t,
        nbf: None,
        jti: crypto::random_id128(),
        sid: s.sid.map(str::to_string),
        org: s.org.map(str::to_string),
        email: s.email.map(str::to_string),
        roles: s.roles,
        scope: s.scope,
        amr: s.amr,
        client_id: s.client_id.map(str::to_string),
    };
    metrics::counter!("authgate_access_tokens_issued_total").increment(1);
    Ok((key.key.sign_jws(ACCESS_TOKEN_TYP, &claims), ttl))
}

fn user_subject<'a>(user: &'a User, org: &'a str, roles: Vec<String>, sid: &'a str, amr: Vec<String>) -> Subject<'a> {
    Subject {
        sub: &user.id,
        email: Some(&user.email),
        org: Some(org),
        roles,
        sid: Some(sid),
        amr,
        scope: None,
        client_id: None,
        ttl_s: None,
    }
}

pub struct SessionMeta<'a> {
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub cookie_mode: bool,
    /// A session a client opened with an authorization code: its tokens name the client and
    /// the scope, and its refresh tokens work only for that client.
    pub client: Option<&'a ClientSession<'a>>,
}

/// What a client's session carries.
pub struct ClientSession<'a> {
    pub client: &'a crate::oidc::Client,
    pub scope: &'a str,
}

impl ClientSession<'_> {
    /// The user's roles reach a client's tokens only for the organisation's own first-party
    /// apps; a third-party app acts with its scopes, never with the person's admin role.
    fn roles(&self, user_org: &str, roles: Vec<String>) -> Vec<String> {
        if self.client.trusted_by(user_org) {
            roles
        } else {
            Vec::new()
        }
    }

    fn subject<'a>(
        &'a self,
        sub: &'a str,
        email: &'a str,
        org: &'a str,
        roles: Vec<String>,
        sid: &'a str,
        amr: Vec<String>,
    ) -> Subject<'a> {
        Subject {
            sub,
            email: Some(email),
            org: Some(org),
            roles: self.roles(org, roles),
            sid: Some(sid),
            amr,
            scope: Some(self.scope.to_string()).filter(|s| !s.is_empty()),
            client_id: Some(&self.client.id),
            ttl_s: self.client.access_ttl_s,
        }
    }

    fn refresh_ttl(&self, server: i64) -> i64 {
        self.client.refresh_ttl_s.map_or(server, |c| c.min(server))
    }
}

/// Opens a session in `org` for a user who completed every login step; its tokens carry the
/// roles of that membership.
pub async fn create(app: &App, user: &User, org: &str, amr: Vec<String>, meta: SessionMeta<'_>) -> Result<Issued, ApiError> {
    // Every sign-in (password, code, passkey, an app's code exchange) ends here.
    crate::http::orgs::ensure_active(app, org).await?;
    let t = now();
    let sid = crypto::new_id("ses");
    let refresh = crypto::new_secret("rt_");
    let session_exp = t + app.cfg.tokens.session_ttl_s;
    let refresh_ttl = meta.client.map_or(app.cfg.tokens.refresh_ttl_s, |c| c.refresh_ttl(app.cfg.tokens.refresh_ttl_s));
    let refresh_exp = (t + refresh_ttl).min(session_exp);
    let mut tx = crate::db::begin_write(&app.db).await?;
    // The membership, checked under its row lock: a disable racing this sign-in either sees
    // the session (and revokes it) or is seen here.
    if !crate::members::lock_active(&mut tx, &user.id, org).await? {
        return Err(crate::members::not_active(false));
    }
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, amr, user_agent, ip, cookie_mode, client_id, scope, org_id) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&sid)
    .bind(&user.id)
    .bind(t)
    .bind(session_exp)
    .bind(amr.join(" "))
    .bind(meta.user_agent.map(|s| s.chars().take(256).collect::<String>()))
    .bind(meta.ip)
    .bind(meta.cookie_mode as i64)
    .bind(meta.client.map(|c| c.client.id.as_str()))
    .bind(meta.client.map(|c| c.scope))
    .bind(org)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(crypto::sha256_hex(refresh.as_bytes()))
        .bind(&sid)
        .bind(t)
        .bind(refresh_exp)
        .execute(&mut *tx)
        .await?;
    let client_id = meta.client.map(|c| c.client.id.as_str());
    let roles = crate::members::roles(&mut *tx, &user.id, org).await?;
    Event::new(Action::LoginSucceeded, Some(org), Who::User(&user.id))
        .target("session", &sid)
        .data(serde_json::json!({ "amr": amr, "client_id": client_id }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    let subject = match meta.client {
        Some(c) => c.subject(&user.id, &user.email, org, roles, &sid, amr),
        None => user_subject(user, org, roles, &sid, amr),
    };
    let (access, ttl) = mint_access(app, subject)?;
    metrics::counter!("authgate_sessions_created_total").increment(1);
    Ok(Issued {
        access_token: access,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: refresh,
        refresh_expires_in: refresh_exp - t,
        session_id: sid,
    })
}

/// The session a refresh token belongs to (without using it): for CSRF checks before rotation.
pub async fn session_of_refresh(app: &App, refresh: &str) -> Result<Option<String>, ApiError> {
    let hash = crypto::sha256_hex(refresh.as_bytes());
    let live: Option<String> =
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE hash = $1").bind(&hash).fetch_optional(&app.db).await?;
    if live.is_some() {
        return Ok(live);
    }
    Ok(sqlx::query_scalar("SELECT session_id FROM spent_refresh_tokens WHERE hash = $1").bind(&hash).fetch_optional(&app.db).await?)
}

fn invalid_grant() -> ApiError {
    ApiError::unauthorized("invalid_refresh_token", "the refresh token is invalid or expired")
}

/// Rotates a refresh token: the presented one is spent, a new one issued. Presenting a spent
/// token again revokes the session (someone holds a copy). `client`: the authenticated client
/// at the token endpoint; a client's session refreshes only there, for that client, and a
/// login's session only at `/v1/sessions/refresh` (`None`).
pub async fn refresh(app: &App, presented: &str, client: Option<&crate::oidc::Client>) -> Result<Issued, ApiError> {
    if !presented.starts_with("rt_") || presented.len() > 100 {
        return Err(invalid_grant());
    }
    let hash = crypto::sha256_hex(presented.as_bytes());
    let t = now();
    // Read first: the live token, its session, user, membership and its roles (a row per role).
    type Row = (
        String,
        Option<i64>,
        i64,
        String,
        i64,
        Option<i64>,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.expires_at, s.revoked_at, s.amr, u.email, s.org_id, u.status, r.role, \
         s.client_id, s.scope, (SELECT COUNT(*) FROM memberships m WHERE m.user_id = s.user_id AND m.org_id = s.org_id AND m.disabled_at IS NULL) \
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id \
         LEFT JOIN member_roles r ON r.user_id = s.user_id AND r.org_id = s.org_id WHERE t.hash = $1 ORDER BY r.role",
    )
    .bind(&hash)
    .fetch_all(&app.db)
    .await?;
    let Some((sid, used_at, token_exp, user_id, session_exp, revoked_at, amr, email, org_id, status, _, session_client, scope, member)) =
        rows.first().cloned()
    else {
        // Not a live token: a spent one means a copy is in someone else's hands.
        let spent: Option<String> =
            sqlx::query_scalar("SELECT session_id FROM spent_refresh_tokens WHERE hash = $1").bind(&hash).fetch_optional(&app.db).await?;
        return match spent {
            Some(sid) => reuse_detected(app, &sid).await,
            None => Err(invalid_grant()),
        };
    };
    // Another client's token (or a login's at the token endpoint) is not this caller's to
    // use: refused without spending it.
    if session_client.as_deref() != client.map(|c| c.id.as_str()) {
        return Err(invalid_grant());
    }
    if used_at.is_some() {
        // Spent under schema 0001 (rotation by insert).
        return reuse_detected(app, &sid).await;
    }
    if token_exp <= t {
        return Err(invalid_grant());
    }
    if revoked_at.is_some() {
        return Err(ApiError::unauthorized("session_revoked", "the session has been revoked"));
    }
    if session_exp <= t {
        return Err(ApiError::unauthorized("session_expired", "the session has expired: log in again"));
    }
    if status != "active" || member.unwrap_or(0) == 0 {
        return Err(crate::members::not_active(false));
    }
    crate::http::orgs::ensure_active(app, &org_id).await?;
    let roles: Vec<String> = rows.into_iter().filter_map(|r| r.10).collect();
    let scope = scope.unwrap_or_default();
    let client_session = client.map(|client| ClientSession { client, scope: &scope });
    let next = crypto::new_secret("rt_");
    let refresh_ttl = client_session.as_ref().map_or(app.cfg.tokens.refresh_ttl_s, |c| c.refresh_ttl(app.cfg.tokens.refresh_ttl_s));
    let refresh_exp = (t + refresh_ttl).min(session_exp);
    // Two single-row statements, no transaction (fewer round trips): first remember the token
    // as spent, then replace it by its successor in place. Of two requests presenting the same
    // token, exactly one replaces it; the other finds it gone: a reuse. A crash between the two
    // leaves the token remembered as spent and still live once: nothing committed is lost.
    let gate = crate::db::write_gate().await;
    sqlx::query(
        "INSERT INTO spent_refresh_tokens (hash, session_id, spent_at, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&hash)
    .bind(&sid)
    .bind(t)
    .bind(token_exp)
    .execute(&app.db)
    .await?;
    let replaced = sqlx::query("UPDATE refresh_tokens SET hash = $1, created_at = $2, expires_at = $3 WHERE hash = $4 AND used_at IS NULL")
        .bind(crypto::sha256_hex(next.as_bytes()))
        .bind(t)
        .bind(refresh_exp)
        .bind(&hash)
        .execute(&app.db)
        .await?
        .rows_affected();
    drop(gate);
    if replaced == 0 {
        return reuse_detected(app, &sid).await;
    }
    // (The session's last use is its live token's creation: no session row update. A session
    // revoked between the read above and now is caught at the next refresh, and the access
    // token below is already listed by its sid.)
    let amr: Vec<String> = amr.split_whitespace().map(str::to_string).collect();
    let subject = match &client_session {
        Some(c) => c.subject(&user_id, &email, &org_id, roles, &sid, amr),
        None => Subject {
            sub: &user_id,
            email: Some(&email),
            org: Some(&org_id),
            roles,
            sid: Some(&sid),
            amr,
            scope: None,
            client_id: None,
            ttl_s: None,
        },
    };
    let (access, ttl) = mint_access(app, subject)?;
    metrics::counter!("authgate_refreshes_total").increment(1);
    Ok(Issued {
        access_token: access,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: next,
        refresh_expires_in: refresh_exp - t,
        session_id: sid,
    })
}

async fn reuse_detected(app: &App, sid: &str) -> Result<Issued, ApiError> {
    metrics::counter!("authgate_refresh_reuse_detected_total").increment(1);
    tracing::warn!(session_id = %sid, "refresh token reuse detected: session revoked");
    // Told once: only the request that revokes the session (a second replay finds it revoked).
    if revoke_session(app, sid, "refresh_token_reuse", Who::System).await? {
        let email: Option<String> = sqlx::query_scalar("SELECT u.email FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1")
            .bind(sid)
            .fetch_optional(&app.db)
            .await?;
        if let Some(email) = email {
            crate::notify::send(app, &email, crate::notify::Notice::RefreshReuse);
        }
    }
    Err(ApiError::unauthorized("refresh_token_reused", "this refresh token was already used: the session has been revoked"))
}

/// Inside a feed-locked transaction: revokes a live session — no refresh works any more, and
/// its access tokens are listed by `sid` until they expire. `false`: it was not live.
pub async fn revoke_in_tx(
    conn: &mut sqlx::AnyConnection,
    cfg: &crate::config::Config,
    t: i64,
    sid: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
        .bind(t)
        .bind(reason)
        .bind(sid)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if n > 0 {
        revocations::insert(conn, "sid", sid, None, revocations::access_entry_exp(cfg, t)).await?;
    }
    Ok(n > 0)
}

/// Revokes one session: no refresh works any more, and its access tokens are listed in the
/// feed until they expire. Returns whether it was active.
pub async fn revoke_session(app: &App, sid: &str, reason: &str, actor: Who<'_>) -> Result<bool, ApiError> {
    let mut tx = crate::db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let live = revoke_in_tx(&mut tx, &app.cfg, t, sid, reason).await?;
    if live {
        let (user_id, org): (String, Option<String>) =
            sqlx::query_as("SELECT user_id, org_id FROM sessions WHERE id = $1").bind(sid).fetch_one(&mut *tx).await?;
        let action = if reason == "refresh_token_reuse" { Action::RefreshReused } else { Action::SessionRevoked };
        Event::new(action, org.as_deref(), actor)
            .target("session", sid)
            .data(serde_json::json!({ "reason": reason, "user_id": user_id }))
            .write(&mut tx)
            .await?;
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(live)
}

/// Revokes every active session of a user (except `keep`); returns how many.
pub async fn revoke_all(app: &App, user_id: &str, keep: Option<&str>, reason: &str, actor: Who<'_>) -> Result<u64, ApiError> {
    let mut tx = crate::db::begin_write(&app.db).await?;
    let t = db::feed_lock(&mut tx, true).await?;
    let sids: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, org_id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2")
            .bind(user_id)
            .bind(t)
            .fetch_all(&mut *tx)
            .await?;
    let mut n = 0;
    for (sid, org) in sids.iter().filter(|(s, _)| Some(s.as_str()) != keep) {
        revoke_in_tx(&mut tx, &app.cfg, t, sid, reason).await?;
        Event::new(Action::SessionRevoked, org.as_deref(), actor)
            .target("session", sid)
            .data(serde_json::json!({ "reason": reason, "user_id": user_id }))
            .write(&mut tx)
            .await?;
        n += 1;
    }
    tx.commit().await?;
    app.revs.refresh(false).await?;
    Ok(n)
}

/// Verifies one of our access tokens with auth-core's verifier (the gateways' rules: signature
/// by a published key, `typ`, `iss`, `aud`, `exp`/`nbf` with the same skew, values safe to
/// forward, size), through the verified-token cache of the key set, then the revocation snapshot.
pub async fn verify_access(app: &App, token: &str) -> Result<Arc<Identity>, ApiError> {
    let keys = app.keys.get();
    let t = UnixTime::from_secs(now());
    let verified = {
        let mut cache = keys.verified_tokens();
        keys.verifier.verify_token_cached(token, t, StalePolicy::FailClosed, &mut cache)
    }
    .map_err(|r| credential_error(r.code))?;
    let snap = app.revs.current().await?;
    snap.list.check(&verified.identity, true).map_err(credential_error)?;
    keys.verified_tokens().remember(&verified, t);
    Ok(verified.identity)
}

/// auth-core's verdict on a credential as an API error: the same code and status a gateway
/// answers (401s with the RFC 6750 challenge).
pub fn credential_error(code: ErrorCode) -> ApiError {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    if status == StatusCode::UNAUTHORIZED {
        ApiError::invalid_token(code.as_str(), code.description())
    } else {
        ApiError::new(status, code.as_str(), code.description())
    }
}

#[cfg(test)]
mod tests;
