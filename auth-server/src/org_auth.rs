//! Each organisation's sign-in rules — the methods its people may use, whether two factors are
//! required — and the email domains it claims. The login applies the rules of the organisation
//! holding the address's domain from its first step (the same for every address of the domain,
//! known or not: nothing tells accounts apart), and the rules of the organisation the session
//! opens in before it opens.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::crypto;
use crate::db::{self, now, Db};
use crate::error::ApiError;

/// Every sign-in method there is; `sso` is signing in through the organisation's own identity
/// providers (whose policies govern their factors).
pub const METHODS: [&str; 5] = ["password", "email_otp", "totp", "passkey", "sso"];
/// Methods that can start a sign-in (TOTP is only ever a second step).
const FIRST_FACTORS: [&str; 4] = ["password", "email_otp", "passkey", "sso"];
/// Domains one organisation may ask for.
pub const MAX_DOMAINS: i64 = 20;

/// An organisation's sign-in rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The methods a sign-in may use: `password`, `email_otp`, `totp`, `passkey`, `sso` (the
    /// organisation's identity providers).
    pub methods: Vec<String>,
    /// Every session needs two factors (a passkey counts as two: it verifies its user; a sign-in
    /// through the organisation's own identity provider is held to that provider's policy).
    pub mfa_required: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { methods: METHODS.iter().map(|m| m.to_string()).collect(), mfa_required: false }
    }
}

impl Rules {
    pub fn allows(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// Both at once: the methods both allow; two factors when either requires them.
    pub fn and(&self, other: &Rules) -> Rules {
        Rules {
            methods: self.methods.iter().filter(|m| other.allows(m)).cloned().collect(),
            mfa_required: self.mfa_required || other.mfa_required,
        }
    }

    /// `Err` says what is wrong, naming the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.methods.iter().all(|m| METHODS.contains(&m.as_str())) {
            return Err("methods: each one of password, email_otp, totp, passkey, sso");
        }
        if (1..self.methods.len()).any(|i| self.methods[..i].contains(&self.methods[i])) {
            return Err("methods: each at most once");
        }
        if !FIRST_FACTORS.iter().any(|m| self.allows(m)) {
            return Err("methods: at least one of password, email_otp, passkey, sso (totp is only a second step)");
        }
        Ok(())
    }

    /// In the order of [`METHODS`], whatever order they were given in.
    fn normalized(mut self) -> Rules {
        self.methods.sort_by_key(|m| METHODS.iter().position(|x| x == m));
        self
    }
}

/// The rules of `org` (the defaults when it never set any).
pub async fn rules<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, org: &str) -> Result<Rules, sqlx::Error> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT methods, mfa_required FROM org_auth WHERE org_id = $1").bind(org).fetch_optional(db).await?;
    Ok(match row {
        Some((methods, mfa)) => Rules { methods: serde_json::from_str(&methods).unwrap_or_default(), mfa_required: mfa != 0 },
        None => Rules::default(),
    })
}

/// Sets `org`'s rules (checked), audited with what changed.
pub async fn set_rules(app: &App, org: &str, rules: Rules, actor: Who<'_>) -> Result<Rules, ApiError> {
    rules.check().map_err(|m| ApiError::bad_request("invalid_auth_rules", m))?;
    let rules = rules.normalized();
    let mut tx = db::begin_write(&app.db).await?;
    let before = self::rules(&mut *tx, org).await?;
    sqlx::query(
        "INSERT INTO org_auth (org_id, methods, mfa_required, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id) DO UPDATE SET methods = excluded.methods, mfa_required = excluded.mfa_required, updated_at = excluded.updated_at",
    )
    .bind(org)
    .bind(serde_json::to_string(&rules.methods).expect("serializes"))
    .bind(rules.mfa_required as i64)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    if before != rules {
        Event::new(Action::OrgAuthChanged, Some(org), actor)
            .target("org", org)
            .data(serde_json::json!({ "methods": rules.methods, "mfa_required": rules.mfa_required }))
            .write(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rules)
}

/// A domain name as stored: lower-case ASCII labels (1 to 63 letters, digits, hyphens, not at
/// either end) joined by dots, at least two, 253 characters at most. Internationalised names
/// are given in their `xn--` form.
pub fn normalize_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (d.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) && !labels.last()?.bytes().all(|b| b.is_ascii_digit())).then_some(d)
}

/// The organisation holding `domain` (a verified claim).
async fn domain_holder<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, domain: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT org_id FROM org_domains WHERE domain = $1 AND verified_at IS NOT NULL").bind(domain).fetch_optional(db).await
}

/// The organisation holding `email`'s domain.
pub async fn holder(db: &Db, email: &str) -> Result<Option<String>, sqlx::Error> {
    match email.rsplit_once('@') {
        Some((_, domain)) => domain_holder(db, domain).await,
        None => Ok(None),
    }
}

/// The organisation holding `email`'s domain, with its rules.
pub async fn for_address(db: &Db, email: &str) -> Result<Option<(String, Rules)>, sqlx::Error> {
    match holder(db, email).await? {
        Some(org) => {
            let rules = rules(db, &org).await?;
            Ok(Some((org, rules)))
        }
        None => Ok(None),
    }
}

/// A domain an organisation asked for: verified, or waiting for its DNS record (or the operator).
#[derive(Serialize, ToSchema)]
pub struct Domain {
    pub domain: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    /// The TXT record that proves control: its name …
    pub txt_name: String,
    /// … and its value.
    pub txt_value: String,
}

fn domain_of(domain: String, token: String, created_at: i64, verified_at: Option<i64>) -> Domain {
    Domain { txt_name: format!("_authgate.{domain}"), txt_value: format!("authgate-verification={token}"), domain, created_at, verified_at }
}

pub async fn domains(db: &Db, org: &str) -> Result<Vec<Domain>, sqlx::Error> {
    let rows: Vec<(String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT domain, token, created_at, verified_at FROM org_domains WHERE org_id = $1 ORDER BY domain")
            .bind(org)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(d, t, c, v)| domain_of(d, t, c, v)).collect())
}

fn invalid_domain() -> ApiError {
    ApiError::bad_request("invalid_domain", "domain: a domain name such as example.com (letters, digits, hyphens; xn-- for other scripts)")
}

/// `org` asks for `domain`: a claim that counts once verified.
pub async fn add_domain(app: &App, org: &str, raw: &str, actor: Who<'_>) -> Result<Domain, ApiError> {
    let domain = normalize_domain(raw).ok_or_else(invalid_domain)?;
    let t = now();
    let token = crypto::random_id128();
    let mut tx = db::begin_write(&app.db).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM org_domains WHERE org_id = $1").bind(org).fetch_one(&mut *tx).await?;
    if n >= MAX_DOMAINS {
        return Err(ApiError::conflict("too_many_domains", "this organisation asks for as many domains as it may: remove one first"));
    }
    let inserted = sqlx::query(
        "INSERT INTO org_domains (domain, org_id, token, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (domain, org_id) DO NOTHING",
    )
    .bind(&domain)
    .bind(org)
    .bind(&token)
    .bind(t)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict("domain_exists", "this organisation already asked for this domain"));
    }
    Event::new(Action::OrgDomainAdded, Some(org), actor).target("domain", &domain).write(&mut tx).await?;
    tx.commit().await?;
    Ok(domain_of(domain, token, t, None))
}

/// Takes a domain back (claimed or asked for). `false`: the organisation has no such domain.
pub async fn remove_domain(app: &App, org: &str, raw: &str, actor: Who<'_>) -> Result<bool, ApiError> {
    let Some(domain) = normalize_domain(raw) else { return Ok(false) };
    let mut tx = db::begin_write(&app.db).await?;
    let n = sqlx::query("DELETE FROM org_domains WHERE domain = $1 AND org_id = $2")
        .bind(&domain)
        .bind(org)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        Event::new(Action::OrgDomainRemoved, Some(org), actor).target("domain", &domain).write(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// Marks `org`'s claim on `domain` verified (the operator or a platform admin vouches; asked
/// for first when missing). 409 `domain_taken` when another organisation holds it.
pub async fn verify_domain(app: &App, org: &str, raw: &str, actor: Who<'_>) -> Result<Domain, ApiError> {
    let domain = normalize_domain(raw).ok_or_else(invalid_domain)?;
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    if !crate::http::orgs::exists(&mut *tx, org).await? {
        return Err(ApiError::not_found("org_not_found", "no such organisation"));
    }
    let holder = domain_holder(&mut *tx, &domain).await?;
    if holder.as_deref().is_some_and(|h| h != org) {
        return Err(ApiError::conflict("domain_taken", "another organisation holds this domain"));
    }
    sqlx::query(
        "INSERT INTO org_domains (domain, org_id, token, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (domain, org_id) DO NOTHING",
    )
    .bind(&domain)
    .bind(org)
    .bind(crypto::random_id128())
    .bind(t)
    .execute(&mut *tx)
    .await?;
    let taken = || ApiError::conflict("domain_taken", "another organisation holds this domain");
    // (Two organisations verified at once: the unique index lets one through.)
    match sqlx::query("UPDATE org_domains SET verified_at = COALESCE(verified_at, $1) WHERE domain = $2 AND org_id = $3")
        .bind(t)
        .bind(&domain)
        .bind(org)
        .execute(&mut *tx)
        .await
    {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(taken()),
        other => other?,
    };
    if holder.is_none() {
        Event::new(Action::OrgDomainVerified, Some(org), actor).target("domain", &domain).write(&mut tx).await?;
    }
    let (token, created_at, verified_at): (String, i64, Option<i64>) =
        sqlx::query_as("SELECT token, created_at, verified_at FROM org_domains WHERE domain = $1 AND org_id = $2")
            .bind(&domain)
            .bind(org)
            .fetch_one(&mut *tx)
            .await?;
    match tx.commit().await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(taken()),
        other => other.map_err(ApiError::from).map(|_| domain_of(domain, token, created_at, verified_at)),
    }
}

/// `org`'s admins prove `domain` themselves: the TXT record of the request must be published
/// (`_authgate.<domain>`, read through `domains.resolver`); then it is verified as
/// [`verify_domain`] does. 409 `dns_record_missing` while it is not there.
pub async fn check_domain(app: &App, org: &str, raw: &str, actor: Who<'_>) -> Result<Domain, ApiError> {
    if !app.cfg.domains.dns_verification {
        return Err(ApiError::forbidden("insufficient_role", "domains are verified by platform admins or the operator on this server"));
    }
    let domain = normalize_domain(raw).ok_or_else(invalid_domain)?;
    let asked: Option<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT token, created_at, verified_at FROM org_domains WHERE domain = $1 AND org_id = $2")
            .bind(&domain)
            .bind(org)
            .fetch_optional(&app.db)
            .await?;
    let (token, created_at, verified_at) =
        asked.ok_or_else(|| ApiError::not_found("domain_not_found", "this organisation has not asked for this domain: add it first"))?;
    if verified_at.is_some() {
        return Ok(domain_of(domain, token, created_at, verified_at));
    }
    let expected = domain_of(domain.clone(), token, created_at, None);
    let missing = || {
        ApiError::conflict(
            "dns_record_missing",
            "the domain's TXT record is not published (yet): publish txt_name with txt_value and try again — DNS changes can take a while",
        )
    };
    match crate::dns::txt(&app.cfg.domains, &expected.txt_name).await {
        Ok(records) if records.iter().any(|r| crypto::ct_eq(r.trim().as_bytes(), expected.txt_value.as_bytes())) => {}
        Ok(_) | Err(crate::dns::DnsError::NotFound) => return Err(missing()),
        Err(crate::dns::DnsError::Unavailable(e)) => {
            tracing::warn!(error = %e, domain = %domain, "DNS lookup failed");
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "dns_unavailable",
                "the DNS could not be asked: try again later",
            ));
        }
    }
    verify_domain(app, org, &domain, actor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(methods: &[&str], mfa: bool) -> Rules {
        Rules { methods: methods.iter().map(|m| m.to_string()).collect(), mfa_required: mfa }
    }

    #[test]
    fn rules_are_checked_and_combined() {
        assert!(Rules::default().check().is_ok());
        assert!(rules(&["passkey"], false).check().is_ok());
        assert!(rules(&["totp"], false).check().unwrap_err().contains("second step"));
        assert!(rules(&[], false).check().is_err());
        assert!(rules(&["password", "sms"], false).check().unwrap_err().contains("one of"));
        assert!(rules(&["password", "password"], false).check().unwrap_err().contains("at most once"));
        let both = rules(&["password", "email_otp", "totp"], false).and(&rules(&["email_otp", "totp", "passkey"], true));
        assert_eq!(both, rules(&["email_otp", "totp"], true));
        assert_eq!(rules(&["passkey", "password"], false).normalized().methods, vec!["password", "passkey"]);
    }

    #[test]
    fn domains() {
        assert_eq!(normalize_domain(" Acme.COM. ").as_deref(), Some("acme.com"));
        assert_eq!(normalize_domain("xn--bcher-kva.example").as_deref(), Some("xn--bcher-kva.example"));
        for bad in ["", "com", "a..b", "-a.com", "a-.com", "a_b.com", "bücher.de", "1.2.3.4", "a.b/c", "a.b c", &"a".repeat(64), "x.com@y"]
        {
            assert_eq!(normalize_domain(bad), None, "{bad:?}");
        }
        assert!(normalize_domain(&format!("{}.com", "a.".repeat(125))).is_none());
    }
}
