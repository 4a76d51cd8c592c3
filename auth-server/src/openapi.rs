//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{apikeys, audit, clients, email, invitations, login, me, oauth, ops, orgs, passkeys, sessions, signup, users, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "authgate auth-server", description = "Accounts, multi-step login, sessions, API keys, JWKS and the revocation feed. \
Every non-2xx answer carries x-error, x-error-id and x-error-code headers and an ErrorBody."),
    paths(
        signup::sign_up, signup::verify_email, signup::resend, signup::forgot_password, signup::reset_password,
        me::me, me::delete_me, me::change_password, email::request, email::verify, me::set_mfa, me::totp_enrol, me::totp_confirm, me::totp_disable,
        passkeys::challenge, passkeys::register, passkeys::list, passkeys::remove,
        users::list, users::set_roles, users::disable, users::enable, users::delete, users::current_org, audit::list,
        webhooks::create, webhooks::list, webhooks::deliveries, webhooks::delete,
        orgs::list, orgs::create, orgs::suspend, orgs::reinstate,
        invitations::invite, invitations::list, invitations::cancel, invitations::lookup, invitations::accept,
        login::init, login::authenticate, login::short_form, login::short_form_verify,
        sessions::refresh, sessions::list, sessions::revoke_one, sessions::revoke_all, sessions::logout,
        sessions::validate, sessions::introspect,
        apikeys::create, apikeys::verify, apikeys::list, apikeys::revoke,
        clients::create, clients::list, clients::revoke,
        oauth::token, oauth::userinfo, oauth::revoke, me::consents, me::revoke_consent,
        ops::jwks, ops::discovery, ops::revocations, ops::healthz, ops::readyz, ops::metrics,
    ),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_3_1_and_lists_the_api() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in ["/v1/auth/init", "/v1/sessions/refresh", "/v1/revocations", "/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke", "/.well-known/jwks.json", "/v1/audit"] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
    }
}
