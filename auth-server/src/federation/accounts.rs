//! Who an identity provider's person is here: an identity linked before; an account whose
//! verified address is in a domain the connection's organisation holds (linked now); a new
//! account when the connection creates them — never an account taken over on an unverified or
//! foreign-domain assertion. And the identities a signed-in person links, lists and unlinks.

use serde::Serialize;
use utoipa::ToSchema;

use super::{refused, ConnectionInfo, Identity, Kind};
use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now, Db};
use crate::error::ApiError;
use crate::users::{self, User};

/// The account an identity signs in, and the organisation (the connection's) its session is for.
pub(super) async fn resolve(app: &App, conn: &ConnectionInfo, identity: &Identity) -> Result<(User, String), ApiError> {
    let (user, org) = find_or_create(app, conn, identity).await?;
    if let Some(roles) = &identity.roles {
        sync_roles(app, conn, &user.id, roles).await?;
    }
    Ok((user, org))
}

/// A SAML IdP that maps roles governs the member's `allowed_roles` in the connection's
/// organisation: each sign-in gives those it asserts and takes those it no longer does (roles
/// outside the list, given by the organisation's admins, stay).
async fn sync_roles(app: &App, conn: &ConnectionInfo, uid: &str, asserted: &[String]) -> Result<(), ApiError> {
    let governed: &[String] = conn.saml.as_ref().map_or(&[], |s| &s.allowed_roles);
    let old: std::collections::BTreeSet<String> = crate::members::roles(&app.db, uid, &conn.org_id).await?.into_iter().collect();
    let new: std::collections::BTreeSet<String> =
        old.iter().filter(|r| !governed.contains(r)).cloned().chain(asserted.iter().filter(|r| governed.contains(r)).cloned()).collect();
    if new != old {
        // Under the membership's lock the roles must still be the ones read: an admin's change
        // in between is not overwritten with roles computed from before it.
        let unchanged = |locked: &std::collections::BTreeSet<String>| {
            if *locked == old {
                Ok(())
            } else {
                Err(ApiError::conflict("sso_conflict", "this sign-in raced a change of your roles: try again"))
            }
        };
        crate::http::users::replace_roles(app, uid, &conn.org_id, &new, unchanged, Who::System).await?;
    }
    Ok(())
}

async fn find_or_create(app: &App, conn: &ConnectionInfo, identity: &Identity) -> Result<(User, String), ApiError> {
    let org = conn.org_id.clone();
    let t = now();
    let linked: Option<String> = sqlx::query_scalar("SELECT user_id FROM federated_identities WHERE connection_id = $1 AND subject = $2")
        .bind(&conn.id)
        .bind(&identity.subject)
        .fetch_optional(&app.db)
        .await?;
    if let Some(uid) = linked {
        sqlx::query("UPDATE federated_identities SET last_used_at = $1 WHERE connection_id = $2 AND subject = $3")
            .bind(t)
            .bind(&conn.id)
            .bind(&identity.subject)
            .execute(&app.db)
            .await?;
        return Ok((active_account(app, &uid).await?, org));
    }
    let email =
        identity.email.clone().ok_or_else(|| refused("email_not_verified", "the identity provider gave no usable email address"))?;
    let holder = crate::org_auth::holder(&app.db, &email).await?;
    // An address of a domain another organisation holds is that organisation's to sign in: no
    // other organisation's provider links or creates it.
    if holder.as_deref().is_some_and(|h| h != org) {
        return Err(refused("domain_held_elsewhere", "this address's domain belongs to another organisation: sign in through it"));
    }
    let held = holder.is_some();
    // Entra ID vouches for no address by default, a SAML IdP never: one of a domain the
    // organisation holds (verified) is the organisation's own directory's to assign.
    let verified = identity.email_verified || (matches!(conn.kind, Kind::Entra | Kind::Saml) && held);
    if !verified {
        return Err(refused("email_not_verified", "the identity provider does not say the email address is verified"));
    }
    let existing = users::by_email(&app.db, &email).await?;
    if existing.is_some() && !held {
        return Err(ApiError::conflict(
            "account_exists",
            "an account with this address exists: sign in with it and link this provider from your account page \
             (or the organisation holds the address's domain)",
        ));
    }
    if existing.is_none() && !conn.create_accounts {
        return Err(refused("account_not_found", "no account here for this identity, and this connection does not create them"));
    }
    // A new account's password is a random secret nobody holds: it signs in through the
    // provider (or sets a password with a reset link).
    let unusable = app.hasher.hash(&crypto::new_secret("")).await?;
    match link(app, conn, identity, &email, existing.as_ref(), &unusable, t).await {
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

/// An account that may sign in (not disabled or erased).
async fn active_account(app: &App, uid: &str) -> Result<User, ApiError> {
    users::by_id(&app.db, uid).await?.filter(|u| u.status == "active").ok_or_else(|| crate::members::not_active(false))
}

/// In one transaction: the account (created when there is none), its membership of the
/// connection's organisation (added when missing) and the identity's link. Returns the user id.
async fn link(
    app: &App,
    conn: &ConnectionInfo,
    identity: &Identity,
    email: &str,
    existing: Option<&User>,
    unusable: &str,
    t: i64,
) -> Result<String, sqlx::Error> {
    let org = conn.org_id.as_str();
    let sub = identity.subject.as_str();
    let mut tx = db::begin_write(&app.db).await?;
    let uid = match existing {
        Some(u) => u.id.clone(),
        None => {
            let id = crypto::new_id("usr");
            sqlx::query(
                "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, verified_at, password_changed_at, name) \
                 VALUES ($1, $2, $3, $4, 'active', 'none', $5, $5, $5, $6)",
            )
            .bind(&id)
            .bind(email)
            .bind(org)
            .bind(unusable)
            .bind(t)
            .bind(&identity.name)
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
    insert_identity(&mut tx, conn, sub, &uid, t, true).await?;
    Event::new(Action::IdentityLinked, Some(org), Who::Anonymous)
        .target("user", &uid)
        .data(serde_json::json!({ "connection_id": conn.id, "via": "sign-in" }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(uid)
}

/// `used`: the identity signs in now (else it is only linked).
async fn insert_identity(
    tx: &mut sqlx::AnyConnection,
    conn: &ConnectionInfo,
    sub: &str,
    uid: &str,
    t: i64,
    used: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO federated_identities (connection_id, subject, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&conn.id)
        .bind(sub)
        .bind(uid)
        .bind(t)
        .bind(used.then_some(t))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A signed-in person may link a provider of an organisation they are an active member of
/// (linking is no way into an organisation), once per connection.
pub(super) async fn may_link(app: &App, conn: &ConnectionInfo, uid: &str) -> Result<(), ApiError> {
    if !crate::members::is_active(&app.db, uid, &conn.org_id).await? {
        return Err(ApiError::not_found("connection_not_found", "no such connection in your organisations"));
    }
    let has: Option<String> = sqlx::query_scalar("SELECT subject FROM federated_identities WHERE connection_id = $1 AND user_id = $2")
        .bind(&conn.id)
        .bind(uid)
        .fetch_optional(&app.db)
        .await?;
    if has.is_some() {
        return Err(ApiError::conflict("identity_exists", "your account already has an identity of this provider: unlink it first"));
    }
    Ok(())
}

/// Links the provider's identity to the signed-in account that started the round trip: the
/// person proved both (their session here, their sign-in there). An identity that signs in
/// another account stays with it.
pub(super) async fn link_signed_in(app: &App, conn: &ConnectionInfo, identity: &Identity, uid: &str) -> Result<(), ApiError> {
    active_account(app, uid).await?;
    may_link(app, conn, uid).await?;
    let mut tx = db::begin_write(&app.db).await?;
    // (connection, subject) is the key: an identity that signs in another account stays there.
    match insert_identity(&mut tx, conn, &identity.subject, uid, now(), false).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::conflict("identity_in_use", "this identity already signs in an account here"));
        }
        r => r?,
    }
    Event::new(Action::IdentityLinked, Some(&conn.org_id), Who::User(uid))
        .target("user", uid)
        .data(serde_json::json!({ "connection_id": conn.id, "via": "account" }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// An identity linked to my account, as I see it.
#[derive(Serialize, ToSchema)]
pub struct IdentityInfo {
    pub connection_id: String,
    pub connection_name: String,
    pub kind: Kind,
    pub org_id: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub async fn identities(db: &Db, uid: &str) -> Result<Vec<IdentityInfo>, sqlx::Error> {
    let rows: Vec<(String, String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT c.id, c.name, c.kind, c.org_id, f.created_at, f.last_used_at FROM federated_identities f \
         JOIN oidc_connections c ON c.id = f.connection_id WHERE f.user_id = $1 ORDER BY f.created_at, c.id",
    )
    .bind(uid)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(connection_id, connection_name, kind, org_id, created_at, last_used_at)| IdentityInfo {
            connection_id,
            connection_name,
            kind: Kind::parse(&kind),
            org_id,
            created_at,
            last_used_at,
        })
        .collect())
}

/// Unlinks my identity of `connection`; false when there is none. The account stays (its
/// password, passkeys and the emailed reset link still sign it in).
pub async fn unlink(app: &App, uid: &str, connection: &str) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let org: Option<String> =
        sqlx::query_scalar("SELECT org_id FROM oidc_connections WHERE id = $1").bind(connection).fetch_optional(&mut *tx).await?;
    let n = sqlx::query("DELETE FROM federated_identities WHERE connection_id = $1 AND user_id = $2")
        .bind(connection)
        .bind(uid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        Event::new(Action::IdentityUnlinked, org.as_deref(), Who::User(uid))
            .target("user", uid)
            .data(serde_json::json!({ "connection_id": connection }))
            .write(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}
