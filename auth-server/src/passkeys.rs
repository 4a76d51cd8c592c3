//! Passkeys (WebAuthn through webauthn-rs): the relying party, registration, sign-in and the
//! credentials' storage. With user verification required (the default; webauthn-rs's passkey
//! profile) a passkey alone is a multi-factor, discoverable sign-in. With it preferred
//! (webauthn-rs's security-key profile) authenticators without it are accepted too, and a
//! passkey is one factor: a second step for an account already known, challenged with that
//! account's credentials. Signature counters and backup flags are kept and updated on every use.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Credential, DiscoverableAuthentication, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::app::App;
use crate::config::{Config, UserVerification};
use crate::crypto;
use crate::db::{self, now};
use crate::error::ApiError;

/// The relying party, or `None` when passkeys are off (configured off, or `public_url` has an
/// IP address for a host, which browsers refuse as a relying party id).
pub fn relying_party(cfg: &Config) -> anyhow::Result<Option<Webauthn>> {
    if !cfg.passkeys.enabled {
        return Ok(None);
    }
    let host = cfg.public_host();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        tracing::warn!(host = %host, "passkeys are off: public_url's host is an IP address, which browsers refuse as a WebAuthn relying party id (use a name; localhost works)");
        return Ok(None);
    }
    let origin = Url::parse(&cfg.public_origin()).map_err(|e| anyhow::anyhow!("public_url: {e}"))?;
    let rp = WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name(&cfg.passkeys.rp_name).build())
        .map_err(|e| anyhow::anyhow!("passkeys: {e}"))?;
    Ok(Some(rp))
}

/// Does every passkey verify its user (`passkeys.user_verification = "required"`)? Then one
/// signs in alone, as two factors; otherwise it is one factor, never the first step.
pub fn verifies_user(cfg: &Config) -> bool {
    cfg.passkeys.user_verification == UserVerification::Required
}

fn rp(app: &App) -> Result<&Webauthn, ApiError> {
    app.passkeys.as_ref().ok_or_else(|| ApiError::not_found("passkeys_disabled", "passkeys are not enabled on this server"))
}

/// The account's WebAuthn user id: derived from the user id, so it names no one by itself.
pub fn user_handle(user_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("authgate webauthn user:{user_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn too_many() -> ApiError {
    ApiError::conflict("too_many_passkeys", "this account holds as many passkeys as it may: remove one first")
}

fn invalid() -> ApiError {
    ApiError::bad_request("passkey_invalid", "the passkey's answer could not be verified")
}

#[derive(Serialize, Deserialize)]
struct PendingRegistration {
    user_id: String,
    state: RegistrationState,
}

/// A registration under each user-verification policy.
#[derive(Serialize, Deserialize)]
pub(crate) enum RegistrationState {
    Passkey(PasskeyRegistration),
    SecurityKey(SecurityKeyRegistration),
}

/// A sign-in challenge's server-side state: discoverable (user verification required), or
/// against one account's credentials (preferred).
#[derive(Serialize, Deserialize)]
pub(crate) enum SignInState {
    Discoverable(DiscoverableAuthentication),
    Account { user_id: String, state: SecurityKeyAuthentication },
}

fn registration_key(id: &str) -> String {
    format!("passkey-reg:{}", crypto::sha256_hex(id.as_bytes()))
}

/// A registration challenge for `user` (existing passkeys excluded, so one authenticator is not
/// registered twice); the id names the waiting state (5 minutes, single use).
pub async fn start_registration(app: &App, user_id: &str, email: &str) -> Result<(CreationChallengeResponse, String), ApiError> {
    let rp = rp(app)?;
    let existing = stored(app, "user_id", user_id).await?;
    if existing.len() as i64 >= app.cfg.passkeys.max_per_user {
        return Err(too_many());
    }
    let exclude = existing.into_iter().map(|k| k.passkey.cred_id().clone()).collect();
    let failed = |e: webauthn_rs::prelude::WebauthnError| ApiError::internal(format!("passkey: {e}"));
    let (mut options, state) = if verifies_user(&app.cfg) {
        let (options, state) = rp.start_passkey_registration(user_handle(user_id), email, email, Some(exclude)).map_err(failed)?;
        (options, RegistrationState::Passkey(state))
    } else {
        let (mut options, state) =
            rp.start_securitykey_registration(user_handle(user_id), email, email, Some(exclude), None, None).map_err(failed)?;
        // webauthn-rs asks the authenticator to require user verification for this credential
        // (credProtect), which browsers refuse with an authenticator that cannot verify: the
        // very keys this policy admits. Not asked; the server's policy decides what a key counts as.
        if let Some(ext) = options.public_key.extensions.as_mut() {
            ext.cred_protect = None;
        }
        (options, RegistrationState::SecurityKey(state))
    };
    // Sign-in is discoverable (no list of an account's credentials is ever sent, so nothing
    // tells whether an address has passkeys): ask authenticators for a discoverable credential.
    if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Preferred);
    }
    let id = crypto::new_secret("pkr_");
    let pending = PendingRegistration { user_id: user_id.to_string(), state };
    let raw = serde_json::to_string(&pending).map_err(|e| ApiError::internal(format!("passkey state: {e}")))?;
    app.eph.put(&registration_key(&id), &raw, 300).await?;
    Ok((options, id))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Verifies the authenticator's answer to [`start_registration`] and stores the passkey.
pub async fn finish_registration(
    app: &App,
    user: &crate::http::me::Me,
    registration_id: &str,
    name: &str,
    credential: Value,
) -> Result<PasskeyInfo, ApiError> {
    let user_id = user.id.as_str();
    let rp = rp(app)?;
    let raw = app.eph.take(&registration_key(registration_id)).await?.ok_or_else(|| {
        ApiError::bad_request("passkey_registration_invalid", "the passkey registration is unknown or expired: start again")
    })?;
    let pending: PendingRegistration = serde_json::from_str(&raw).map_err(|e| ApiError::internal(format!("passkey state: {e}")))?;
    if pending.user_id != user_id {
        return Err(ApiError::bad_request("passkey_registration_invalid", "the passkey registration is unknown or expired: start again"));
    }
    let passkey = registered(rp, &pending.state, credential)?;
    let info = PasskeyInfo { id: crypto::new_id("pk"), name: name.to_string(), created_at: now(), last_used_at: None };
    let stored = serde_json::to_string(&passkey).map_err(|e| ApiError::internal(format!("passkey: {e}")))?;
    let cred_id = auth_core::b64::encode(AsRef::<[u8]>::as_ref(passkey.cred_id()));
    let mut tx = db::begin_write(&app.db).await?;
    // Checked again in the transaction: two registrations racing cannot pass the cap together.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE user_id = $1").bind(user_id).fetch_one(&mut *tx).await?;
    if count >= app.cfg.passkeys.max_per_user {
        return Err(too_many());
    }
    let inserted = sqlx::query(
        "INSERT INTO passkeys (id, user_id, user_handle, credential_id, name, credential, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(&info.id)
    .bind(user_id)
    .bind(user_handle(user_id).to_string())
    .bind(&cred_id)
    .bind(name)
    .bind(&stored)
    .bind(info.created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict("passkey_exists", "this passkey is already registered"));
    }
    crate::http::me::factors_event(user, serde_json::json!({ "passkey": "added", "passkey_id": info.id })).write(&mut tx).await?;
    tx.commit().await?;
    Ok(info)
}

/// The authenticator's answer to a registration, verified against the registration's state: the
/// passkey it registers, stored alike whatever the policy (the credential is the same record).
pub(crate) fn registered(rp: &Webauthn, state: &RegistrationState, credential: Value) -> Result<Passkey, ApiError> {
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential).map_err(|_| invalid())?;
    let refused = |e: webauthn_rs::prelude::WebauthnError| {
        tracing::info!(error = %e, "passkey registration refused");
        invalid()
    };
    Ok(match state {
        RegistrationState::Passkey(state) => rp.finish_passkey_registration(&credential, state).map_err(refused)?,
        RegistrationState::SecurityKey(state) => {
            Passkey::from(Credential::from(rp.finish_securitykey_registration(&credential, state).map_err(refused)?))
        }
    })
}

/// A stored passkey: its row id, its account and the credential.
struct Stored {
    id: String,
    user_id: String,
    passkey: Passkey,
}

/// The passkeys of a user (`column` = `user_id`) or of a WebAuthn user handle.
async fn stored(app: &App, column: &'static str, value: &str) -> Result<Vec<Stored>, ApiError> {
    let sql = match column {
        "user_handle" => "SELECT id, user_id, credential FROM passkeys WHERE user_handle = $1",
        _ => "SELECT id, user_id, credential FROM passkeys WHERE user_id = $1",
    };
    let rows: Vec<(String, String, String)> = sqlx::query_as(sql).bind(value).fetch_all(&app.db).await?;
    rows.into_iter()
        .map(|(id, user_id, raw)| match serde_json::from_str(&raw) {
            Ok(passkey) => Ok(Stored { id, user_id, passkey }),
            Err(e) => Err(ApiError::internal(format!("stored passkey {id}: {e}"))),
        })
        .collect()
}

pub async fn list(app: &App, user_id: &str) -> Result<Vec<PasskeyInfo>, ApiError> {
    let rows: Vec<(String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, name, created_at, last_used_at FROM passkeys WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&app.db)
            .await?;
    Ok(rows.into_iter().map(|(id, name, created_at, last_used_at)| PasskeyInfo { id, name, created_at, last_used_at }).collect())
}

pub async fn remove(app: &App, user: &crate::http::me::Me, id: &str) -> Result<bool, ApiError> {
    let mut tx = db::begin_write(&app.db).await?;
    let n =
        sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2").bind(id).bind(&user.id).execute(&mut *tx).await?.rows_affected();
    if n == 1 {
        crate::http::me::factors_event(user, serde_json::json!({ "passkey": "removed", "passkey_id": id })).write(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn count(app: &App, user_id: &str) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE user_id = $1").bind(user_id).fetch_one(&app.db).await?)
}

/// A sign-in challenge and the state to keep server-side until the answer comes. User
/// verification required: the same for every account (discoverable: no credential list).
/// Preferred: for `account` only (a second step, once the account is known), with its
/// credentials.
pub async fn start_sign_in(app: &App, account: Option<&str>) -> Result<(Value, String), ApiError> {
    let rp = rp(app)?;
    let failed = |e: webauthn_rs::prelude::WebauthnError| ApiError::internal(format!("passkey: {e}"));
    let (options, state) = if verifies_user(&app.cfg) {
        let (mut options, state) = rp.start_discoverable_authentication().map_err(failed)?;
        // A button starts it, not the browser's autofill (`conditional`).
        options.mediation = None;
        (options, SignInState::Discoverable(state))
    } else {
        let user_id = account.ok_or_else(|| ApiError::bad_request("method_not_allowed_now", "a passkey is a second step here"))?;
        let keys: Vec<SecurityKey> =
            stored(app, "user_id", user_id).await?.into_iter().map(|k| SecurityKey::from(Credential::from(k.passkey))).collect();
        let (options, state) = rp.start_securitykey_authentication(&keys).map_err(failed)?;
        (options, SignInState::Account { user_id: user_id.to_string(), state })
    };
    let options = serde_json::to_value(&options).map_err(|e| ApiError::internal(format!("passkey: {e}")))?;
    let state = serde_json::to_string(&state).map_err(|e| ApiError::internal(format!("passkey state: {e}")))?;
    Ok((options, state))
}

/// Verifies a sign-in answer against the passkey it names; on success updates its counter and
/// backup flags and answers the user id it belongs to.
pub async fn finish_sign_in(app: &App, state: &str, credential: Value) -> Result<String, ApiError> {
    let rp = rp(app)?;
    let refused = || ApiError::unauthorized("invalid_credentials", "the passkey was not accepted");
    let state: SignInState = serde_json::from_str(state).map_err(|e| ApiError::internal(format!("passkey state: {e}")))?;
    let credential: PublicKeyCredential = serde_json::from_value(credential).map_err(|_| refused())?;
    let (column, owner, cred_id) = named_passkey(rp, &state, &credential).ok_or_else(refused)?;
    let keys = stored(app, column, &owner).await?;
    let Some(Stored { id, user_id, mut passkey }) = keys.into_iter().find(|k| AsRef::<[u8]>::as_ref(k.passkey.cred_id()) == cred_id) else {
        return Err(refused());
    };
    let result = signed_in(rp, state, &credential, &passkey).map_err(|e| {
        tracing::info!(error = %e, passkey = %id, "passkey sign-in refused");
        refused()
    })?;
    passkey.update_credential(&result);
    let raw = serde_json::to_string(&passkey).map_err(|e| ApiError::internal(format!("passkey: {e}")))?;
    let _gate = db::write_gate().await;
    sqlx::query("UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3")
        .bind(raw)
        .bind(now())
        .bind(&id)
        .execute(&app.db)
        .await?;
    Ok(user_id)
}

/// Where the passkey a sign-in answer names is stored (the column and value [`stored`] reads
/// by) and its credential id: discoverable, by the user handle the authenticator sent; for one
/// account's challenge, that account's. `None`: the answer names nobody.
pub(crate) fn named_passkey(
    rp: &Webauthn,
    state: &SignInState,
    credential: &PublicKeyCredential,
) -> Option<(&'static str, String, Vec<u8>)> {
    match state {
        SignInState::Discoverable(_) => {
            let (handle, cred_id) = rp.identify_discoverable_authentication(credential).ok()?;
            Some(("user_handle", handle.to_string(), cred_id.to_vec()))
        }
        SignInState::Account { user_id, .. } => Some(("user_id", user_id.clone(), credential.raw_id.to_vec())),
    }
}

/// A sign-in answer verified against its challenge's state and the stored passkey it names.
pub(crate) fn signed_in(
    rp: &Webauthn,
    state: SignInState,
    credential: &PublicKeyCredential,
    passkey: &Passkey,
) -> Result<AuthenticationResult, webauthn_rs::prelude::WebauthnError> {
    match state {
        SignInState::Discoverable(state) => rp.finish_discoverable_authentication_v2(credential, state, passkey),
        SignInState::Account { state, .. } => rp.finish_securitykey_authentication(credential, &state),
    }
}
