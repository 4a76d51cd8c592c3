//! Who may grant what (docs/authority.md): platform authority — the platform roles, held only in
//! the operator organisation and granted only by the operator — and tenant authority — an
//! organisation's admins granting the configured tenant roles to their own members — never mixed.
//! Roles that grant anything are read from the database, never from a token.

use axum::http::StatusCode;

use crate::app::App;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::members;
use crate::users::User;

/// Reads the revocation feed (gateways).
pub const GATEWAY: &str = "gateway";
/// Introspects the tokens of every organisation.
pub const INTROSPECT: &str = "introspect";
/// Operates the installation; grants platform roles within the operator organisation.
pub const PLATFORM_ADMIN: &str = "platform_admin";
/// The fixed set of platform roles.
pub const PLATFORM_ROLES: [&str; 3] = [GATEWAY, INTROSPECT, PLATFORM_ADMIN];
/// An organisation's admin: manages its members, their tenant roles, keys and clients.
pub const TENANT_ADMIN: &str = "admin";
/// Tenant role of resource servers: introspects the tokens of its own organisation.
pub const ORG_INTROSPECT: &str = "org_introspect";

pub fn is_platform_role(role: &str) -> bool {
    PLATFORM_ROLES.contains(&role)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Platform,
    /// Listed in `roles.tenant`.
    Tenant,
    /// Neither: nobody may grant it.
    Unknown,
}

pub fn kind(cfg: &Config, role: &str) -> RoleKind {
    if is_platform_role(role) {
        RoleKind::Platform
    } else if cfg.roles.tenant.iter().any(|r| r == role) {
        RoleKind::Tenant
    } else {
        RoleKind::Unknown
    }
}

/// What the operator (the CLI) may grant: tenant roles in any organisation, platform roles only
/// to members of the operator organisation. The error names the role.
pub fn operator_may_grant(cfg: &Config, org: &str, role: &str) -> Result<(), String> {
    match kind(cfg, role) {
        RoleKind::Tenant => Ok(()),
        RoleKind::Platform if org == cfg.platform.operator_org => Ok(()),
        RoleKind::Platform => Err(format!(
            "{role:?} is a platform role: only members of the operator organisation ({}) may hold it",
            cfg.platform.operator_org
        )),
        RoleKind::Unknown => {
            Err(format!("{role:?} is neither a tenant role (roles.tenant) nor a platform role ({})", PLATFORM_ROLES.join(", ")))
        }
    }
}

fn not_grantable() -> ApiError {
    ApiError::forbidden("role_not_grantable", "you may not grant this role")
}

fn unknown_role() -> ApiError {
    ApiError::bad_request("unknown_role", "this role is not one of the server's tenant roles")
}

/// A person acting through their session, in the organisation the session is for, as the
/// database knows them now.
pub struct Actor {
    pub user: User,
    /// The session's organisation (the token's `org`, picked at login).
    pub org: String,
    /// The roles held in `org` now.
    pub roles: Vec<String>,
    in_operator_org: bool,
}

impl Actor {
    /// The caller's account, organisation and current roles there; refuses API keys and
    /// machine tokens (403), and accounts no longer active in that organisation (401).
    pub async fn load(app: &App, caller: &Caller) -> Result<Actor, ApiError> {
        let crate::http::me::Me { user, org } = crate::http::me::load_me(app, caller).await?;
        let roles = members::roles(&app.db, &user.id, &org).await?;
        let in_operator_org = org == app.cfg.platform.operator_org;
        Ok(Actor { user, org, roles, in_operator_org })
    }

    pub fn holds(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_tenant_admin(&self) -> bool {
        self.holds(TENANT_ADMIN)
    }

    /// `platform_admin`, held in the operator organisation.
    pub fn is_platform_admin(&self) -> bool {
        self.in_operator_org && self.holds(PLATFORM_ADMIN)
    }

    /// The admin endpoints of the actor's own organisation: a tenant admin, or a platform admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_tenant_admin() || self.is_platform_admin() {
            return Ok(());
        }
        Err(ApiError::forbidden("insufficient_role", "this endpoint needs the admin role"))
    }

    /// May the actor give `role` to a member of their organisation? Tenant roles: tenant
    /// admins. Platform roles: platform admins of the operator organisation. Others: nobody.
    pub fn may_grant(&self, cfg: &Config, role: &str) -> Result<(), ApiError> {
        match kind(cfg, role) {
            RoleKind::Tenant if self.is_tenant_admin() => Ok(()),
            RoleKind::Platform if self.is_platform_admin() => Ok(()),
            RoleKind::Unknown => Err(unknown_role()),
            _ => Err(not_grantable()),
        }
    }

    /// May the actor take `role` away? As [`Actor::may_grant`], except that tenant admins may
    /// also remove roles that are no longer tenant roles.
    pub fn may_revoke(&self, cfg: &Config, role: &str) -> Result<(), ApiError> {
        match kind(cfg, role) {
            RoleKind::Unknown if self.is_tenant_admin() => Ok(()),
            RoleKind::Unknown => Err(not_grantable()),
            _ => self.may_grant(cfg, role),
        }
    }

    /// May the actor put `role` on a credential it creates (API key, machine client)? Only a
    /// role it holds *and* could grant: a tenant role, or a platform role when it is a platform
    /// admin of the operator organisation.
    pub fn may_delegate(&self, cfg: &Config, role: &str) -> Result<(), ApiError> {
        if !self.holds(role) {
            return Err(ApiError::forbidden("role_not_held", "a credential can only carry roles its creator holds"));
        }
        match kind(cfg, role) {
            RoleKind::Tenant => Ok(()),
            RoleKind::Platform if self.is_platform_admin() => Ok(()),
            _ => Err(not_grantable()),
        }
    }
}

/// How far a caller may introspect.
#[derive(Debug, PartialEq, Eq)]
pub enum IntrospectScope {
    /// Platform callers: every organisation's tokens.
    All,
    /// Tenant callers: their own organisation's tokens only.
    Org(String),
}

/// Platform callers hold `introspect` or `gateway` in the operator organisation; tenant callers
/// are a tenant admin (checked in the database), or any credential holding `org_introspect`.
pub async fn introspect_scope(app: &App, caller: &Caller) -> Result<IntrospectScope, ApiError> {
    if caller.platform(&app.cfg, INTROSPECT) || caller.platform(&app.cfg, GATEWAY) {
        return Ok(IntrospectScope::All);
    }
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "introspection needs the introspect or org_introspect role, or a tenant admin",
        )
    };
    let org = caller.org.clone().ok_or_else(refused)?;
    let allowed = if caller.user_id().is_ok() {
        let actor = Actor::load(app, caller).await?;
        actor.org == org && (actor.is_tenant_admin() || actor.holds(ORG_INTROSPECT))
    } else {
        caller.has_role(ORG_INTROSPECT)
    };
    if !allowed {
        return Err(refused());
    }
    Ok(IntrospectScope::Org(org))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_operator_grants() {
        let cfg = Config::default();
        assert_eq!(kind(&cfg, "gateway"), RoleKind::Platform);
        assert_eq!(kind(&cfg, "admin"), RoleKind::Tenant);
        assert_eq!(kind(&cfg, "superuser"), RoleKind::Unknown);
        assert!(operator_may_grant(&cfg, &cfg.platform.operator_org, "gateway").is_ok());
        assert!(operator_may_grant(&cfg, crate::db::DEFAULT_ORG, "gateway").unwrap_err().contains("platform role"));
        assert!(operator_may_grant(&cfg, crate::db::DEFAULT_ORG, "reader").is_ok());
        assert!(operator_may_grant(&cfg, crate::db::DEFAULT_ORG, "superuser").is_err());
    }

    fn actor(org: &str, roles: &[&str]) -> Actor {
        let cfg = Config::default();
        let user = User {
            id: "usr_1".into(),
            email: "a@example.com".into(),
            home_org: org.into(),
            password_hash: String::new(),
            status: "active".into(),
            mfa: "none".into(),
            totp_secret: None,
            totp_pending: None,
            created_at: 0,
            password_changed_at: 0,
            name: None,
            active_memberships: 1,
            in_home_org: 1,
        };
        Actor {
            in_operator_org: org == cfg.platform.operator_org,
            org: org.into(),
            user,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn tenant_admins_grant_tenant_roles_only() {
        let cfg = Config::default();
        let a = actor(crate::db::DEFAULT_ORG, &["admin", "platform_admin", "gateway"]);
        assert!(a.may_grant(&cfg, "reader").is_ok());
        for r in PLATFORM_ROLES {
            assert_eq!(a.may_grant(&cfg, r).unwrap_err().code, "role_not_grantable", "{r}");
            // Holding a platform role outside the operator organisation gives nothing.
            assert!(a.may_delegate(&cfg, r).is_err(), "{r}");
        }
        assert_eq!(a.may_grant(&cfg, "superuser").unwrap_err().code, "unknown_role");
        assert!(a.may_revoke(&cfg, "superuser").is_ok());
        assert!(!a.is_platform_admin());
    }

    fn caller(method: crate::http::auth::AuthMethod, org: Option<&str>, roles: &[&str]) -> Caller {
        Caller {
            method,
            sub: "x".into(),
            org: org.map(str::to_string),
            email: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            sid: None,
            jti: None,
            client_id: None,
            scope: None,
            api_key_id: None,
            iat: 0,
            exp: None,
        }
    }

    #[test]
    fn platform_authority_needs_the_role_and_the_operator_org() {
        use crate::http::auth::AuthMethod::{ApiKey, Bearer};
        let cfg = Config::default();
        let op = cfg.platform.operator_org.as_str();
        assert!(caller(ApiKey, Some(op), &["gateway"]).platform(&cfg, GATEWAY));
        assert!(caller(Bearer, Some(op), &["introspect"]).platform(&cfg, INTROSPECT));
        // A tenant's credential with the role, or the operator's without it: no.
        assert!(!caller(ApiKey, Some("org_default"), &["gateway"]).platform(&cfg, GATEWAY));
        assert!(!caller(Bearer, Some("org_x"), &["gateway", "introspect"]).platform(&cfg, INTROSPECT));
        assert!(!caller(ApiKey, Some(op), &["reader"]).platform(&cfg, GATEWAY));
        // Only platform roles count as platform authority.
        assert!(!caller(ApiKey, Some(op), &["admin"]).platform(&cfg, "admin"));
        // Service keys of older `gateway-config` runs name no organisation; tokens always do.
        assert!(caller(ApiKey, None, &["gateway"]).platform(&cfg, GATEWAY));
        assert!(!caller(Bearer, None, &["gateway"]).platform(&cfg, GATEWAY));
    }

    #[test]
    fn platform_admins_of_the_operator_org_grant_platform_roles() {
        let cfg = Config::default();
        let p = actor(&cfg.platform.operator_org, &["platform_admin", "introspect"]);
        assert!(p.is_platform_admin() && p.require_admin().is_ok());
        assert!(p.may_grant(&cfg, "gateway").is_ok());
        assert_eq!(p.may_grant(&cfg, "reader").unwrap_err().code, "role_not_grantable");
        assert!(p.may_delegate(&cfg, "introspect").is_ok());
        assert_eq!(p.may_delegate(&cfg, "gateway").unwrap_err().code, "role_not_held");
        let member = actor(&cfg.platform.operator_org, &["introspect"]);
        assert_eq!(member.may_delegate(&cfg, "introspect").unwrap_err().code, "role_not_grantable");
        assert!(member.require_admin().is_err());
    }
}
