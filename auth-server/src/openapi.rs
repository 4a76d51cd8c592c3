//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' annotations.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::http::{
    apikeys, audit, clients, connections, email, identities, invitations, login, me, oauth, ops, org_auth, orgs, passkeys, sessions,
    signup, users, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "authgate auth-server", description = "Accounts, multi-step login, sessions, API keys, JWKS and the revocation feed. \
Every non-2xx answer carries x-error, x-error-id and x-error-code headers and an ErrorBody."),
    paths(
        signup::sign_up, signup::verify_email, signup::resend, signup::forgot_password, signup::reset_password,
        me::me, me::update_me, me::delete_me, me::change_password, email::request, email::verify, me::set_mfa, me::totp_enrol, me::totp_confirm, me::totp_disable,
        passkeys::challenge, passkeys::register, passkeys::list, passkeys::remove,
        users::list, users::update, users::set_roles, users::disable, users::enable, users::delete, users::current_org, audit::list,
        webhooks::create, webhooks::list, webhooks::deliveries, webhooks::delete,
        orgs::list, orgs::create, orgs::suspend, orgs::reinstate, org_auth::get, org_auth::put, org_auth::add_domain, org_auth::remove_domain,
        org_auth::verify_domain, connections::list, connections::create, connections::update_saml, connections::delete,
        invitations::invite, invitations::list, invitations::cancel, invitations::lookup, invitations::accept, invitations::join,
        login::init, login::authenticate, login::short_form, login::short_form_verify,
        sessions::refresh, sessions::list, sessions::revoke_one, sessions::revoke_all, sessions::logout,
        sessions::validate, sessions::introspect,
        apikeys::create, apikeys::verify, apikeys::list, apikeys::revoke,
        clients::create, clients::list, clients::revoke,
        oauth::token, oauth::userinfo, oauth::revoke, me::consents, me::revoke_consent, identities::providers, identities::list, identities::link, identities::unlink,
        ops::jwks, ops::discovery, ops::revocations, ops::healthz, ops::readyz, ops::metrics,
    ),
    modifiers(&Security, &CommonAnswers)
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

/// Operations limited per client address (`http/mod.rs::api_routes`, the `limited` router) or
/// by failed client authentications (the OAuth endpoints), or that count towards an account's
/// lockout or an address's cap on emailed codes: each can answer 429 with `retry-after`.
const MAY_BE_LIMITED: &[&str] = &[
    "POST /v1/users",
    "GET /v1/users",
    "POST /v1/users/verify",
    "POST /v1/users/verify/resend",
    "POST /v1/password/forgot",
    "POST /v1/password/reset",
    "POST /v1/auth/init",
    "POST /v1/auth/authenticate",
    "POST /v1/sessions",
    "POST /v1/sessions/verify",
    "POST /v1/api-keys",
    "GET /v1/api-keys",
    "POST /v1/api-keys/verify",
    "POST /v1/invitations/lookup",
    "POST /v1/invitations/accept",
    "POST /v1/invitations/join",
    "POST /v1/invitations",
    "POST /v1/me/email",
    "POST /v1/me/email/verify",
    "PUT /v1/me/mfa",
    "PUT /v1/me/password",
    "POST /v1/me/totp/confirm",
    "DELETE /v1/me/totp",
    "POST /oauth2/token",
    "POST /oauth2/revoke",
];

/// What every operation can answer besides its own statuses — the layers' and extractors'
/// refusals, the same for every handler (`http/mod.rs::error_headers_and_log`) — and the headers
/// every error answer carries. Added here once rather than repeated on each handler.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PUT", &mut item.put),
                ("DELETE", &mut item.delete),
                ("PATCH", &mut item.patch),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = op.request_body.is_some();
                let input = body || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut add = |status: &str, description: &str| {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description).into());
                };
                if input || secured {
                    add("400", "invalid_request (a parameter or the body is not valid for this operation), conflicting_credentials");
                }
                if body {
                    add("413", "body_too_large: the body is over 64 KiB");
                    add("415", "unsupported_media_type: send the content type this operation takes");
                }
                if secured {
                    add("401", "credential_missing, or the credential was refused (the token codes of auth-core)");
                    add("403", "user_session_required, insufficient_role, or a CSRF check failed (cookie mode)");
                }
                if MAY_BE_LIMITED.contains(&format!("{method} {path}").as_str()) {
                    add("429", "rate_limited, account_locked, too_many_codes: retry after `retry-after` seconds");
                }
                add("408", "timeout: the request took longer than 30 s");
                add("500", "internal_error");
                add("503", "database_unavailable or ephemeral_store_unavailable");
                for (status, answer) in op.responses.responses.iter_mut() {
                    let utoipa::openapi::RefOr::T(answer) = answer else { continue };
                    if status.as_str() >= "400" {
                        with_error_parts(status, answer);
                    }
                }
            }
        }
    }
}

fn string_header(description: &str) -> Header {
    HeaderBuilder::new().schema(Object::with_type(Type::String)).description(Some(description)).build()
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new().description(description).build()
}

/// An error answer's body (`ErrorBody`, unless the operation declares another) and headers.
fn with_error_parts(status: &str, answer: &mut Response) {
    if answer.content.is_empty() {
        answer.content.insert("application/json".into(), ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
    }
    let h = &mut answer.headers;
    h.entry("x-error".into()).or_insert_with(|| string_header("a description of the error (never request data)"));
    h.entry("x-error-code".into()).or_insert_with(|| string_header("the stable error code, as in the body's `error`"));
    h.entry("x-error-id".into()).or_insert_with(|| string_header("unique; the same id is in the server's log line"));
    match status {
        "401" => {
            h.entry("www-authenticate".into())
                .or_insert_with(|| string_header("`Bearer error=\"invalid_token\", …` when a bearer credential was refused"));
        }
        "429" => {
            h.entry("retry-after".into()).or_insert_with(|| {
                HeaderBuilder::new().schema(Object::with_type(Type::Integer)).description(Some("seconds to wait")).build()
            });
        }
        _ => {}
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
        for path in [
            "/v1/auth/init",
            "/v1/sessions/refresh",
            "/v1/revocations",
            "/oauth2/token",
            "/oauth2/userinfo",
            "/oauth2/revoke",
            "/.well-known/jwks.json",
            "/v1/audit",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
    }

    #[test]
    fn every_error_answer_declares_its_headers_and_the_shared_statuses() {
        let doc = serde_json::to_value(super::document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["408", "500", "503"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
                if op.get("security").is_some_and(|s| !s.as_array().unwrap().is_empty()) {
                    assert!(responses["401"]["headers"].get("www-authenticate").is_some(), "{method} {path}");
                }
                for (status, answer) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                    for h in ["x-error", "x-error-code", "x-error-id"] {
                        assert!(answer["headers"].get(h).is_some(), "{method} {path} {status}: {h}");
                    }
                }
            }
        }
        let login = &doc["paths"]["/v1/auth/authenticate"]["post"]["responses"]["429"];
        assert!(login["headers"].get("retry-after").is_some());
        assert!(doc["paths"]["/healthz"]["get"]["responses"].get("429").is_none());
        // Every operation the list names exists (a renamed route would silently lose its 429).
        for entry in super::MAY_BE_LIMITED {
            let (method, path) = entry.split_once(' ').unwrap();
            assert!(doc["paths"][path].get(method.to_lowercase()).is_some(), "{entry} is not an operation");
        }
    }
}
