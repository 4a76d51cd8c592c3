//! An organisation's identity providers (OpenID Connect, GitHub, SAML) over HTTP: registered, listed and
//! removed by its own admins (or platform admins). The roles a connection gives the members it
//! adds must be ones the registering admin may grant.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Caller;
use super::org_auth::org_admin;
use super::Json;
use crate::app::AppState;
use crate::audit::Who;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::federation::{self, ConnectionInfo, NewConnection, SamlUpdate};

#[utoipa::path(get, path = "/v1/orgs/{id}/connections", tag = "orgs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Vec<ConnectionInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<axum::Json<Vec<ConnectionInfo>>> {
    org_admin(&app, &caller, &id).await?;
    Ok(axum::Json(federation::list(&app, &id).await?))
}

#[utoipa::path(post, path = "/v1/orgs/{id}/connections", tag = "orgs", request_body = NewConnection, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, body = ConnectionInfo, description = "registered: its discovery document was read and checked"),
              (status = 400, body = ErrorBody, description = "invalid_connection (names the field), unknown_role"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "role_not_grantable"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "too_many_connections")))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<NewConnection>,
) -> ApiResult<(StatusCode, axum::Json<ConnectionInfo>)> {
    let actor = org_admin(&app, &caller, &id).await?;
    // The members it adds get these roles (a SAML IdP: any of its allowed roles).
    let allowed = req.saml.as_ref().map_or(&[][..], |s| &s.allowed_roles[..]);
    grantable(&app, &actor, &id, req.roles.iter().chain(allowed))?;
    let created = federation::create(&app, &id, req, Who::User(&actor.user.id)).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

#[utoipa::path(put, path = "/v1/orgs/{id}/connections/{connection}/saml", tag = "orgs", request_body = SamlUpdate, security(("bearer" = [])),
    params(("id" = String, Path), ("connection" = String, Path)),
    responses((status = 200, body = ConnectionInfo, description = "the IdP's side replaced; our entity id, key and the linked identities stay"),
              (status = 400, body = ErrorBody, description = "invalid_connection (names the field), unknown_role"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "role_not_grantable"), (status = 404, body = ErrorBody)))]
pub async fn update_saml(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, connection)): Path<(String, String)>,
    Json(req): Json<SamlUpdate>,
) -> ApiResult<axum::Json<ConnectionInfo>> {
    let actor = org_admin(&app, &caller, &id).await?;
    grantable(&app, &actor, &id, &req.saml.allowed_roles)?;
    Ok(axum::Json(federation::update_saml(&app, &id, &connection, req, Who::User(&actor.user.id)).await?))
}

#[utoipa::path(delete, path = "/v1/orgs/{id}/connections/{connection}", tag = "orgs", security(("bearer" = [])),
    params(("id" = String, Path), ("connection" = String, Path)),
    responses((status = 204, description = "removed with the identities linked through it (the accounts stay)"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(State(app): State<AppState>, caller: Caller, Path((id, connection)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let actor = org_admin(&app, &caller, &id).await?;
    if !federation::delete(&app, &id, &connection, Who::User(&actor.user.id)).await? {
        return Err(ApiError::not_found("connection_not_found", "this organisation has no such connection"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Roles a connection gives: only ones this admin could give; platform roles only in the
/// operator organisation.
fn grantable<'a>(
    app: &AppState,
    actor: &crate::authority::Actor,
    org: &str,
    roles: impl IntoIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    for r in roles {
        actor.may_grant(&app.cfg, r)?;
        if crate::authority::is_platform_role(r) && org != app.cfg.platform.operator_org {
            return Err(ApiError::forbidden("role_not_grantable", "platform roles exist only in the operator organisation"));
        }
    }
    Ok(())
}
