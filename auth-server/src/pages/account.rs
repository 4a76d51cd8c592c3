//! The account page: who I am, my sessions (sign one out), the apps I allowed (take one back), the
//! identity providers I sign in with (link one of my organisation's, unlink), my passkeys (added by the page's
//! script through the JSON API; removed here), my API keys (create with the emailed code, see
//! the secret once, revoke), sign out. Forms carry the session's CSRF token,
//! which the API checks (cookie mode): the page adds only the same-origin check.

use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::{same_origin, PageCookie};
use super::{notice, Browser, Failure, Form, PagesState, Reply};
use crate::http::auth::{cookie_names, get_cookie};

/// What a code form says and where it posts.
pub(super) struct CodeForm {
    pub title: &'static str,
    pub lead: &'static str,
    pub action: &'static str,
    pub button: &'static str,
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

impl super::Pages {
    /// The session's CSRF token (the readable cookie cookie mode sets), for the forms.
    pub(super) fn session_csrf(&self, browser: &Browser) -> String {
        get_cookie(&browser.headers, &cookie_names(&self.app).csrf).unwrap_or("").to_string()
    }

    /// The access cookie lives minutes, the session days: while the session's CSRF cookie is
    /// there, a page that lost its access cookie first resumes the session (a form to the
    /// refresh cookie's path, sent by the page's script or a button), else goes to the login.
    pub(super) fn resume_or_login(&self, browser: &Browser) -> Response {
        self.resume_or_login_to(browser, &self.path("/account"), None)
    }

    /// As [`Self::resume_or_login`], back to `return_to` (a path of ours) afterwards.
    pub(super) fn resume_or_login_to(&self, browser: &Browser, return_to: &str, email: Option<&str>) -> Response {
        if self.session_csrf(browser).is_empty() {
            return self.to_login_then(return_to, email);
        }
        let (csrf, set) = super::guard::form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Continuing your session", &csrf);
        ctx.insert("return_to".into(), json!(return_to));
        self.html("resume.html", ctx, set.into_iter().collect(), None)
    }

    fn to_login(&self) -> Response {
        self.to_login_then(&self.path("/account"), None)
    }

    /// The login page, then `return_to`; `email` fills in the address (a `login_hint`).
    pub(super) fn to_login_then(&self, return_to: &str, email: Option<&str>) -> Response {
        let mut q = vec![("return_to", return_to)];
        if let Some(e) = email {
            q.push(("email", e));
        }
        let q = serde_urlencoded::to_string(q).unwrap_or_default();
        self.redirect(&self.path(&format!("/login?{q}")), Vec::new())
    }

    /// The account page, or the way to the login when the session is gone.
    pub(super) async fn account(&self, browser: &Browser, done: Option<&str>, failure: Option<Failure<'_>>) -> Response {
        let me = self.api.get(browser, "/v1/me").await;
        if me.status == StatusCode::UNAUTHORIZED {
            return self.resume_or_login(browser);
        }
        if !me.ok() {
            return self.error_page(Failure::Api(&me));
        }
        let sessions = self.api.get(browser, "/v1/sessions").await;
        let keys = self.api.get(browser, "/v1/api-keys").await;
        let passkeys_enabled = self.app.passkeys.is_some();
        let passkeys = if passkeys_enabled { Some(self.api.get(browser, "/v1/me/passkeys").await) } else { None };
        let apps = self.api.get(browser, "/v1/me/consents").await;
        let identities = self.api.get(browser, "/v1/me/identities").await;
        let providers = self.api.get(browser, "/v1/me/providers").await;
        for reply in
            [Some(&sessions), Some(&keys), passkeys.as_ref(), Some(&apps), Some(&identities), Some(&providers)].into_iter().flatten()
        {
            if !reply.ok() {
                return self.error_page(Failure::Api(reply));
            }
        }
        let mut ctx = self.ctx("Your account", &self.session_csrf(browser));
        ctx.insert("me".into(), me.body.clone());
        ctx.insert("sessions".into(), sessions.body.clone());
        ctx.insert("keys".into(), keys.body.clone());
        ctx.insert("passkeys_enabled".into(), json!(passkeys_enabled));
        ctx.insert("passkeys".into(), passkeys.map_or(Value::Null, |p| p.body));
        ctx.insert("apps".into(), apps.body.clone());
        ctx.insert("identities".into(), identities.body.clone());
        ctx.insert("providers".into(), linkable(&identities.body, &providers.body));
        ctx.insert("notice".into(), json!(notice(done)));
        ctx.insert("max_days".into(), json!(self.app.cfg.api_keys.max_lifetime_s / 86400));
        self.html("account.html", ctx, Vec::new(), failure)
    }

    /// A state-changing account form: same origin, then the API call with the form's CSRF token.
    pub(super) async fn act(
        &self,
        browser: &Browser,
        form: &Form,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, Response> {
        if let Err(r) = same_origin(&self.app, &browser.headers) {
            return Err(self.account(browser, None, Some(r.into())).await);
        }
        let csrf = form.get("csrf").unwrap_or("");
        let reply = self.api.call(browser, method, path, body, &[("x-csrf-token", csrf)]).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(self.to_login());
        }
        Ok(reply)
    }

    fn key_form(&self, browser: &Browser, failure: Option<Failure<'_>>) -> Response {
        let form = CodeForm {
            title: "Confirm the new API key",
            lead: "We emailed you a code. Enter it to create the key.",
            action: "/account/api-keys/verify",
            button: "Create the key",
        };
        self.emailed_code_form(browser, form, failure)
    }

    /// The page that asks for an emailed code (`code_form.html`).
    pub(super) fn emailed_code_form(&self, browser: &Browser, form: CodeForm, failure: Option<Failure<'_>>) -> Response {
        let mut ctx = self.ctx(form.title, &self.session_csrf(browser));
        ctx.insert("lead".into(), json!(form.lead));
        ctx.insert("action".into(), json!(form.action));
        ctx.insert("button".into(), json!(form.button));
        self.html("code_form.html", ctx, Vec::new(), failure)
    }

    /// After a form that asked the API for an emailed code: the verification id waits in
    /// `cookie` and the browser goes to `next` (the code form); a refusal is shown on the
    /// account page.
    pub(super) async fn code_requested(&self, browser: &Browser, reply: Reply, cookie: PageCookie, next: &str) -> Response {
        let (true, Some(vid)) = (reply.ok(), reply.str("verification_id")) else {
            return self.account(browser, None, Some(Failure::Api(&reply))).await;
        };
        let ttl = reply.body.get("expires_in").and_then(Value::as_i64).unwrap_or(600);
        self.redirect(&self.path(next), vec![cookie.set(&self.app, vid, ttl)])
    }
}

/// The session organisation's providers my account has no identity of yet.
fn linkable(identities: &Value, providers: &Value) -> Value {
    let linked: Vec<&str> = identities.as_array().into_iter().flatten().filter_map(|i| i["connection_id"].as_str()).collect();
    let open = providers.as_array().into_iter().flatten().filter(|p| !p["id"].as_str().is_some_and(|id| linked.contains(&id)));
    Value::Array(open.cloned().collect())
}

/// Ids the API hands out are URL-safe; anything else is not one of them (and must not reach
/// the API's path).
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub async fn page(State(pages): State<PagesState>, Query(q): Query<DoneQuery>, browser: Browser) -> Response {
    pages.account(&browser, q.done.as_deref(), None).await
}

pub async fn logout(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    match pages.act(&browser, &form, Method::POST, "/v1/sessions/logout", None).await {
        Ok(reply) if reply.ok() => pages.redirect(&pages.path("/login?done=logout"), reply.set_cookies().cloned().collect()),
        Ok(reply) => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

/// One of my things removed through the API (`DELETE {collection}/{id}`), then the account page
/// with `done`; `what` names it when the id cannot be one.
async fn remove(
    pages: &super::Pages,
    browser: &Browser,
    form: &Form,
    collection: &str,
    id: &str,
    done: &str,
    what: &'static str,
) -> Response {
    if !valid_id(id) {
        return pages.account(browser, None, Some(Failure::Page(StatusCode::NOT_FOUND, "not_found", what))).await;
    }
    match pages.act(browser, form, Method::DELETE, &format!("{collection}/{id}"), None).await {
        Ok(reply) if reply.ok() => pages.redirect(&pages.path(&format!("/account?done={done}")), Vec::new()),
        Ok(reply) => pages.account(browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

pub async fn revoke_session(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    remove(&pages, &browser, &form, "/v1/sessions", &id, "session_revoked", "no such session").await
}

pub async fn revoke_key(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    remove(&pages, &browser, &form, "/v1/api-keys", &id, "key_revoked", "no such API key").await
}

pub async fn remove_passkey(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    remove(&pages, &browser, &form, "/v1/me/passkeys", &id, "passkey_removed", "no such passkey").await
}

pub async fn unlink_identity(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    remove(&pages, &browser, &form, "/v1/me/identities", &id, "identity_unlinked", "no such identity").await
}

pub async fn revoke_app(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    remove(&pages, &browser, &form, "/v1/me/consents", &id, "app_revoked", "no such app").await
}

pub async fn request_key(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let days = match form.get("days").unwrap_or("").trim().parse::<i64>() {
        Ok(d) if d >= 1 => d,
        _ => {
            let bad = Failure::Page(StatusCode::BAD_REQUEST, "invalid_expiry", "the lifetime must be a whole number of days, at least 1");
            return pages.account(&browser, None, Some(bad)).await;
        }
    };
    let body =
        json!({ "name": form.get("name").unwrap_or("").trim(), "roles": form.all("roles"), "expires_in": days.saturating_mul(86400) });
    match pages.act(&browser, &form, Method::POST, "/v1/api-keys", Some(body)).await {
        Ok(reply) => pages.code_requested(&browser, reply, PageCookie::KeyRequest, "/account/api-keys/verify").await,
        Err(resp) => resp,
    }
}

pub async fn key_verify_page(State(pages): State<PagesState>, browser: Browser) -> Response {
    if PageCookie::KeyRequest.get(&pages.app, &browser.headers).is_none() {
        return pages.redirect(&pages.path("/account"), Vec::new());
    }
    pages.key_form(&browser, None)
}

pub async fn key_verify_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let Some(vid) = PageCookie::KeyRequest.get(&pages.app, &browser.headers) else {
        return pages.redirect(&pages.path("/account"), Vec::new());
    };
    let body = json!({ "verification_id": vid, "code": form.get("code").unwrap_or("").trim() });
    let reply = match pages.act(&browser, &form, Method::POST, "/v1/api-keys/verify", Some(body)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !reply.ok() {
        return pages.key_form(&browser, Some(Failure::Api(&reply)));
    }
    // The secret is shown here, once: this answer is the only place it ever exists.
    let mut ctx = pages.ctx("Your new API key", "");
    ctx.insert("key".into(), reply.body.clone());
    let mut resp = pages.html("key_secret.html", ctx, vec![PageCookie::KeyRequest.clear(&pages.app)], None);
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

/// `POST /v1/sessions/refresh/page`: under the refresh cookie's path, so the browser sends it;
/// the page's own form checks, then the API's cookie-mode refresh (rotation, reuse detection)
/// with the session's CSRF token, and back to `return_to` with the new cookies.
pub async fn resume(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let rt = match pages.checked_return_to(form.get("return_to")) {
        Ok(rt) => rt,
        Err(f) => return pages.error_page(f),
    };
    if let Err(r) = super::guard::check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.error_page(r.into());
    }
    let csrf = pages.session_csrf(&browser);
    let reply = pages.api.call(&browser, Method::POST, "/v1/sessions/refresh", None, &[("x-csrf-token", &csrf)]).await;
    if !reply.ok() {
        // The session is over: its cookies go, so the next page goes straight to the login.
        let mut resp = pages.to_login_then(&rt, None);
        for c in crate::http::auth::clear_cookies(&pages.app) {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, c);
        }
        return resp;
    }
    pages.redirect(&rt, reply.set_cookies().cloned().collect())
}
