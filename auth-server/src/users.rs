//! Accounts: rows, lookups, email normalisation.

use crate::db::Db;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    /// The organisation the account was created in: where account-wide events are logged when
    /// no session names one. Authority comes from memberships (`crate::members`), never from this.
    pub home_org: String,
    pub password_hash: String,
    pub status: String,
    pub mfa: String,
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    pub created_at: i64,
    pub password_changed_at: i64,
    /// A display name; `None` until set.
    pub name: Option<String>,
    /// Memberships not disabled by their organisation.
    pub active_memberships: i64,
    /// 1 while the account still belongs to its home organisation.
    pub in_home_org: i64,
}

impl User {
    /// May this account sign in at all: verified, and a member somewhere not disabled there.
    pub fn can_sign_in(&self) -> bool {
        self.status == "active" && self.active_memberships > 0
    }

    /// Where an account-wide event without a session (a reset, a failed sign-in) is logged:
    /// the home organisation while the account belongs to it, else the platform's log only.
    pub fn event_org(&self) -> Option<&str> {
        (self.in_home_org > 0).then_some(self.home_org.as_str())
    }
}

const COLUMNS: &str =
    "id, email, org_id AS home_org, password_hash, status, mfa, totp_secret, totp_pending, created_at, password_changed_at, name, \
     (SELECT COUNT(*) FROM memberships m WHERE m.user_id = users.id AND m.disabled_at IS NULL) AS active_memberships, \
     (SELECT COUNT(*) FROM memberships m WHERE m.user_id = users.id AND m.org_id = users.org_id) AS in_home_org";

/// A name people give something (themselves, a passkey, an organisation), already trimmed:
/// 1 to 100 characters, none of them control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

/// A display name as stored: trimmed, a [`valid_name`]; empty means none. `Err` says what is
/// wrong.
pub fn display_name(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if valid_name(n) => Ok(Some(n.to_string())),
        Some(_) => Err("name: at most 100 characters, no control characters"),
    }
}

pub async fn by_email(db: &Db, email: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE email = $1")).bind(email).fetch_optional(db).await
}

pub async fn by_id<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// Trimmed, lower-cased; `None` if it is not a plausible address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',' || c == '"') {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return None;
    }
    Some(e)
}

/// Role names: visible ASCII without commas (they are comma-joined in gateway headers).
pub fn valid_role(r: &str) -> bool {
    !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(normalize_email("  Alice@Example.COM ").as_deref(), Some("alice@example.com"));
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a b@c.d", "a@b@c.d", "<a@b.c>"] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
    }
}
