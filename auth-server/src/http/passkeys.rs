//! My passkeys: register one (a challenge, then the authenticator's answer), list, remove.
//! Adding or removing a way to sign in needs a recent login, like every other factor change.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::me::{load_me, require_recent_login};
use super::Json;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::passkeys::{self, PasskeyInfo};

#[derive(Serialize, ToSchema)]
pub struct RegistrationChallenge {
    /// Send back with the answer to `POST /v1/me/passkeys`.
    pub registration_id: String,
    /// `PublicKeyCredentialCreationOptions` in WebAuthn's JSON form (under `publicKey`), ready
    /// for `PublicKeyCredential.parseCreationOptionsFromJSON`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

#[utoipa::path(post, path = "/v1/me/passkeys/challenge", tag = "passkeys", security(("bearer" = [])),
    responses((status = 200, body = RegistrationChallenge), (status = 403, body = ErrorBody, description = "reauthentication_required"),
              (status = 404, body = ErrorBody, description = "passkeys_disabled"), (status = 409, body = ErrorBody, description = "too_many_passkeys")))]
pub async fn challenge(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    let (options, registration_id) = passkeys::start_registration(&app, &user.id, &user.email).await?;
    let options = serde_json::to_value(&options).map_err(|e| ApiError::internal(format!("passkey: {e}")))?;
    let mut resp = axum::Json(RegistrationChallenge { registration_id, options }).into_response();
    resp.headers_mut().insert("cache-control", axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub registration_id: String,
    /// A name to tell passkeys apart (1 to 100 characters).
    pub name: String,
    /// The authenticator's answer: `PublicKeyCredential.toJSON()` of `navigator.credentials.create`.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[utoipa::path(post, path = "/v1/me/passkeys", tag = "passkeys", security(("bearer" = [])), request_body = RegisterRequest,
    responses((status = 201, body = PasskeyInfo), (status = 400, body = ErrorBody, description = "passkey_invalid, passkey_registration_invalid"),
              (status = 404, body = ErrorBody, description = "passkeys_disabled"),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "passkey_exists, too_many_passkeys")))]
pub async fn register(
    State(app): State<AppState>,
    caller: Caller,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<PasskeyInfo>)> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    let name = req.name.trim();
    if !crate::users::valid_name(name) {
        return Err(ApiError::bad_request("invalid_name", "name: 1 to 100 characters, no control characters"));
    }
    let info = passkeys::finish_registration(&app, &user, &req.registration_id, name, req.credential).await?;
    tracing::info!(user_id = %user.id, passkey = %info.id, "passkey registered");
    crate::notify::send(&app, &user.email, crate::notify::Notice::FactorsChanged { what: "A passkey was added" });
    Ok((StatusCode::CREATED, axum::Json(info)))
}

#[utoipa::path(get, path = "/v1/me/passkeys", tag = "passkeys", security(("bearer" = [])), responses((status = 200, body = Vec<PasskeyInfo>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<PasskeyInfo>>> {
    let user = load_me(&app, &caller).await?;
    Ok(axum::Json(passkeys::list(&app, &user.id).await?))
}

#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", tag = "passkeys", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let user = load_me(&app, &caller).await?;
    require_recent_login(&app, &caller, &user).await?;
    if !passkeys::remove(&app, &user, &id).await? {
        return Err(ApiError::not_found("not_found", "no such passkey"));
    }
    tracing::info!(user_id = %user.id, passkey = %id, "passkey removed");
    crate::notify::send(&app, &user.email, crate::notify::Notice::FactorsChanged { what: "A passkey was removed" });
    Ok(StatusCode::NO_CONTENT)
}
