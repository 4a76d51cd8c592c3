//! Memberships: the organisations a person belongs to and the roles they hold in each. A
//! session is for one membership (picked at login); its tokens carry that organisation and
//! those roles only.

use serde::Serialize;
use sqlx::AnyConnection;

use crate::db::Db;
use crate::error::ApiError;

/// A credential of a person who is no longer active in its organisation (401: sign in again,
/// perhaps to another organisation). `bearer`: the credential was a bearer token.
pub fn not_active(bearer: bool) -> ApiError {
    let message = "the account is not active in this organisation";
    if bearer {
        ApiError::invalid_token("account_disabled", message)
    } else {
        ApiError::unauthorized("account_disabled", message)
    }
}

/// One organisation an account belongs to.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub org_id: String,
    pub org_name: String,
    pub roles: Vec<String>,
    /// The organisation's admins disabled this membership: no sign-in there.
    pub disabled: bool,
    /// The platform suspended the organisation.
    pub suspended: bool,
}

impl Membership {
    /// Can the person sign in to this organisation now?
    pub fn usable(&self) -> bool {
        !self.disabled && !self.suspended
    }
}

/// Every membership of an account, by organisation name.
pub async fn of_user(db: &Db, user_id: &str) -> Result<Vec<Membership>, sqlx::Error> {
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT m.org_id, o.name, m.disabled_at, o.suspended_at FROM memberships m JOIN orgs o ON o.id = m.org_id \
         WHERE m.user_id = $1 ORDER BY o.name, m.org_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT org_id, role FROM member_roles WHERE user_id = $1 ORDER BY role").bind(user_id).fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(org_id, org_name, disabled_at, suspended_at)| Membership {
            roles: roles.iter().filter(|(o, _)| *o == org_id).map(|(_, r)| r.clone()).collect(),
            org_id,
            org_name,
            disabled: disabled_at.is_some(),
            suspended: suspended_at.is_some(),
        })
        .collect())
}

/// The roles a person holds in `org` (none when they do not belong to it).
pub async fn roles<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, user_id: &str, org: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM member_roles WHERE user_id = $1 AND org_id = $2 ORDER BY role")
        .bind(user_id)
        .bind(org)
        .fetch_all(db)
        .await
}

/// Does the person belong to `org` (disabled there or not)?
pub async fn belongs<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, user_id: &str, org: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1 AND org_id = $2")
        .bind(user_id)
        .bind(org)
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}

/// Does the person belong to `org`, not disabled there?
pub async fn is_active<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, user_id: &str, org: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1 AND org_id = $2 AND disabled_at IS NULL")
        .bind(user_id)
        .bind(org)
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}

/// Inside a write transaction: is the membership active? Asked with an update of its row, so
/// a disable racing this transaction waits for it (and then sees what it wrote), or this waits
/// for the disable (and then finds it disabled).
pub async fn lock_active(conn: &mut AnyConnection, user_id: &str, org: &str) -> Result<bool, sqlx::Error> {
    lock_row(conn, user_id, org, "AND disabled_at IS NULL").await
}

/// Inside a write transaction: does the person belong to `org` (disabled or not)? The row,
/// updated, orders this transaction with every other change of the membership.
pub async fn lock(conn: &mut AnyConnection, user_id: &str, org: &str) -> Result<bool, sqlx::Error> {
    lock_row(conn, user_id, org, "").await
}

async fn lock_row(conn: &mut AnyConnection, user_id: &str, org: &str, only: &'static str) -> Result<bool, sqlx::Error> {
    let sql = format!("UPDATE memberships SET created_at = created_at WHERE user_id = $1 AND org_id = $2 {only}");
    let n = sqlx::query(&sql).bind(user_id).bind(org).execute(&mut *conn).await?.rows_affected();
    Ok(n == 1)
}

/// Adds a membership with `roles` (a membership that exists keeps its roles and gains these).
pub async fn add(conn: &mut AnyConnection, user_id: &str, org: &str, roles: &[String], t: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO memberships (user_id, org_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, org_id) DO NOTHING")
        .bind(user_id)
        .bind(org)
        .bind(t)
        .execute(&mut *conn)
        .await?;
    for r in roles {
        sqlx::query("INSERT INTO member_roles (user_id, org_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(user_id)
            .bind(org)
            .bind(r)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How many organisations the account belongs to.
pub async fn count<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1").bind(user_id).fetch_one(db).await
}

/// Inside a feed-locked transaction: stops everything the person holds in `org` — every live
/// session there (listed by `sid` until its access tokens expire) and every API key made for
/// it (listed until it expires). Returns (sessions, keys) revoked. Their other organisations'
/// sessions and keys are untouched.
pub async fn stop_credentials(
    conn: &mut AnyConnection,
    cfg: &crate::config::Config,
    t: i64,
    user_id: &str,
    org: &str,
    reason: &str,
) -> Result<(usize, usize), sqlx::Error> {
    // A session that ended may still have access tokens alive: those within their lifetime count.
    let live_after = t - cfg.tokens.access_ttl_s - cfg.tokens.max_clock_skew_s;
    let sids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 AND org_id = $2 AND revoked_at IS NULL AND expires_at > $3")
            .bind(user_id)
            .bind(org)
            .bind(live_after)
            .fetch_all(&mut *conn)
            .await?;
    for sid in &sids {
        crate::sessions::revoke_in_tx(conn, cfg, t, sid, reason).await?;
    }
    let keys: Vec<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE user_id = $1 AND org_id = $2 AND status <> 'revoked'")
        .bind(user_id)
        .bind(org)
        .fetch_all(&mut *conn)
        .await?;
    for key in &keys {
        crate::http::apikeys::revoke_in_tx(conn, t, key).await?;
    }
    sqlx::query("DELETE FROM api_key_requests WHERE user_id = $1 AND org_id = $2").bind(user_id).bind(org).execute(&mut *conn).await?;
    Ok((sids.len(), keys.len()))
}

/// Inside a feed-locked transaction: the person leaves `org` — credentials there stopped
/// ([`stop_credentials`]), the membership, its roles and the identities its providers linked
/// deleted. `false`: not a member.
pub async fn remove(conn: &mut AnyConnection, cfg: &crate::config::Config, t: i64, user_id: &str, org: &str) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND org_id = $2")
        .bind(user_id)
        .bind(org)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    stop_credentials(conn, cfg, t, user_id, org, "membership_ended").await?;
    sqlx::query("DELETE FROM member_roles WHERE user_id = $1 AND org_id = $2").bind(user_id).bind(org).execute(&mut *conn).await?;
    // The organisation's identity providers no longer sign this person in.
    sqlx::query(
        "DELETE FROM federated_identities WHERE user_id = $1 AND connection_id IN (SELECT id FROM oidc_connections WHERE org_id = $2)",
    )
    .bind(user_id)
    .bind(org)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}
