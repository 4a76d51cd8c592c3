//! Security notifications: the emails that tell a person something happened to their account
//! (a sign-in from a new device or network, a lockout, a refresh token used twice, the password,
//! the sign-in factors or an API key changed). One place decides the words and whether the
//! operator turned a kind off (`notifications.*`); each caller sends at most one per event, and
//! only to an existing account — the mail leaves from a queue, so nothing shows in the answer.

use crate::app::App;
use crate::db::now;
use crate::error::ApiError;

/// What happened.
pub enum Notice<'a> {
    NewDevice {
        device: &'a str,
        ip: &'a str,
    },
    Lockout,
    RefreshReuse,
    PasswordChanged,
    /// Told to the old address; `to` is the new one, masked.
    EmailChanged {
        to: &'a str,
    },
    /// `what`: "The authenticator app was turned on", …
    FactorsChanged {
        what: &'a str,
    },
    ApiKeyCreated {
        name: &'a str,
    },
    ApiKeyRevoked {
        name: &'a str,
    },
}

impl Notice<'_> {
    fn enabled(&self, cfg: &crate::config::NotificationsConfig) -> bool {
        match self {
            Notice::NewDevice { .. } => cfg.new_device,
            Notice::Lockout => cfg.lockout,
            Notice::RefreshReuse => cfg.refresh_reuse,
            Notice::PasswordChanged => cfg.password_changed,
            Notice::EmailChanged { .. } => cfg.email_changed,
            Notice::FactorsChanged { .. } => cfg.factors_changed,
            Notice::ApiKeyCreated { .. } | Notice::ApiKeyRevoked { .. } => cfg.api_keys,
        }
    }

    fn subject_and_body(&self) -> (&'static str, String) {
        const NOT_YOU: &str = "If this was not you, reset your password now and tell your administrator.";
        match self {
            Notice::NewDevice { device, ip } => (
                "New sign-in to your account",
                format!("Your {{product}} account was just signed in to from a device or network it had not used before:\n\n{device}\nfrom {ip}\n\n{NOT_YOU}\n"),
            ),
            Notice::Lockout => (
                "Your account is locked for a while",
                format!("Too many wrong passwords or codes were tried for your {{product}} account, so it is locked for a while.\n\n{NOT_YOU}\n"),
            ),
            Notice::RefreshReuse => (
                "A session of yours was signed out",
                format!("A refresh token of one of your {{product}} sessions was used twice — someone may hold a copy — so that session was signed out.\n\n{NOT_YOU}\n"),
            ),
            Notice::PasswordChanged => (
                "Your password was changed",
                format!("The password of your {{product}} account was just changed, and every other session was signed out.\n\n{NOT_YOU}\n"),
            ),
            Notice::EmailChanged { to } => (
                "Your account's address was changed",
                format!("Your {{product}} account now signs in with {to} instead of this address, and every other session was signed out.\n\n{NOT_YOU}\n"),
            ),
            Notice::FactorsChanged { what } => ("How you sign in changed", format!("{what} on your {{product}} account.\n\n{NOT_YOU}\n")),
            Notice::ApiKeyCreated { name } => ("A new API key", format!("An API key named \"{name}\" was created for your {{product}} account.\n\n{NOT_YOU}\n")),
            Notice::ApiKeyRevoked { name } => ("An API key was revoked", format!("The API key named \"{name}\" of your {{product}} account was revoked.\n")),
        }
    }
}

/// Emails `notice` to `email` unless the operator turned its kind off.
pub fn send(app: &App, email: &str, notice: Notice<'_>) {
    if !notice.enabled(&app.cfg.notifications) {
        return;
    }
    let (subject, body) = notice.subject_and_body();
    metrics::counter!("authgate_security_notices_total", "kind" => subject).increment(1);
    app.mailer.send(email, subject, body);
}

/// A user's sign-in from `user_agent` at `ip`: remembered per device and network (a /24 or a
/// /64); the first sight of a pair, on an account that signed in before, is a notice. The
/// insert decides, so two sign-ins racing send one.
pub async fn sign_in(app: &App, user_id: &str, email: &str, user_agent: Option<&str>, ip: std::net::IpAddr) -> Result<(), ApiError> {
    let device: String = user_agent.unwrap_or("an unknown browser").chars().filter(|c| !c.is_control()).take(200).collect();
    let network = match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    };
    let fingerprint = crate::crypto::sha256_hex(format!("{device}\n{network}").as_bytes());
    let t = now();
    let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM known_devices WHERE user_id = $1").bind(user_id).fetch_one(&app.db).await?;
    let inserted = sqlx::query(
        "INSERT INTO known_devices (user_id, fingerprint, first_seen, last_seen) VALUES ($1, $2, $3, $3) ON CONFLICT (user_id, fingerprint) DO NOTHING",
    )
    .bind(user_id)
    .bind(&fingerprint)
    .bind(t)
    .execute(&app.db)
    .await?
    .rows_affected();
    if inserted == 0 {
        sqlx::query("UPDATE known_devices SET last_seen = $1 WHERE user_id = $2 AND fingerprint = $3")
            .bind(t)
            .bind(user_id)
            .bind(&fingerprint)
            .execute(&app.db)
            .await?;
    }
    let first_of_its_kind = inserted > 0;
    if first_of_its_kind && known > 0 {
        send(app, email, Notice::NewDevice { device: &device, ip: &network });
    }
    Ok(())
}
