//! Login. Multi-step: `POST /v1/auth/init {email}` answers the methods and an `x-session-token`
//! (256 random bits, stored hashed, short-lived); `POST /v1/auth/authenticate` takes one method
//! at a time until the account's steps are done. Short form: `POST /v1/sessions {email,
//! password}` → emailed code → `POST /v1/sessions/verify`.
//!
//! Unknown accounts walk the same path (dummy password hash, decoy codes never sent), answer
//! the same statuses and bodies, and are locked out the same way: nothing tells them apart.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::session_cookies;
use super::{account_rate_limit, user_agent, ClientIp, Json};
use crate::app::{App, AppState};
use crate::codes::{self, NewCode};
use crate::crypto;
use crate::db::now;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::lockout;
use crate::org_auth::{self, Rules};
use crate::passkeys;
use crate::sessions::{self, Issued, SessionMeta};
use crate::users::{self, normalize_email, User};

const METHODS: [&str; 3] = ["password", "email_otp", "totp"];

/// The methods this server offers every account alike: [`METHODS`], and `passkey` when
/// passkeys are on.
fn methods(app: &App) -> Vec<&'static str> {
    let mut m = METHODS.to_vec();
    if app.passkeys.is_some() {
        m.push("passkey");
    }
    m
}

/// The sign-in rules an address is under from the first step: those of the organisation that
/// holds its domain (a verified claim), else none beyond the server's. The same for every
/// address of the domain, whether or not it has an account.
async fn address_rules(app: &App, email: &str) -> Result<Rules, ApiError> {
    Ok(org_auth::for_address(&app.db, email).await?.map(|(_, rules)| rules).unwrap_or_default())
}

/// What the server offers an address: [`methods`] that its rules allow.
fn offered(app: &App, rules: &Rules) -> Vec<&'static str> {
    methods(app).into_iter().filter(|m| rules.allows(m)).collect()
}

/// What may start a sign-in: [`offered`], without passkeys when they do not verify their user
/// (then they are a second step only).
fn first_steps(app: &App, rules: &Rules) -> Vec<&'static str> {
    offered(app, rules).into_iter().filter(|m| *m != "passkey" || passkeys::verifies_user(&app.cfg)).collect()
}

fn method_not_allowed() -> ApiError {
    ApiError::forbidden("method_not_allowed", "the sign-in rules for this address do not allow this method")
}

fn rules_unmet() -> ApiError {
    ApiError::forbidden(
        "auth_rules_unmet",
        "the organisation's sign-in rules need a method this account cannot use now (its admins can say which)",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    pub email: String,
    /// The organisation to sign in to, for accounts in several (else the login asks, once every
    /// factor is done, with `status: "choose_org"`).
    #[serde(default)]
    pub org: Option<String>,
}

/// An identity provider an address may sign in through.
#[derive(Serialize, ToSchema)]
pub struct ConnectionButton {
    pub id: String,
    /// What the button says.
    pub name: String,
    /// Where the browser goes to sign in (then back to `return_to` on this site).
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct InitResponse {
    /// Methods this server offers; which ones an account needs is told after the first step.
    pub methods: Vec<&'static str>,
    /// The identity providers of the organisation holding the address's domain (the same for
    /// every address of the domain).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionButton>,
    /// Lifetime of the `x-session-token` in seconds.
    pub expires_in: i64,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    email: String,
    completed: Vec<String>,
    otp_vid: Option<String>,
    /// The passkey challenge's server-side state, until its answer comes (single use).
    #[serde(default)]
    passkey_state: Option<String>,
    /// The organisation asked for (at init or at the `org` step).
    #[serde(default)]
    org: Option<String>,
    /// The organisation the session will open in, once picked, while its rules still want a
    /// step: its rules count from then on.
    #[serde(default)]
    picked: Option<String>,
    failures: i64,
    exp: i64,
}

fn state_key(token: &str) -> String {
    format!("login:{}", crypto::sha256_hex(token.as_bytes()))
}

/// Steps an account needs: one of password/email_otp; or password then the second factor.
/// `passkey_alone` (user verification required): a passkey completes any account's login, first
/// or second. Otherwise a passkey is a possession factor: it stands for the second step.
fn missing_steps(mfa: &str, completed: &[String], passkey_alone: bool) -> Vec<&'static str> {
    let done = |m: &str| completed.iter().any(|c| c == m);
    if done("passkey") && (passkey_alone || done("password") || done("email_otp")) {
        return Vec::new();
    }
    match mfa {
        "email_otp" => ["password", "email_otp"].into_iter().filter(|m| !done(m)).collect(),
        "totp" => ["password", "totp"].into_iter().filter(|m| !done(m)).collect(),
        _ if done("password") || done("email_otp") => Vec::new(),
        _ => vec!["password", "email_otp"],
    }
}

/// What the login still needs after a successful step under `rules`: the account's own steps
/// ([`missing_steps`]) counting only methods the rules allow, then another factor when the
/// rules want two; `passkey` as an alternative whenever the account has one (told only after a
/// step succeeded). `None`: the rules cannot be met with what the account has.
async fn next_steps(
    app: &App,
    user: Option<&User>,
    mfa: &str,
    completed: &[String],
    rules: &Rules,
) -> Result<Option<Vec<&'static str>>, ApiError> {
    let counted: Vec<String> = completed.iter().filter(|m| rules.allows(m)).cloned().collect();
    let alone = passkeys::verifies_user(&app.cfg);
    let mut next = missing_steps(mfa, &counted, alone);
    if next.is_empty() && rules.mfa_required && !amr(&counted, alone).iter().any(|a| a == "mfa") {
        let factors: &[&'static str] = if mfa == "totp" { &["password", "email_otp", "totp"] } else { &["password", "email_otp"] };
        next = factors.iter().copied().filter(|m| !counted.iter().any(|c| c == m)).collect();
    }
    if next.is_empty() {
        return Ok(Some(next));
    }
    if let (Some(u), Some(_)) = (user, app.passkeys.as_ref()) {
        if passkeys::count(app, &u.id).await? > 0 {
            next.push("passkey");
        }
    }
    next.retain(|m| rules.allows(m));
    Ok(Some(next).filter(|n| !n.is_empty()))
}

/// A failed password or passkey step: counted in the login session, which dies at the tenth.
async fn failed_step(app: &App, key: &str, st: &mut LoginState, ttl_left: i64) -> Result<(), ApiError> {
    st.failures += 1;
    if st.failures >= 10 {
        app.eph.del(key).await?;
    } else {
        app.eph.put(key, &serde_json::to_string(st).expect("serializes"), ttl_left).await?;
    }
    Ok(())
}

/// `passkey_alone`: the server's passkeys verify their user (see [`missing_steps`]).
fn amr(completed: &[String], passkey_alone: bool) -> Vec<String> {
    let mut out: Vec<String> = completed
        .iter()
        .map(|m| match m.as_str() {
            "password" => "pwd",
            "email_otp" => "email",
            "passkey" => "hwk",
            _ => "otp",
        })
        .map(str::to_string)
        .collect();
    // RFC 8176: a user-verified passkey is multi-factor on its own.
    if out.len() > 1 || (passkey_alone && completed.iter().any(|c| c == "passkey")) {
        out.push("mfa".into());
    }
    out
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "the email or password is wrong")
}

/// A completed sign-in, told to the person when it comes from a new device or network. A
/// failure to remember the device never fails the sign-in.
pub(crate) async fn notify_sign_in(app: &App, user: &User, headers: &HeaderMap, ip: std::net::IpAddr) {
    if let Err(e) = crate::notify::sign_in(app, &user.id, &user.email, user_agent(headers), ip).await {
        tracing::warn!(error = %e, "sign-in device not recorded");
    }
}

/// Checks a password for an email, known or not, with lockout accounting.
async fn check_password(app: &App, email: &str, user: Option<&User>, password: &str) -> Result<(), ApiError> {
    let attempt = lockout::attempt(app, email).await?;
    let active = user.filter(|u| u.can_sign_in());
    if app.hasher.verify(password, active.map(|u| u.password_hash.as_str())).await? {
        return attempt.succeeded(app).await;
    }
    attempt.failed(app).await;
    Err(invalid_credentials())
}

/// A TOTP step with lockout accounting: `Ok` or `invalid_code` with `status`.
pub async fn totp_step(app: &App, user: &User, sealed: Option<&str>, code: &str, status: StatusCode) -> Result<(), ApiError> {
    let attempt = lockout::attempt(app, &user.email).await?;
    if check_totp(app, Some(user), sealed, code).await? {
        return attempt.succeeded(app).await;
    }
    attempt.failed(app).await;
    Err(ApiError::new(status, "invalid_code", "the code is invalid or has expired"))
}

/// Verifies a TOTP code (RFC 6238, ±1 step, each step usable once) against `sealed`, the
/// user's secret.
///
/// The same work for every account: without a user or a secret (an unknown account, an
/// account without TOTP) the code is checked against `App::dummy_totp`, a sealed random
/// secret, with the same AES-GCM opening, the same three HMACs and the same comparisons; the
/// answer is then always false. Only a matching code of a real secret reaches the database.
pub async fn check_totp(app: &App, user: Option<&User>, sealed: Option<&str>, code: &str) -> Result<bool, ApiError> {
    let (sealed, context, account, real) = match (user, sealed) {
        (Some(u), Some(s)) => (s, format!("totp:{}", u.id), u.email.clone(), true),
        _ => (app.dummy_totp.as_str(), crate::app::DUMMY_TOTP_CONTEXT.to_string(), "dummy@authgate.invalid".to_string(), false),
    };
    let secret = app.master.open(sealed, &context)?;
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec(), Some("authgate".into()), account)
        .map_err(|e| ApiError::internal(format!("totp: {e}")))?;
    let t = now() as u64;
    let current_step = (t / 30) as i64;
    let mut matched = None;
    for step in [current_step, current_step - 1, current_step + 1] {
        let expected = totp.generate(step.max(0) as u64 * 30);
        if crypto::ct_eq(expected.as_bytes(), code.trim().as_bytes()) && matched.is_none() && step > 0 {
            matched = Some(step);
        }
    }
    let (Some(step), Some(user), true) = (matched, user, real) else { return Ok(false) };
    // Replay protection: a step is accepted once, and never one older than the last.
    let n = sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
        .bind(step)
        .bind(&user.id)
        .execute(&app.db)
        .await?
        .rows_affected();
    Ok(n == 1)
}

#[utoipa::path(post, path = "/v1/auth/init", tag = "login", request_body = InitRequest,
    responses((status = 200, body = InitResponse, headers(("x-session-token" = String, description = "send back on /v1/auth/authenticate"))),
              (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn init(State(app): State<AppState>, Json(req): Json<InitRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(|| ApiError::bad_request("invalid_email", "not a valid email address"))?;
    account_rate_limit(&app, &email).await?;
    // Nothing about the account yet: it is looked up, the same way for every address, at each step.
    let token = crypto::new_secret("lst_");
    let ttl = app.cfg.login.session_token_ttl_s;
    if req.org.as_deref().is_some_and(|o| o.is_empty() || o.len() > 64) {
        return Err(ApiError::bad_request("invalid_org", "org: an organisation id"));
    }
    let state = LoginState {
        email,
        completed: Vec::new(),
        otp_vid: None,
        passkey_state: None,
        org: req.org,
        picked: None,
        failures: 0,
        exp: now() + ttl,
    };
    app.eph.put(&state_key(&token), &serde_json::to_string(&state).expect("serializes"), ttl).await?;
    // The organisation holding the address's domain: its rules and its identity providers.
    let (rules, connections) = match org_auth::for_address(&app.db, &state.email).await? {
        Some((org, rules)) if rules.allows("sso") => (rules, crate::federation::list(&app, &org).await?),
        Some((_, rules)) => (rules, Vec::new()),
        None => (Rules::default(), Vec::new()),
    };
    let methods = first_steps(&app, &rules);
    let connections = connections
        .into_iter()
        .map(|c| ConnectionButton {
            url: format!("{}/login/sso/{}", app.cfg.public_url.trim_end_matches('/'), c.id),
            id: c.id,
            name: c.name,
        })
        .collect();
    let mut resp = axum::Json(InitResponse { methods, connections, expires_in: ttl }).into_response();
    resp.headers_mut().insert("x-session-token", HeaderValue::from_str(&token).expect("base64url"));
    resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateRequest {
    /// `password`, `email_otp`, `totp`, `passkey`; `org` once every factor is done, for an
    /// account in several organisations.
    pub method: String,
    /// `org`: the organisation to sign in to (omit it to get the choices again).
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The emailed code (email_otp; omit it to have one sent) or the TOTP code.
    #[serde(default)]
    pub code: Option<String>,
    /// Cookie mode: tokens as HttpOnly cookies instead of in the body.
    #[serde(default)]
    pub cookie: bool,
    /// `passkey`: the authenticator's answer (`PublicKeyCredential.toJSON()` of
    /// `navigator.credentials.get`); omit it to get the challenge.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
}

/// An organisation the account can sign in to.
#[derive(Clone, Serialize, ToSchema)]
pub struct OrgChoice {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct StepResponse {
    /// `continue` (more steps), `code_sent`, `passkey_challenge`, `choose_org` (every factor
    /// done: pick one of `orgs` with method `org`), or `complete`.
    pub status: &'static str,
    pub completed: Vec<String>,
    /// Methods still needed; any one of them advances the login.
    pub next: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    #[schema(inline)]
    pub tokens: Option<Issued>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// `passkey_challenge`: `PublicKeyCredentialRequestOptions` in WebAuthn's JSON form (under
    /// `publicKey`), the same for every account.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
    /// `choose_org`: the organisations this account can sign in to, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orgs: Option<Vec<OrgChoice>>,
}

impl StepResponse {
    fn step(status: &'static str, completed: &[String], next: Vec<&'static str>) -> StepResponse {
        StepResponse { status, completed: completed.to_vec(), next, tokens: None, csrf_token: None, options: None, orgs: None }
    }
}

/// Which organisation a completed login opens its session in.
pub enum OrgPick {
    Chosen(String),
    /// Several are possible and none was named.
    Choose(Vec<OrgChoice>),
}

fn org_not_available() -> ApiError {
    ApiError::forbidden("org_not_available", "this account cannot sign in to that organisation")
}

/// The organisation for a user who completed every factor: `wanted` when it is one of their
/// usable memberships, the only one when there is one, else the choices. With none usable, a
/// suspended organisation is named (the session refuses it with `org_suspended`).
pub async fn pick_org(app: &App, user: &User, wanted: Option<&str>) -> Result<OrgPick, ApiError> {
    let all = crate::members::of_user(&app.db, &user.id).await?;
    let usable: Vec<OrgChoice> =
        all.iter().filter(|m| m.usable()).map(|m| OrgChoice { id: m.org_id.clone(), name: m.org_name.clone() }).collect();
    if let Some(w) = wanted {
        return match all.iter().find(|m| m.org_id == w && !m.disabled) {
            Some(m) => Ok(OrgPick::Chosen(m.org_id.clone())),
            None => Err(org_not_available()),
        };
    }
    match usable.len() {
        1 => Ok(OrgPick::Chosen(usable[0].id.clone())),
        0 => all
            .iter()
            .find(|m| !m.disabled)
            .map(|m| OrgPick::Chosen(m.org_id.clone()))
            .ok_or_else(|| ApiError::unauthorized("account_disabled", "the account is not active in any organisation")),
        _ => Ok(OrgPick::Choose(usable)),
    }
}

#[utoipa::path(post, path = "/v1/auth/authenticate", tag = "login", request_body = AuthenticateRequest,
    params(("x-session-token" = String, Header, description = "from /v1/auth/init")),
    responses((status = 200, body = StepResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "org_not_available, org_suspended, method_not_allowed, auth_rules_unmet"), (status = 429, body = ErrorBody)))]
pub async fn authenticate(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(req): Json<AuthenticateRequest>,
) -> ApiResult<Response> {
    let token = headers.get("x-session-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    let expired =
        || ApiError::unauthorized("login_session_invalid", "the login session is unknown or expired: start again with /v1/auth/init");
    if !token.starts_with("lst_") || token.len() > 100 {
        return Err(expired());
    }
    let key = state_key(token);
    let mut st: LoginState = match app.eph.get(&key).await? {
        Some(raw) => serde_json::from_str(&raw).map_err(|e| ApiError::internal(format!("login state: {e}")))?,
        None => return Err(expired()),
    };
    if st.exp <= now() {
        return Err(expired());
    }
    if req.cookie && !app.cfg.cookies.enabled {
        return Err(ApiError::bad_request("cookie_mode_disabled", "cookie mode is not enabled on this server"));
    }
    account_rate_limit(&app, &st.email).await?;
    // Until a step succeeds, every account (unknown, without a second step, with email_otp, with
    // TOTP) gets the same answers from the same work: the same lookup by email, every method
    // accepted as the first step, the full method list as `next`, a TOTP code checked against a
    // dummy secret when the account has none (`check_totp`), a decoy code for unknown accounts,
    // the same lockout accounting. What an account needs is told only after a step succeeded.
    let user = users::by_email(&app.db, &st.email).await?.filter(User::can_sign_in);
    let mfa = user.as_ref().map(|u| u.mfa.clone()).unwrap_or_else(|| "none".to_string());
    let mfa = mfa.as_str();
    // The address's rules, and once the organisation is picked, its rules too.
    let mut rules = address_rules(&app, &st.email).await?;
    if let Some(org) = &st.picked {
        rules = rules.and(&org_auth::rules(&app.db, org).await?);
    }
    let offered = offered(&app, &rules);
    let before = if st.completed.is_empty() {
        first_steps(&app, &rules)
    } else {
        next_steps(&app, user.as_ref(), mfa, &st.completed, &rules).await?.unwrap_or_default()
    };
    let save = |st: &LoginState| serde_json::to_string(st).expect("serializes");
    let ttl_left = (st.exp - now()).max(1);
    if req.org.is_some() && st.picked.is_none() {
        st.org = req.org.clone();
    }
    if req.method == "org" {
        // The last step of an account in several organisations: only once every factor is done.
        if user.is_none() || st.completed.is_empty() || !before.is_empty() || st.picked.is_some() {
            return Err(ApiError::bad_request("method_not_allowed_now", "this method is not needed at this point of the login"));
        }
    } else {
        if methods(&app).contains(&req.method.as_str()) && !offered.contains(&req.method.as_str()) {
            return Err(method_not_allowed());
        }
        if let Some(answer) = authenticate_factor(&app, &req, &key, &mut st, user.as_ref(), &offered, before, ttl_left).await? {
            return Ok(answer);
        }
    }
    let next = next_steps(&app, user.as_ref(), mfa, &st.completed, &rules).await?.ok_or_else(rules_unmet)?;
    let Some(user) = user.filter(|_| next.is_empty()) else {
        app.eph.put(&key, &save(&st), ttl_left).await?;
        return Ok(axum::Json(StepResponse::step("continue", &st.completed, next)).into_response());
    };
    let org = match &st.picked {
        Some(org) => org.clone(),
        None => match pick_org(&app, &user, st.org.as_deref()).await {
            Ok(OrgPick::Chosen(org)) => {
                // The organisation's rules may want more than the account's.
                let theirs = rules.and(&org_auth::rules(&app.db, &org).await?);
                let more = next_steps(&app, Some(&user), mfa, &st.completed, &theirs).await?.ok_or_else(rules_unmet)?;
                if !more.is_empty() {
                    st.picked = Some(org);
                    app.eph.put(&key, &save(&st), ttl_left).await?;
                    return Ok(axum::Json(StepResponse::step("continue", &st.completed, more)).into_response());
                }
                org
            }
            Ok(OrgPick::Choose(orgs)) => {
                app.eph.put(&key, &save(&st), ttl_left).await?;
                let body = StepResponse { orgs: Some(orgs), ..StepResponse::step("choose_org", &st.completed, vec!["org"]) };
                return Ok(axum::Json(body).into_response());
            }
            Err(e) => {
                // A name that is not theirs: the factors stay done, the choice is asked again.
                st.org = None;
                app.eph.put(&key, &save(&st), ttl_left).await?;
                return Err(e);
            }
        },
    };
    // Done: the login session is spent (atomically: a parallel request cannot reuse it).
    if app.eph.take(&key).await?.is_none() {
        return Err(expired());
    }
    lockout::clear(&app, &st.email).await?;
    let ip_s = ip.to_string();
    let issued = sessions::create(
        &app,
        &user,
        &org,
        amr(&st.completed, passkeys::verifies_user(&app.cfg)),
        SessionMeta { user_agent: user_agent(&headers), ip: Some(&ip_s), cookie_mode: req.cookie, client: None },
    )
    .await?;
    notify_sign_in(&app, &user, &headers, ip).await;
    metrics::counter!("authgate_logins_total", "flow" => "multi_step").increment(1);
    Ok(token_response(&app, issued, st.completed, req.cookie))
}

/// One factor step of [`authenticate`]. `Ok(Some(response))`: the step answered by itself
/// (a code sent, a passkey challenge); `Ok(None)`: the factor is done (pushed on
/// `st.completed`); `Err`: refused.
#[allow(clippy::too_many_arguments)]
async fn authenticate_factor(
    app: &App,
    req: &AuthenticateRequest,
    key: &str,
    st: &mut LoginState,
    user: Option<&User>,
    offered: &[&'static str],
    before: Vec<&'static str>,
    ttl_left: i64,
) -> Result<Option<Response>, ApiError> {
    let save = |st: &LoginState| serde_json::to_string(st).expect("serializes");
    if !offered.contains(&req.method.as_str()) {
        return Err(ApiError::bad_request("unknown_method", "method must be one of password, email_otp, totp, passkey (when enabled)"));
    }
    // A method counts only while it is still needed (no repeating a finished step).
    if !before.contains(&req.method.as_str()) {
        return Err(ApiError::bad_request("method_not_allowed_now", "this method is not needed at this point of the login"));
    }
    let invalid_code = || ApiError::unauthorized("invalid_code", "the code is invalid or has expired");
    match req.method.as_str() {
        "password" => {
            let password = req.password.as_deref().ok_or_else(|| ApiError::bad_request("invalid_request", "password is required"))?;
            if let Err(e) = check_password(app, &st.email, user, password).await {
                failed_step(app, key, st, ttl_left).await?;
                return Err(e);
            }
            st.completed.push("password".into());
        }
        "email_otp" => match req.code.as_deref() {
            None => {
                lockout::check(app, &st.email).await?;
                let mail = user.map(|_| ("Your sign-in code", "Your {product} sign-in code is {code}. It expires in {minutes} minutes. If you did not try to sign in, ignore this email."));
                let subject = user.map(|u| u.id.as_str()).unwrap_or("");
                let (vid, _) = codes::issue(app, NewCode { purpose: "login", account: &st.email, subject, data: None, mail }).await?;
                st.otp_vid = Some(vid);
                app.eph.put(key, &save(st), ttl_left).await?;
                return Ok(Some(axum::Json(StepResponse::step("code_sent", &st.completed, before)).into_response()));
            }
            Some(code) => {
                let vid = st
                    .otp_vid
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("code_not_requested", "request a code first (email_otp without code)"))?;
                let entry = codes::verify(app, &vid, code, "login", StatusCode::UNAUTHORIZED).await?;
                if user.is_none_or(|u| u.id != entry.subject) {
                    return Err(invalid_code());
                }
                st.otp_vid = None;
                st.completed.push("email_otp".into());
            }
        },
        "passkey" => match req.credential.clone() {
            None => {
                let (options, state) = passkeys::start_sign_in(app, user.map(|u| u.id.as_str())).await?;
                st.passkey_state = Some(state);
                app.eph.put(key, &save(st), ttl_left).await?;
                let body = StepResponse { options: Some(options), ..StepResponse::step("passkey_challenge", &st.completed, before) };
                return Ok(Some(axum::Json(body).into_response()));
            }
            Some(credential) => {
                // The challenge is spent by its first answer, right or wrong.
                let state = st.passkey_state.take().ok_or_else(|| {
                    ApiError::bad_request("challenge_not_requested", "request a challenge first (passkey without credential)")
                })?;
                let owner = match passkeys::finish_sign_in(app, &state, credential).await {
                    Ok(owner) => Some(owner),
                    Err(e) if e.status.is_server_error() => return Err(e),
                    Err(_) => None,
                };
                // The passkey must be this login's account's: a valid passkey of another account
                // does not sign in the address the login started with.
                if owner.is_none() || user.map(|u| &u.id) != owner.as_ref() {
                    failed_step(app, key, st, ttl_left).await?;
                    return Err(ApiError::unauthorized("invalid_credentials", "the passkey was not accepted"));
                }
                st.completed.push("passkey".into());
            }
        },
        _ => {
            let code = req.code.as_deref().ok_or_else(|| ApiError::bad_request("invalid_request", "code is required"))?;
            let attempt = lockout::attempt(app, &st.email).await?;
            let secret = user.and_then(|u| u.totp_secret.as_deref());
            if !check_totp(app, user, secret, code).await? {
                attempt.failed(app).await;
                return Err(invalid_code());
            }
            attempt.succeeded(app).await?;
            st.completed.push("totp".into());
        }
    }
    Ok(None)
}

/// A completed login: tokens in the body, or (cookie mode) in HttpOnly cookies with the CSRF
/// token in the body.
pub fn token_response(app: &App, issued: Issued, completed: Vec<String>, cookie: bool) -> Response {
    if cookie {
        let cookies = session_cookies(app, &issued);
        let body = serde_json::json!({
            "status": "complete", "completed": completed, "next": [],
            "token_type": "cookie", "session_id": issued.session_id, "expires_in": issued.expires_in,
            "csrf_token": super::auth::csrf_token(app, &issued.session_id),
        });
        let mut resp = axum::Json(body).into_response();
        for c in cookies {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, c);
        }
        resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        resp
    } else {
        let mut resp =
            axum::Json(StepResponse { tokens: Some(issued), ..StepResponse::step("complete", &completed, Vec::new()) }).into_response();
        resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        resp
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortFormRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerificationResponse {
    pub verification_id: String,
    pub expires_in: i64,
}

#[utoipa::path(post, path = "/v1/sessions", tag = "login", request_body = ShortFormRequest,
    responses((status = 202, body = VerificationResponse, description = "password right: a code was emailed"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "method_not_allowed: the address's rules forbid a password or an emailed code"),
              (status = 429, body = ErrorBody)))]
pub async fn short_form(State(app): State<AppState>, Json(req): Json<ShortFormRequest>) -> ApiResult<Response> {
    let email = normalize_email(&req.email).ok_or_else(invalid_credentials)?;
    account_rate_limit(&app, &email).await?;
    // The short form is a password and an emailed code: both must be allowed for the address.
    let rules = address_rules(&app, &email).await?;
    if !rules.allows("password") || !rules.allows("email_otp") {
        return Err(method_not_allowed());
    }
    let user = users::by_email(&app.db, &email).await?;
    check_password(&app, &email, user.as_ref(), &req.password).await?;
    let user = user.expect("password verified only for existing users");
    let (vid, ttl) = codes::issue(
        &app,
        NewCode {
            purpose: "session",
            account: &user.email,
            subject: &user.id,
            data: None,
            mail: Some(("Your sign-in code", "Your {product} sign-in code is {code}. It expires in {minutes} minutes. If you did not try to sign in, change your password.")),
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(VerificationResponse { verification_id: vid, expires_in: ttl })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortFormVerifyRequest {
    pub verification_id: String,
    pub code: String,
    /// Also required when the account has TOTP enabled.
    #[serde(default)]
    pub totp: Option<String>,
    /// The organisation to sign in to; required for an account in several (`org_required`).
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub cookie: bool,
}

#[utoipa::path(post, path = "/v1/sessions/verify", tag = "login", request_body = ShortFormVerifyRequest,
    responses((status = 200, body = StepResponse), (status = 400, body = ErrorBody, description = "org_required"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "org_not_available, org_suspended, auth_rules_unmet"), (status = 429, body = ErrorBody)))]
pub async fn short_form_verify(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(req): Json<ShortFormVerifyRequest>,
) -> ApiResult<Response> {
    if req.cookie && !app.cfg.cookies.enabled {
        return Err(ApiError::bad_request("cookie_mode_disabled", "cookie mode is not enabled on this server"));
    }
    let entry = codes::verify(&app, &req.verification_id, &req.code, "session", StatusCode::UNAUTHORIZED).await?;
    let user = users::by_id(&app.db, &entry.subject)
        .await?
        .filter(User::can_sign_in)
        .ok_or_else(|| ApiError::unauthorized("invalid_code", "the code is invalid or has expired"))?;
    let mut completed = vec!["password".to_string(), "email_otp".to_string()];
    if user.mfa == "totp" {
        let code = req
            .totp
            .as_deref()
            .ok_or_else(|| ApiError::unauthorized("totp_required", "this account also needs its TOTP code (field totp)"))?;
        totp_step(&app, &user, user.totp_secret.as_deref(), code, StatusCode::UNAUTHORIZED).await?;
        completed.push("totp".into());
    }
    let org = match pick_org(&app, &user, req.org.as_deref()).await? {
        OrgPick::Chosen(org) => org,
        OrgPick::Choose(_) => {
            return Err(ApiError::bad_request(
                "org_required",
                "this account belongs to several organisations: name one in org (or use /v1/auth/init, which asks)",
            ))
        }
    };
    // The address's rules and the organisation's, for what this form proved.
    let rules = address_rules(&app, &user.email).await?.and(&org_auth::rules(&app.db, &org).await?);
    let done = next_steps(&app, Some(&user), &user.mfa, &completed, &rules).await?;
    if !completed.iter().all(|m| rules.allows(m)) || done.is_none_or(|next| !next.is_empty()) {
        return Err(rules_unmet());
    }
    lockout::clear(&app, &user.email).await?;
    let ip_s = ip.to_string();
    let issued = sessions::create(
        &app,
        &user,
        &org,
        amr(&completed, passkeys::verifies_user(&app.cfg)),
        SessionMeta { user_agent: user_agent(&headers), ip: Some(&ip_s), cookie_mode: req.cookie, client: None },
    )
    .await?;
    notify_sign_in(&app, &user, &headers, ip).await;
    metrics::counter!("authgate_logins_total", "flow" => "short_form").increment(1);
    Ok(token_response(&app, issued, completed, req.cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn steps() {
        assert_eq!(missing_steps("none", &[], true), vec!["password", "email_otp"]);
        assert!(missing_steps("none", &s(&["password"]), true).is_empty());
        assert!(missing_steps("none", &s(&["email_otp"]), true).is_empty());
        assert_eq!(missing_steps("email_otp", &s(&["password"]), true), vec!["email_otp"]);
        assert_eq!(missing_steps("email_otp", &s(&["email_otp"]), true), vec!["password"]);
        assert_eq!(missing_steps("totp", &s(&["password"]), true), vec!["totp"]);
        assert!(missing_steps("totp", &s(&["password", "totp"]), true).is_empty());
        assert_eq!(amr(&s(&["password", "totp"]), true), s(&["pwd", "otp", "mfa"]));
    }

    #[test]
    fn a_passkey_completes_any_account_and_is_multi_factor() {
        for mfa in ["none", "email_otp", "totp"] {
            assert!(missing_steps(mfa, &s(&["passkey"]), true).is_empty(), "{mfa}");
            assert!(missing_steps(mfa, &s(&["password", "passkey"]), true).is_empty(), "{mfa}");
        }
        assert_eq!(amr(&s(&["passkey"]), true), s(&["hwk", "mfa"]));
        assert_eq!(amr(&s(&["password", "passkey"]), true), s(&["pwd", "hwk", "mfa"]));
        // Without a passkey, one factor is not multi-factor.
        assert_eq!(amr(&s(&["password"]), true), s(&["pwd"]));
    }

    #[test]
    fn a_passkey_without_user_verification_is_one_factor_and_never_the_first() {
        for mfa in ["none", "email_otp", "totp"] {
            assert!(!missing_steps(mfa, &s(&["passkey"]), false).is_empty(), "{mfa}");
            assert!(missing_steps(mfa, &s(&["password", "passkey"]), false).is_empty(), "{mfa}");
            assert!(missing_steps(mfa, &s(&["email_otp", "passkey"]), false).is_empty(), "{mfa}");
        }
        assert_eq!(amr(&s(&["passkey"]), false), s(&["hwk"]));
        assert_eq!(amr(&s(&["password", "passkey"]), false), s(&["pwd", "hwk", "mfa"]));
    }
}

#[cfg(test)]
mod totp_tests;
