//! The audit log: every security-relevant event (sign-ins and their failures, lockouts, role,
//! account, key and client changes), written in the transaction that made the change, read by
//! an organisation's admins for their organisation and by the platform for all.
//!
//! Events hold identifiers, the client address and small facts (roles, `amr`, a key's name) —
//! never secrets, never a password or code, and no email address: erasing an account leaves its
//! events pointing at an id nobody can resolve any more. `audit.retention_days` bounds them.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::db::{self, Db};
use crate::http::auth::{AuthMethod, Caller};

/// What happened. The codes are stable: filters, exports and webhooks name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    OrgCreated,
    OrgSuspended,
    OrgReinstated,
    OrgAuthChanged,
    OrgDomainAdded,
    OrgDomainVerified,
    OrgDomainRemoved,
    UserCreated,
    UserEmailChanged,
    UserProfileUpdated,
    UserRolesChanged,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    MemberAdded,
    MemberRemoved,
    LoginSucceeded,
    LoginFailed,
    AccountLocked,
    SessionRevoked,
    RefreshReused,
    PasswordChanged,
    PasswordReset,
    MfaChanged,
    ApiKeyCreated,
    ApiKeyRevoked,
    ClientCreated,
    ClientRevoked,
    ConsentRevoked,
    InvitationCreated,
    InvitationCancelled,
    SigningKeysRotated,
    WebhookCreated,
    WebhookDeleted,
    ConnectionCreated,
    ConnectionUpdated,
    ConnectionDeleted,
    IdentityLinked,
    IdentityUnlinked,
}

impl Action {
    pub const ALL: [Action; 39] = [
        Action::OrgCreated,
        Action::OrgSuspended,
        Action::OrgReinstated,
        Action::OrgAuthChanged,
        Action::OrgDomainAdded,
        Action::OrgDomainVerified,
        Action::OrgDomainRemoved,
        Action::UserCreated,
        Action::UserEmailChanged,
        Action::UserProfileUpdated,
        Action::UserRolesChanged,
        Action::UserDisabled,
        Action::UserEnabled,
        Action::UserDeleted,
        Action::MemberAdded,
        Action::MemberRemoved,
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::AccountLocked,
        Action::SessionRevoked,
        Action::RefreshReused,
        Action::PasswordChanged,
        Action::PasswordReset,
        Action::MfaChanged,
        Action::ApiKeyCreated,
        Action::ApiKeyRevoked,
        Action::ClientCreated,
        Action::ClientRevoked,
        Action::ConsentRevoked,
        Action::InvitationCreated,
        Action::InvitationCancelled,
        Action::SigningKeysRotated,
        Action::WebhookCreated,
        Action::WebhookDeleted,
        Action::ConnectionCreated,
        Action::ConnectionUpdated,
        Action::ConnectionDeleted,
        Action::IdentityLinked,
        Action::IdentityUnlinked,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Action::OrgCreated => "org.created",
            Action::OrgSuspended => "org.suspended",
            Action::OrgReinstated => "org.reinstated",
            Action::OrgAuthChanged => "org.auth_changed",
            Action::OrgDomainAdded => "org.domain_added",
            Action::OrgDomainVerified => "org.domain_verified",
            Action::OrgDomainRemoved => "org.domain_removed",
            Action::UserCreated => "user.created",
            Action::UserEmailChanged => "user.email_changed",
            Action::UserProfileUpdated => "user.profile_updated",
            Action::UserRolesChanged => "user.roles_changed",
            Action::UserDisabled => "user.disabled",
            Action::UserEnabled => "user.enabled",
            Action::UserDeleted => "user.deleted",
            Action::MemberAdded => "member.added",
            Action::MemberRemoved => "member.removed",
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::AccountLocked => "login.locked",
            Action::SessionRevoked => "session.revoked",
            Action::RefreshReused => "session.refresh_reused",
            Action::PasswordChanged => "password.changed",
            Action::PasswordReset => "password.reset",
            Action::MfaChanged => "mfa.changed",
            Action::ApiKeyCreated => "api_key.created",
            Action::ApiKeyRevoked => "api_key.revoked",
            Action::ClientCreated => "client.created",
            Action::ClientRevoked => "client.revoked",
            Action::ConsentRevoked => "consent.revoked",
            Action::InvitationCreated => "invitation.created",
            Action::InvitationCancelled => "invitation.cancelled",
            Action::SigningKeysRotated => "signing_keys.rotated",
            Action::WebhookCreated => "webhook.created",
            Action::WebhookDeleted => "webhook.deleted",
            Action::ConnectionCreated => "connection.created",
            Action::ConnectionUpdated => "connection.updated",
            Action::ConnectionDeleted => "connection.deleted",
            Action::IdentityLinked => "identity.linked",
            Action::IdentityUnlinked => "identity.unlinked",
        }
    }
}

/// Is `filter` an action code, or a family of them (`login.`, `user.`)?
pub fn valid_action_filter(filter: &str) -> bool {
    Action::ALL.iter().any(|a| a.code() == filter || (filter.ends_with('.') && a.code().starts_with(filter)))
}

/// Who did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who<'a> {
    User(&'a str),
    ApiKey(&'a str),
    Client(&'a str),
    /// The `auth-server` command line, run by whoever operates the installation.
    Operator,
    /// The server itself (a replayed refresh token detected, a lockout).
    System,
    /// Nobody signed in (a sign-in attempt, a sign-up, a password reset).
    Anonymous,
}

impl<'a> Who<'a> {
    /// The credential a request came with.
    pub fn of(caller: &'a Caller) -> Who<'a> {
        match (caller.method, caller.api_key_id.as_deref(), caller.client_id.as_deref()) {
            (AuthMethod::ApiKey, Some(id), _) => Who::ApiKey(id),
            (_, _, Some(client)) if caller.sid.is_none() => Who::Client(client),
            _ => Who::User(&caller.sub),
        }
    }

    fn parts(self) -> (&'static str, Option<&'a str>) {
        match self {
            Who::User(id) => ("user", Some(id)),
            Who::ApiKey(id) => ("api_key", Some(id)),
            Who::Client(id) => ("client", Some(id)),
            Who::Operator => ("operator", None),
            Who::System => ("system", None),
            Who::Anonymous => ("anonymous", None),
        }
    }
}

tokio::task_local! {
    /// The client address of the request being handled (set by the HTTP layer), so that every
    /// event a request causes carries it without threading it through each call.
    static CLIENT_IP: IpAddr;
}

/// Runs `f` with `ip` as the request's client address, unless an outer request already set one
/// (the hosted pages call the API in-process: the person's address is the outer one).
pub async fn with_client_ip<F: std::future::Future>(ip: IpAddr, f: F) -> F::Output {
    if CLIENT_IP.try_with(|_| ()).is_ok() {
        return f.await;
    }
    CLIENT_IP.scope(ip, f).await
}

fn client_ip() -> Option<IpAddr> {
    CLIENT_IP.try_with(|ip| *ip).ok()
}

/// One event, built where the change is made and written in its transaction.
#[must_use = "an event is recorded only by write or write_alone"]
pub struct Event<'a> {
    action: Action,
    org: Option<&'a str>,
    actor: Who<'a>,
    target: Option<(&'static str, &'a str)>,
    data: Value,
}

impl<'a> Event<'a> {
    /// `org`: the organisation the event concerns (`None`: the platform's own events).
    pub fn new(action: Action, org: Option<&'a str>, actor: Who<'a>) -> Event<'a> {
        Event { action, org, actor, target: None, data: Value::Object(Default::default()) }
    }

    /// What it was done to: `("user", id)`, `("api_key", id)`, `("session", id)`, …
    pub fn target(mut self, kind: &'static str, id: &'a str) -> Self {
        self.target = Some((kind, id));
        self
    }

    /// Small facts about the change (never secrets or email addresses).
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Writes the event inside the caller's transaction — it exists if and only if the change
    /// does — and queues it for the organisation's webhooks in the same transaction.
    pub async fn write(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let (actor_type, actor_id) = self.actor.parts();
        let event = AuditEvent {
            id: new_event_id(),
            at: db::now(),
            org_id: self.org.map(str::to_string),
            action: self.action.code().to_string(),
            actor_type: actor_type.to_string(),
            actor_id: actor_id.map(str::to_string),
            target_type: self.target.map(|(k, _)| k.to_string()),
            target_id: self.target.map(|(_, id)| id.to_string()),
            ip: client_ip().map(|ip| ip.to_string()),
            data: self.data,
        };
        sqlx::query(
            "INSERT INTO audit_events (id, at, org_id, action, actor_type, actor_id, target_type, target_id, ip, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.id)
        .bind(event.at)
        .bind(&event.org_id)
        .bind(&event.action)
        .bind(&event.actor_type)
        .bind(&event.actor_id)
        .bind(&event.target_type)
        .bind(&event.target_id)
        .bind(&event.ip)
        .bind(event.data.to_string())
        .execute(&mut *conn)
        .await?;
        crate::webhooks::enqueue(conn, &event).await
    }

    /// Writes an event that accompanies no other change (a failed sign-in).
    pub async fn write_alone(self, db: &Db) -> Result<(), sqlx::Error> {
        let mut tx = db::begin_write(db).await?;
        self.write(&mut tx).await?;
        tx.commit().await
    }
}

/// `evt_` + microseconds (14 hex digits) + 80 random bits: ids sort by time — two requests one
/// after the other always in order — so the id is the listing's order and its cursor.
fn new_event_id() -> String {
    let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    format!("evt_{us:014x}{}", hex::encode(crate::crypto::random_bytes(10)))
}

pub fn valid_event_id(id: &str) -> bool {
    id.len() == 38 && id.starts_with("evt_") && id[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An event as the API, the export and webhooks show it.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct AuditEvent {
    pub id: String,
    /// Unix seconds.
    pub at: i64,
    pub org_id: Option<String>,
    /// e.g. `login.succeeded`, `user.roles_changed`.
    pub action: String,
    /// `user`, `api_key`, `client`, `operator`, `system` or `anonymous`.
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
}

type Row = (String, i64, Option<String>, String, String, Option<String>, Option<String>, Option<String>, Option<String>, String);

impl From<Row> for AuditEvent {
    fn from((id, at, org_id, action, actor_type, actor_id, target_type, target_id, ip, data): Row) -> Self {
        let data = serde_json::from_str(&data).unwrap_or(Value::Null);
        AuditEvent { id, at, org_id, action, actor_type, actor_id, target_type, target_id, ip, data }
    }
}

/// Which events to read. `org: None` reads every organisation's and the platform's (the
/// platform's view); the checks of who may ask for what are the callers'.
#[derive(Default, Debug)]
pub struct Filter {
    pub org: Option<String>,
    /// An action code, or a family ending in `.`.
    pub action: Option<String>,
    /// Events by this actor id, or done to this target id.
    pub subject: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this id (the previous page's last).
    pub before: Option<String>,
}

/// Up to `limit` events, newest first.
pub async fn read(db: &Db, f: &Filter, limit: i64) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let action = f.action.as_deref().unwrap_or("");
    // A family filter is a prefix: LIKE with its only wildcard-like character escaped.
    let family = if action.ends_with('.') { format!("{}%", action.replace('_', "\\_")) } else { String::new() };
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, org_id, action, actor_type, actor_id, target_type, target_id, ip, data FROM audit_events \
         WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR action = $2 OR ($3 <> '' AND action LIKE $3 ESCAPE '\\')) \
         AND ($4 = '' OR actor_id = $4 OR target_id = $4) AND at >= $5 AND at <= $6 AND ($7 = '' OR id < $7) \
         ORDER BY id DESC LIMIT $8",
    )
    .bind(f.org.as_deref().unwrap_or(""))
    .bind(action)
    .bind(&family)
    .bind(f.subject.as_deref().unwrap_or(""))
    .bind(f.since.unwrap_or(0))
    .bind(f.until.unwrap_or(i64::MAX))
    .bind(f.before.as_deref().unwrap_or(""))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(AuditEvent::from).collect())
}

/// Drops events older than the retention; returns how many.
pub async fn prune(db: &Db, retention_days: i64) -> Result<u64, sqlx::Error> {
    let _gate = db::write_gate().await;
    let cutoff = db::now() - retention_days * 86400;
    Ok(sqlx::query("DELETE FROM audit_events WHERE at < $1").bind(cutoff).execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_families_filter() {
        let mut codes: Vec<&str> = Action::ALL.iter().map(|a| a.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Action::ALL.len());
        assert!(valid_action_filter("login.failed"));
        assert!(valid_action_filter("login."));
        assert!(!valid_action_filter("login"));
        assert!(!valid_action_filter("login.%"));
        assert!(!valid_action_filter("nope."));
    }

    #[test]
    fn event_ids_sort_by_time_and_validate() {
        let a = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_event_id();
        assert!(a < b);
        assert!(valid_event_id(&a));
        assert!(!valid_event_id("evt_' OR 1=1 --"));
        assert!(!valid_event_id(&a.to_uppercase()));
    }
}
