//! The authorization endpoint (`/oauth2/authorize`, OpenID Connect code flow) and RP-initiated
//! logout, as pages: the request is checked and kept server-side, the person signs in through
//! the login pages (back to `/oauth2/continue`), consents to third-party apps, and the browser
//! returns to the client's registered redirect URI with a code, `state` and `iss` (RFC 9207).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::guard::same_origin;
use super::{Browser, Failure, Form, FormTarget, PagesState};
use crate::crypto;
use crate::db::now;
use crate::http::auth::{authenticate, csrf_token, AuthMethod};
use crate::oidc::grants::{self, SignedIn};
use crate::oidc::{with_query, AuthError, AuthRequest, Client};
use crate::users::{self, User};

const REQUEST_PREFIX: &str = "oauthreq:";

/// The browser's signed-in session, as the access cookie says.
struct Session {
    sid: String,
    user: User,
    /// The organisation the session is for.
    org: String,
    auth_time: i64,
    amr: String,
}

impl super::Pages {
    /// `/oauth2/continue?id=…` of a kept request.
    fn continue_path(&self, id: &str) -> String {
        self.path(&format!("/oauth2/continue?id={id}"))
    }

    /// The form target a page must allow when its form ends in a redirect to a client (browsers
    /// apply `form-action` to every redirect after a form): the origin of the redirect URI of
    /// the request `return_to` continues, if it is one.
    pub(super) async fn oauth_form_target(&self, return_to: &str) -> Option<FormTarget> {
        let id = return_to.strip_prefix(&self.continue_path(""))?;
        let req = self.load_request(id).await?;
        FormTarget::of(&req.redirect_uri)
    }

    async fn load_request(&self, id: &str) -> Option<AuthRequest> {
        if id.len() != 43 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        let raw = self.app.eph.get(&format!("{REQUEST_PREFIX}{id}")).await.ok()??;
        serde_json::from_str(&raw).ok()
    }

    async fn session(&self, browser: &Browser) -> Option<Session> {
        let caller = authenticate(&self.app, &axum::http::Method::GET, &browser.headers).await.ok()?;
        if caller.method != AuthMethod::Cookie || caller.client_id.is_some() {
            return None;
        }
        let sid = caller.sid?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT created_at, amr FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND client_id IS NULL",
        )
        .bind(&sid)
        .bind(&caller.sub)
        .fetch_optional(&self.app.db)
        .await
        .ok()?;
        let (auth_time, amr) = row?;
        let user = users::by_id(&self.app.db, &caller.sub).await.ok()?.filter(|u| u.status == "active")?;
        let org = caller.org?;
        Some(Session { sid, user, org, auth_time, amr })
    }

    /// Back to the client with an error (RFC 6749 §4.1.2.1).
    fn to_client_error(&self, req_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
        self.back_to_client(req_uri, vec![("error", error), ("error_description", description)], state)
    }

    /// The redirect back to a client: `params`, then `state` when the request had one, then
    /// `iss` (RFC 9207) — for a code and for an error alike.
    fn back_to_client<'a>(&'a self, req_uri: &str, mut params: Vec<(&'a str, &'a str)>, state: Option<&'a str>) -> Response {
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", self.app.issuer()));
        self.redirect(&with_query(req_uri, &params), Vec::new())
    }

    /// Where a kept request stands: sign in first, consent, or done (a code for the client).
    async fn proceed(&self, browser: &Browser, id: &str, req: AuthRequest) -> Response {
        let state = req.state.as_deref();
        let Some(client) = Client::load(&self.app.db, &req.client_id).await.ok().flatten() else {
            return self.error_page(Failure::Page(StatusCode::BAD_REQUEST, "invalid_client", "this app is no longer registered"));
        };
        let session = self.session(browser).await.filter(|s| req.session_fresh_enough(&s.sid, s.auth_time, now()));
        let Some(session) = session else {
            if req.prompt_none {
                return self.to_client_error(&req.redirect_uri, state, "login_required", "the person must sign in");
            }
            let back = self.continue_path(id);
            let target = FormTarget::of(&req.redirect_uri);
            // A session that only lost its access cookie resumes, unless a new sign-in is asked for.
            let resp = if req.prompt_login || req.max_age.is_some() {
                self.to_login_then(&back, req.login_hint.as_deref())
            } else {
                self.resume_or_login_to(browser, &back, req.login_hint.as_deref())
            };
            return FormTarget::apply(resp, target);
        };
        let asks_consent = !client.trusted_by(&session.org)
            && (req.prompt_consent || !grants::consented(&self.app, &session.user.id, &client.id, &req.scope).await.unwrap_or(false));
        if asks_consent {
            if req.prompt_none {
                return self.to_client_error(&req.redirect_uri, state, "consent_required", "the person must consent first");
            }
            return self.consent_page(id, &req, &client, &session);
        }
        self.finish(id, &req, &session).await
    }

    fn consent_page(&self, id: &str, req: &AuthRequest, client: &Client, session: &Session) -> Response {
        let mut ctx = self.ctx("Allow access", &csrf_token(&self.app, &session.sid));
        ctx.insert("client_name".into(), json!(client.name));
        ctx.insert("client_host".into(), json!(crate::config::origin_of(&req.redirect_uri)));
        ctx.insert("email".into(), json!(session.user.email));
        ctx.insert("request_id".into(), json!(id));
        ctx.insert("scopes".into(), json!(scope_texts(&req.scope)));
        FormTarget::apply(self.html("consent.html", ctx, Vec::new(), None), FormTarget::of(&req.redirect_uri))
    }

    /// A code for the client: the request is spent, the browser goes back with it.
    async fn finish(&self, id: &str, req: &AuthRequest, session: &Session) -> Response {
        if self.app.eph.take(&format!("{REQUEST_PREFIX}{id}")).await.ok().flatten().is_none() {
            return self.expired();
        }
        let who = SignedIn { user: &session.user, org: &session.org, auth_time: session.auth_time, amr: &session.amr };
        let code = match grants::issue_code(&self.app, req, &who).await {
            Ok(c) => c,
            Err(e) => return self.to_client_error(&req.redirect_uri, req.state.as_deref(), "server_error", e.message.as_ref()),
        };
        self.back_to_client(&req.redirect_uri, vec![("code", code.as_str())], req.state.as_deref())
    }

    fn expired(&self) -> Response {
        self.error_page(Failure::Page(
            StatusCode::BAD_REQUEST,
            "authorization_request_expired",
            "this sign-in request has expired: go back to the app and start again",
        ))
    }
}

/// What each scope lets the app see, for the consent page.
fn scope_texts(scope: &[String]) -> Vec<String> {
    let mut texts = vec!["Know who you are (your account id and organisation)".to_string()];
    for s in scope {
        match s.as_str() {
            "openid" | "profile" => {}
            "email" => texts.push("See your email address".into()),
            "offline_access" => texts.push("Stay signed in when you are not using it".into()),
            other => texts.push(format!("Use the \"{other}\" permission")),
        }
    }
    texts
}

/// `GET /oauth2/authorize` (query) and `POST /oauth2/authorize` (form, OpenID Connect Core §3.1.2.1).
pub async fn authorize_get(State(pages): State<PagesState>, browser: Browser, Query(params): Query<Vec<(String, String)>>) -> Response {
    authorize(&pages, &browser, params).await
}

pub async fn authorize_post(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    authorize(&pages, &browser, form.0).await
}

async fn authorize(pages: &super::Pages, browser: &Browser, params: Vec<(String, String)>) -> Response {
    let client_id = params.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str()).unwrap_or("");
    let client = Client::load(&pages.app.db, client_id).await.ok().flatten();
    let mut req = match AuthRequest::parse(&params, client.as_ref(), now()) {
        Ok(r) => r,
        Err(AuthError::Page(code, message)) => return pages.error_page(Failure::Page(StatusCode::BAD_REQUEST, code, message)),
        Err(AuthError::Redirect(code, message)) => {
            // The redirect URI was checked against the client before any such error.
            let uri = params.iter().find(|(k, _)| k == "redirect_uri").map(|(_, v)| v.as_str()).unwrap_or("");
            let state = params.iter().find(|(k, _)| k == "state").map(|(_, v)| v.as_str()).filter(|s| s.len() <= 1024 && !s.is_empty());
            return pages.to_client_error(uri, state, code, message);
        }
    };
    if req.prompt_login {
        req.session_to_replace = pages.session(browser).await.map(|s| s.sid);
    }
    let id = auth_core::b64::encode(&crypto::random_bytes(32));
    let saved = serde_json::to_string(&req).unwrap_or_default();
    if let Err(e) = pages.app.eph.put(&format!("{REQUEST_PREFIX}{id}"), &saved, pages.app.cfg.oidc.request_ttl_s).await {
        tracing::error!(error = %e, "authorization request not kept");
        return pages.to_client_error(&req.redirect_uri, req.state.as_deref(), "temporarily_unavailable", "try again shortly");
    }
    pages.proceed(browser, &id, req).await
}

#[derive(Deserialize)]
pub struct ContinueQuery {
    id: String,
}

/// Where the login pages return to: the kept request, now with a session.
pub async fn resume_request(State(pages): State<PagesState>, browser: Browser, Query(q): Query<ContinueQuery>) -> Response {
    match pages.load_request(&q.id).await {
        Some(req) => pages.proceed(&browser, &q.id, req).await,
        None => pages.expired(),
    }
}

/// The consent form: same origin, the session's CSRF token, then allow (remembered) or deny.
pub async fn consent(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let id = form.get("request").unwrap_or("");
    let Some(req) = pages.load_request(id).await else { return pages.expired() };
    if let Err(r) = same_origin(&pages.app, &browser.headers) {
        return pages.error_page(r.into());
    }
    let Some(session) = pages.session(&browser).await else {
        return pages.to_login_then(&pages.continue_path(id), None);
    };
    if !crypto::ct_eq(form.get("csrf").unwrap_or("").as_bytes(), csrf_token(&pages.app, &session.sid).as_bytes()) {
        return pages.error_page(Failure::Page(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            "this form has expired: reload the page and try again",
        ));
    }
    if form.get("decision") != Some("allow") {
        let _ = pages.app.eph.del(&format!("{REQUEST_PREFIX}{id}")).await;
        return pages.to_client_error(&req.redirect_uri, req.state.as_deref(), "access_denied", "the person did not allow access");
    }
    if let Err(e) = grants::remember_consent(&pages.app, &session.user.id, &req.client_id, &req.scope).await {
        return pages.error_page(Failure::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "consent_not_saved",
            if e.status.is_server_error() { "try again shortly" } else { "the consent could not be saved" },
        ));
    }
    pages.finish(id, &req, &session).await
}

/// Where RP-initiated logout may send the browser: a `post_logout_redirect_uri` registered
/// exactly by the client named by `client_id` (or, without it, by the `id_token_hint`'s
/// audience — read unverified, since it only chooses whose list is searched).
async fn post_logout_target(pages: &super::Pages, params: &[(String, String)]) -> Result<Option<String>, Failure<'static>> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let Some(uri) = get("post_logout_redirect_uri") else { return Ok(None) };
    let hinted = get("id_token_hint").and_then(hint_audience);
    let client_id = get("client_id").map(str::to_string).or(hinted);
    let refused = Failure::Page(
        StatusCode::BAD_REQUEST,
        "invalid_post_logout_redirect_uri",
        "post_logout_redirect_uri is not registered for this app",
    );
    let Some(client_id) = client_id else { return Err(refused) };
    match Client::load(&pages.app.db, &client_id).await.ok().flatten() {
        Some(c) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => Ok(Some(uri.to_string())),
        _ => Err(refused),
    }
}

/// The `aud` of an ID token, unverified.
fn hint_audience(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&auth_core::b64::decode(payload.as_bytes())?).ok()?;
    match &claims["aud"] {
        serde_json::Value::String(a) => Some(a.clone()),
        serde_json::Value::Array(a) => a.first()?.as_str().map(str::to_string),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
pub struct LogoutQuery {
    post_logout_redirect_uri: Option<String>,
    client_id: Option<String>,
    id_token_hint: Option<String>,
    state: Option<String>,
}

impl LogoutQuery {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (k, val) in [
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("client_id", &self.client_id),
            ("id_token_hint", &self.id_token_hint),
            ("state", &self.state),
        ] {
            if let Some(x) = val {
                v.push((k.to_string(), x.clone()));
            }
        }
        v
    }
}

/// `GET /oauth2/logout` (end_session_endpoint): asks the person to confirm — a link on another
/// site must not sign anyone out by itself — or, without a session, goes straight on.
pub async fn logout_page(State(pages): State<PagesState>, browser: Browser, Query(q): Query<LogoutQuery>) -> Response {
    let params = q.pairs();
    let target = match post_logout_target(&pages, &params).await {
        Ok(t) => t,
        Err(f) => return pages.error_page(f),
    };
    let state = q.state.as_deref().filter(|s| s.len() <= 1024);
    let Some(session) = pages.session(&browser).await else {
        return match &target {
            Some(uri) => pages.redirect(&after_logout(uri, state), Vec::new()),
            None => pages.redirect(&pages.path("/login?done=logout"), Vec::new()),
        };
    };
    let mut ctx = pages.ctx("Sign out", &csrf_token(&pages.app, &session.sid));
    ctx.insert("email".into(), json!(session.user.email));
    ctx.insert("post_logout_redirect_uri".into(), json!(target));
    ctx.insert("client_id".into(), json!(q.client_id));
    ctx.insert("id_token_hint".into(), json!(q.id_token_hint));
    ctx.insert("state".into(), json!(state));
    let resp = pages.html("logout.html", ctx, Vec::new(), None);
    FormTarget::apply(resp, target.as_deref().and_then(FormTarget::of))
}

fn after_logout(uri: &str, state: Option<&str>) -> String {
    match state {
        Some(s) => with_query(uri, &[("state", s)]),
        None => uri.to_string(),
    }
}

/// The confirmation: same origin and the session's CSRF token, then the session ends (the API's
/// logout: revoked, cookies cleared) and the browser goes to the client's registered URI.
pub async fn logout_confirm(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let target = match post_logout_target(&pages, &form.0).await {
        Ok(t) => t,
        Err(f) => return pages.error_page(f),
    };
    if let Err(r) = same_origin(&pages.app, &browser.headers) {
        return pages.error_page(r.into());
    }
    let csrf = form.get("csrf").unwrap_or("");
    let reply = pages.api.call(&browser, axum::http::Method::POST, "/v1/sessions/logout", None, &[("x-csrf-token", csrf)]).await;
    if !reply.ok() && reply.status != StatusCode::UNAUTHORIZED {
        return pages.error_page(Failure::Api(&reply));
    }
    let state = form.get("state").filter(|s| s.len() <= 1024);
    let cookies = reply.set_cookies().cloned().collect();
    match target {
        Some(uri) => pages.redirect(&after_logout(&uri, state), cookies),
        None => pages.redirect(&pages.path("/login?done=logout"), cookies),
    }
}
