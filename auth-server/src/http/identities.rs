//! My identities at organisations' identity providers: listed, unlinked, and linked from the
//! account page (which takes the answer's `state` into the browser's binding cookie and sends
//! the browser to the provider). Linking adds a way in: it needs a recent, complete login.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::me::{load_me, require_recent_login};
use super::Json;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::federation::{self, IdentityInfo};

#[utoipa::path(get, path = "/v1/me/identities", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<IdentityInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<IdentityInfo>>> {
    let user = load_me(&app, &caller).await?;
    Ok(axum::Json(federation::identities(&app.db, &user.id).await?))
}

/// An identity provider of my session's organisation.
#[derive(Serialize, ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: federation::Kind,
}

#[utoipa::path(get, path = "/v1/me/providers", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<Provider>, description = "the identity providers of the session's organisation (ones I may link; none when its sign-in rules do not allow `sso`)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn providers(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<Provider>>> {
    let me = load_me(&app, &caller).await?;
    if !crate::org_auth::rules(&app.db, &me.org).await?.allows("sso") {
        return Ok(axum::Json(Vec::new()));
    }
    let all = federation::list(&app, &me.org).await?;
    Ok(axum::Json(all.into_iter().map(|c| Provider { id: c.id, name: c.name, kind: c.kind }).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// A connection of an organisation I am an active member of.
    pub connection_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkStarted {
    /// Where the browser goes to sign in at the provider.
    pub authorization_url: String,
    /// The round trip's state: the answer counts only from a browser holding it in the
    /// `authgate_sso` cookie (`__Host-authgate_sso` with secure cookies; the account page sets it).
    pub state: String,
}

#[utoipa::path(post, path = "/v1/me/identities", tag = "me", request_body = LinkRequest, security(("bearer" = [])),
    responses((status = 200, body = LinkStarted, description = "the round trip is started; the provider's answer links the identity"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "reauthentication_required"),
              (status = 404, body = ErrorBody, description = "connection_not_found (also: not one of my organisations')"),
              (status = 409, body = ErrorBody, description = "identity_exists"), (status = 502, body = ErrorBody)))]
pub async fn link(State(app): State<AppState>, caller: Caller, Json(req): Json<LinkRequest>) -> ApiResult<axum::Json<LinkStarted>> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    let return_to = format!("{}/account?done=identity_linked", app.cfg.public_path());
    let (authorization_url, state) = federation::start(&app, &req.connection_id, &return_to, Some(&user.id)).await?;
    Ok(axum::Json(LinkStarted { authorization_url, state }))
}

#[utoipa::path(delete, path = "/v1/me/identities/{connection_id}", tag = "me", security(("bearer" = [])), params(("connection_id" = String, Path)),
    responses((status = 204, description = "unlinked; the account stays"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn unlink(State(app): State<AppState>, caller: Caller, Path(connection): Path<String>) -> ApiResult<StatusCode> {
    let user = load_me(&app, &caller).await?;
    if !federation::unlink(&app, &user.id, &connection).await? {
        return Err(ApiError::not_found("identity_not_found", "your account has no identity of this connection"));
    }
    Ok(StatusCode::NO_CONTENT)
}
