//! An organisation's sign-in rules and email domains over HTTP: read and changed by its own
//! admins (or platform admins); a domain claim is verified only by platform authority (a
//! platform admin here, or the operator's `orgs verify-domain`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::Who;
use crate::authority::Actor;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::org_auth::{self, Domain, Rules};

#[derive(Serialize, ToSchema)]
pub struct AuthConfig {
    /// The methods a sign-in into this organisation may use.
    pub methods: Vec<String>,
    pub mfa_required: bool,
    /// Domains asked for; a verified one puts every address of the domain under these rules.
    pub domains: Vec<Domain>,
}

/// The admin of `org` acting: a tenant admin of it (in a session there), or a platform admin.
/// Anyone else learns nothing about the organisation: 404.
pub(crate) async fn org_admin(app: &App, caller: &Caller, org: &str) -> Result<Actor, ApiError> {
    let actor = Actor::load(app, caller).await?;
    if actor.is_platform_admin() {
        return if super::orgs::exists(&app.db, org).await? { Ok(actor) } else { Err(not_found()) };
    }
    if actor.org != org {
        return Err(not_found());
    }
    actor.require_admin()?;
    Ok(actor)
}

fn not_found() -> ApiError {
    ApiError::not_found("org_not_found", "no such organisation")
}

async fn config(app: &App, org: &str) -> Result<AuthConfig, ApiError> {
    let rules = org_auth::rules(&app.db, org).await?;
    Ok(AuthConfig { methods: rules.methods, mfa_required: rules.mfa_required, domains: org_auth::domains(&app.db, org).await? })
}

#[utoipa::path(get, path = "/v1/orgs/{id}/auth", tag = "orgs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = AuthConfig), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<axum::Json<AuthConfig>> {
    org_admin(&app, &caller, &id).await?;
    Ok(axum::Json(config(&app, &id).await?))
}

#[utoipa::path(put, path = "/v1/orgs/{id}/auth", tag = "orgs", request_body = Rules, security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = AuthConfig, description = "the rules apply to sign-ins from now on (sessions already open stay)"),
              (status = 400, body = ErrorBody, description = "invalid_auth_rules"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn put(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<Rules>,
) -> ApiResult<axum::Json<AuthConfig>> {
    let actor = org_admin(&app, &caller, &id).await?;
    org_auth::set_rules(&app, &id, req, Who::User(&actor.user.id)).await?;
    Ok(axum::Json(config(&app, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainRequest {
    pub domain: String,
}

#[utoipa::path(post, path = "/v1/orgs/{id}/domains", tag = "orgs", request_body = DomainRequest, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, body = Domain, description = "asked for: it counts once verified"), (status = 400, body = ErrorBody, description = "invalid_domain"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "domain_exists, too_many_domains")))]
pub async fn add_domain(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<DomainRequest>,
) -> ApiResult<(StatusCode, axum::Json<Domain>)> {
    let actor = org_admin(&app, &caller, &id).await?;
    let domain = org_auth::add_domain(&app, &id, &req.domain, Who::User(&actor.user.id)).await?;
    Ok((StatusCode::CREATED, axum::Json(domain)))
}

#[utoipa::path(delete, path = "/v1/orgs/{id}/domains/{domain}", tag = "orgs", security(("bearer" = [])),
    params(("id" = String, Path), ("domain" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_domain(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, domain)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let actor = org_admin(&app, &caller, &id).await?;
    if !org_auth::remove_domain(&app, &id, &domain, Who::User(&actor.user.id)).await? {
        return Err(ApiError::not_found("domain_not_found", "this organisation has no such domain"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/orgs/{id}/domains/{domain}/verify", tag = "orgs", security(("bearer" = [])),
    params(("id" = String, Path), ("domain" = String, Path)),
    responses((status = 200, body = Domain, description = "verified: the organisation's rules govern every address of the domain"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "insufficient_role (DNS verification off: platform admins only)"),
              (status = 404, body = ErrorBody, description = "org_not_found, domain_not_found (not asked for: an organisation's admin adds it first)"),
              (status = 409, body = ErrorBody, description = "domain_taken, dns_record_missing"),
              (status = 502, body = ErrorBody, description = "dns_unavailable")))]
pub async fn verify_domain(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, domain)): Path<(String, String)>,
) -> ApiResult<axum::Json<Domain>> {
    // A tenant cannot vouch for itself (an address's domain decides whose rules it signs in
    // under): platform admins vouch; an organisation's admins prove control with the TXT record.
    let actor = org_admin(&app, &caller, &id).await?;
    if actor.is_platform_admin() {
        return Ok(axum::Json(org_auth::verify_domain(&app, &id, &domain, Who::User(&actor.user.id)).await?));
    }
    Ok(axum::Json(org_auth::check_domain(&app, &id, &domain, Who::User(&actor.user.id)).await?))
}
