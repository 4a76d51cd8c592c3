//! The pages' templates (minijinja, HTML auto-escaped), compiled into the binary and parsed
//! once at start, and the filters they use.

use minijinja::Environment;

const TEMPLATES: [(&str, &str); 22] = [
    ("layout.html", include_str!("../../pages/templates/layout.html")),
    ("login.html", include_str!("../../pages/templates/login.html")),
    ("login_step.html", include_str!("../../pages/templates/login_step.html")),
    ("login_org.html", include_str!("../../pages/templates/login_org.html")),
    ("sso_done.html", include_str!("../../pages/templates/sso_done.html")),
    ("saml_post.html", include_str!("../../pages/templates/saml_post.html")),
    ("signup.html", include_str!("../../pages/templates/signup.html")),
    ("signup_verify.html", include_str!("../../pages/templates/signup_verify.html")),
    ("account.html", include_str!("../../pages/templates/account.html")),
    ("code_form.html", include_str!("../../pages/templates/code_form.html")),
    ("key_secret.html", include_str!("../../pages/templates/key_secret.html")),
    ("error.html", include_str!("../../pages/templates/error.html")),
    ("forgot.html", include_str!("../../pages/templates/forgot.html")),
    ("reset.html", include_str!("../../pages/templates/reset.html")),
    ("totp.html", include_str!("../../pages/templates/totp.html")),
    ("resume.html", include_str!("../../pages/templates/resume.html")),
    ("organisation.html", include_str!("../../pages/templates/organisation.html")),
    ("webhook_created.html", include_str!("../../pages/templates/webhook_created.html")),
    ("consent.html", include_str!("../../pages/templates/consent.html")),
    ("logout.html", include_str!("../../pages/templates/logout.html")),
    ("app_created.html", include_str!("../../pages/templates/app_created.html")),
    ("invite.html", include_str!("../../pages/templates/invite.html")),
];

pub const STYLESHEET: &str = include_str!("../../pages/static/pages.css");
pub const SCRIPT: &str = include_str!("../../pages/static/pages.js");

pub struct Views {
    env: Environment<'static>,
}

impl Views {
    /// Parses every template; a template that does not parse is a build defect, caught by the
    /// unit test below before any server starts.
    pub fn new() -> Result<Views, minijinja::Error> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        env.add_filter("utc", utc);
        Ok(Views { env })
    }

    pub fn render(&self, name: &str, ctx: &serde_json::Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(minijinja::value::Serde(ctx))
    }
}

/// `2026-12-03 14:05 UTC` from Unix seconds (days to civil date: H. Hinnant's algorithm).
pub fn utc(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(86400), ts.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_306_700), "2026-12-03 14:05 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn every_template_parses_and_escapes() {
        let views = Views::new().unwrap();
        let ctx = serde_json::json!({"title": "<b>t</b>", "product": "p", "base": "", "csrf": "c", "error": "<script>x</script>"});
        let html = views.render("login.html", &ctx).unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;") && !html.contains("<script>x"), "{html}");
        // Every template with the data its handler gives it.
        let full = serde_json::json!({"title": "t", "product": "p", "base": "/auth", "csrf": "c", "email": "a@example.com", "return_to": "/x",
            "first": false, "password": true, "email_otp": true, "totp": true, "code_sent": true, "org_creation": true, "min_password": 12,
            "me": {"email": "a@example.com", "org_id": "org_x", "roles": ["admin"], "mfa": "none", "totp_enabled": false, "created_at": 0,
                   "memberships": [{"org_id": "org_x", "org_name": "X", "roles": ["admin"], "disabled": false, "suspended": false},
                                   {"org_id": "org_y", "org_name": "Y", "roles": [], "disabled": true, "suspended": false}]},
            "orgs": [{"id": "org_x", "name": "X"}, {"id": "org_y", "name": "<Y>"}], "signed_in_as": "a@example.com",
            "connections": [{"name": "<Acme>", "url": "/auth/login/sso/conn_1"}],
            "sessions": [{"id": "s1", "user_agent": null, "ip": "127.0.0.1", "created_at": 0, "last_used_at": 0, "current": true}],
            "keys": [{"id": "k1", "key_id": "agk_1", "name": "n", "roles": [], "status": "active", "expires_at": 10}], "max_days": 365,
            "key": {"key_id": "agk_1", "secret": "s", "expires_at": 10},
            "sent": true, "token": "prt_x", "secret": "JBSWY3DPEHPK3PXP", "uri": "otpauth://totp/x", "qr": "data:image/svg+xml;base64,PHN2Zy8+",
            "org": {"id": "org_x", "name": "X"}, "roles": ["admin", "reader"],
            "auth": {"methods": ["password", "totp"], "mfa_required": true, "domains": [{"domain": "x.example", "created_at": 0, "verified_at": 5,
                     "txt_name": "_authgate.x.example", "txt_value": "authgate-verification=abc"}, {"domain": "y.example", "created_at": 0,
                     "verified_at": null, "txt_name": "_authgate.y.example", "txt_value": "authgate-verification=def"}]},
            "members": [{"id": "usr_1", "email": "a@example.com", "status": "active", "mfa": "none", "roles": ["admin"]}],
            "passkeys_enabled": true, "dns_verification": true, "passkeys": [{"id": "pk_1", "name": "laptop", "created_at": 0, "last_used_at": null}],
        });
        // (Added in parts: one json! of everything passes the macro recursion limit.)
        let more = serde_json::json!({
            "apps": [{"client_id": "cli_1", "client_name": "App", "name": "App", "scope": "openid", "granted_at": 0, "public": false,
                      "first_party": true, "redirect_uris": ["https://app.example/cb"], "revoked_at": null}],
            "app": {"client_id": "cli_1", "client_secret": "cs_x"}, "issuer": "https://auth.example",
            "client_name": "App", "client_host": "https://app.example", "request_id": "r", "scopes": ["See your email address"],
            "post_logout_redirect_uri": "https://app.example/", "client_id": "cli_1", "id_token_hint": null, "state": "s", "next": "abc",
        });
        let invitations = serde_json::json!({
            "invitation": {"email": "a@example.com", "org_name": "X", "expires_at": 0, "existing_account": true},
            "lead": "We emailed you a code.", "action": "/account/api-keys/verify", "button": "Create the key",
            "invitations": [{"id": "inv_1", "email": "b@example.com", "roles": ["reader"], "status": "pending", "expires_at": 0}],
            "webhooks": [{"id": "whk_1", "url": "https://hooks.example/a", "actions": [], "created_at": 0, "pending": 0, "failed": 1}],
            "webhook": {"id": "whk_1", "url": "https://hooks.example/a", "secret": "whsec_x", "actions": ["login."]},
            "events": [{"at": 0, "action": "login.succeeded", "actor": "a@example.com", "target": "session ses_1", "ip": "10.0.0.1"}],
            "identities": [{"connection_id": "conn_1", "connection_name": "Acme SSO", "kind": "oidc", "org_id": "org_x", "created_at": 0,
                            "last_used_at": null}],
            "providers": [{"id": "conn_2", "name": "GitHub", "kind": "github"}],
            "connections": [{"id": "conn_1", "org_id": "org_x", "kind": "entra", "name": "Acme SSO", "issuer": "https://login.example/organizations/v2.0",
                             "client_id": "c", "has_client_secret": true, "scopes": "openid", "tenants": ["t1"], "create_accounts": true,
                             "roles": ["reader"], "created_at": 0},
                            {"id": "conn_2", "org_id": "org_x", "kind": "saml", "name": "Acme SAML", "issuer": "urn:idp", "client_id": "https://a/saml/conn_2/metadata",
                             "has_client_secret": false, "scopes": "", "tenants": [], "create_accounts": true, "roles": [], "created_at": 0,
                             "saml": {"sp_entity_id": "https://a/saml/conn_2/metadata", "acs_url": "https://a/saml/conn_2/acs", "sso_url": "https://idp/sso",
                                      "certificate_fingerprints": ["ab"], "allowed_roles": []}}],
            "sso_redirect_uri": "https://auth.example/login/sso/callback",
            "connection": "conn_1", "saml_response": "PHNhbWw+", "relay_state": "r",
        });
        let mut full = full;
        for extra in [more, invitations] {
            for (k, v) in extra.as_object().expect("object") {
                full[k] = v.clone();
            }
        }
        for (name, _) in TEMPLATES {
            let html = views.render(name, &full).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(html.contains("&#x2f;auth/pages/static/pages.css"), "{name}");
        }
    }
}
