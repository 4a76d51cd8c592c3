//! The login pages: the address first, then one form per step the API still needs (password,
//! a code by email, a TOTP code), until the API completes the login in cookie mode and the
//! browser goes back to `return_to`.

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::{self, check_anonymous_form, form_token, PageCookie};
use super::{notice, Browser, Failure, Form, FormTarget, PagesState};
use auth_core::b64;

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    return_to: Option<String>,
    email: Option<String>,
    done: Option<String>,
}

/// The login in progress, kept in the HttpOnly login cookie (cookie-safe: base64url, `~`, `.`): the API's login-session token,
/// the address (shown on the page), the steps done and the steps the API says are next.
struct LoginCookie {
    token: String,
    email: String,
    completed: Vec<String>,
    next: Vec<String>,
    code_sent: bool,
    /// The identity providers `init` offered the address: (id, name).
    connections: Vec<(String, String)>,
}

impl LoginCookie {
    fn encode(&self) -> String {
        let list = |v: &[String]| v.join(".");
        let connections: Vec<String> = self.connections.iter().map(|(id, name)| format!("{id}!{}", b64::encode(name.as_bytes()))).collect();
        format!(
            "{}~{}~{}~{}~{}~{}",
            self.token,
            b64::encode(self.email.as_bytes()),
            list(&self.completed),
            list(&self.next),
            u8::from(self.code_sent),
            connections.join(".")
        )
    }

    fn decode(raw: &str) -> Option<LoginCookie> {
        let mut parts = raw.split('~');
        let token = parts.next()?.to_string();
        let email = String::from_utf8(b64::decode(parts.next()?.as_bytes())?).ok()?;
        let list = |s: &str| s.split('.').filter(|m| !m.is_empty()).map(str::to_string).collect::<Vec<_>>();
        let completed = list(parts.next()?);
        let next = list(parts.next()?);
        let code_sent = parts.next()? == "1";
        let connections = parts
            .next()
            .unwrap_or("")
            .split('.')
            .filter(|c| !c.is_empty())
            .filter_map(|c| {
                let (id, name) = c.split_once('!')?;
                Some((id.to_string(), String::from_utf8(b64::decode(name.as_bytes())?).ok()?))
            })
            .collect();
        Some(LoginCookie { token, email, completed, next, code_sent, connections })
    }
}

impl super::Pages {
    /// `return_to` if given and allowed (else a refusal), or the account page.
    pub(super) fn checked_return_to(&self, raw: Option<&str>) -> Result<String, Failure<'static>> {
        match raw.filter(|r| !r.is_empty()) {
            None => Ok(self.path("/account")),
            Some(r) => guard::return_to(&self.app.cfg, r).ok_or(Failure::Page(
                StatusCode::BAD_REQUEST,
                "invalid_return_to",
                "return_to must be a page of this site or of an allowed origin",
            )),
        }
    }

    fn step_url(&self, return_to: &str) -> String {
        let q = serde_urlencoded::to_string([("return_to", return_to)]).unwrap_or_default();
        self.path(&format!("/login/step?{q}"))
    }

    fn email_form(&self, browser: &Browser, email: &str, return_to: &str, done: Option<&str>, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Sign in", &csrf);
        ctx.insert("email".into(), json!(email));
        ctx.insert("return_to".into(), json!(return_to));
        ctx.insert("notice".into(), json!(notice(done)));
        self.html("login.html", ctx, set.into_iter().collect(), failure)
    }

    /// The last step of an account in several organisations: the API lists them (asking again
    /// changes nothing), the person picks one.
    async fn org_form(&self, browser: &Browser, login: &LoginCookie, return_to: &str, failure: Option<Failure<'_>>) -> Response {
        let body = json!({ "method": "org", "cookie": true });
        let reply = self.api.call(browser, Method::POST, "/v1/auth/authenticate", Some(body), &[("x-session-token", &login.token)]).await;
        if reply.str("status") != Some("choose_org") {
            let expired = Failure::Page(StatusCode::UNAUTHORIZED, "login_session_invalid", "the sign-in has expired: start again");
            let mut resp = self.email_form(browser, &login.email, return_to, None, Some(expired));
            resp.headers_mut().append(axum::http::header::SET_COOKIE, PageCookie::Login.clear(&self.app));
            return resp;
        }
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Sign in", &csrf);
        ctx.insert("email".into(), json!(login.email));
        ctx.insert("return_to".into(), json!(return_to));
        ctx.insert("orgs".into(), reply.body.get("orgs").cloned().unwrap_or(json!([])));
        self.html("login_org.html", ctx, set.into_iter().collect(), failure)
    }

    /// The form for what the login needs next: a factor, or the organisation.
    async fn next_form(&self, browser: &Browser, login: &LoginCookie, return_to: &str, failure: Option<Failure<'_>>) -> Response {
        if login.next.iter().any(|n| n == "org") {
            return self.org_form(browser, login, return_to, failure).await;
        }
        self.step_form(browser, login, return_to, failure)
    }

    fn step_form(&self, browser: &Browser, login: &LoginCookie, return_to: &str, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Sign in", &csrf);
        let first = login.completed.is_empty();
        let offers = |m: &str| login.next.iter().any(|n| n == m);
        ctx.insert("email".into(), json!(login.email));
        ctx.insert("return_to".into(), json!(return_to));
        ctx.insert("first".into(), json!(first));
        ctx.insert("password".into(), json!(offers("password")));
        ctx.insert("email_otp".into(), json!(offers("email_otp")));
        // Every account is offered TOTP before its first step (the API reveals nothing yet); the
        // page asks for it only once the API says this account needs it.
        ctx.insert("totp".into(), json!(!first && offers("totp")));
        ctx.insert("code_sent".into(), json!(login.code_sent));
        ctx.insert("passkey".into(), json!(offers("passkey")));
        let q = serde_urlencoded::to_string([("return_to", return_to)]).unwrap_or_default();
        let connections: Vec<_> =
            login.connections.iter().map(|(id, name)| json!({ "name": name, "url": self.path(&format!("/login/sso/{id}?{q}")) })).collect();
        ctx.insert("connections".into(), json!(connections));
        self.html("login_step.html", ctx, set.into_iter().collect(), failure)
    }
}

pub async fn email_page(State(pages): State<PagesState>, Query(q): Query<LoginQuery>, browser: Browser) -> Response {
    match pages.checked_return_to(q.return_to.as_deref()) {
        Ok(rt) => {
            let target = pages.oauth_form_target(&rt).await;
            FormTarget::apply(pages.email_form(&browser, q.email.as_deref().unwrap_or(""), &rt, q.done.as_deref(), None), target)
        }
        Err(f) => pages.error_page(f),
    }
}

/// The login's forms end in a redirect to `return_to`; when that continues an authorization
/// request, the page allows the client's redirect URI as a form target (see `FormTarget`).
async fn with_target(pages: &super::Pages, rt: Option<&str>, resp: Response) -> Response {
    let target = match rt.and_then(|r| guard::return_to(&pages.app.cfg, r)) {
        Some(r) => pages.oauth_form_target(&r).await,
        None => None,
    };
    FormTarget::apply(resp, target)
}

pub async fn email_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let resp = email_submit_inner(&pages, &browser, &form).await;
    with_target(&pages, form.get("return_to"), resp).await
}

async fn email_submit_inner(pages: &super::Pages, browser: &Browser, form: &Form) -> Response {
    let email = form.get("email").unwrap_or("").trim();
    let rt = match pages.checked_return_to(form.get("return_to")) {
        Ok(rt) => rt,
        Err(f) => return pages.error_page(f),
    };
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.email_form(browser, email, &rt, None, Some(r.into()));
    }
    let reply = pages.api.call(browser, Method::POST, "/v1/auth/init", Some(json!({ "email": email })), &[]).await;
    let token = reply.headers.get("x-session-token").and_then(|v| v.to_str().ok());
    let (true, Some(token)) = (reply.ok(), token) else {
        return pages.email_form(browser, email, &rt, None, Some(Failure::Api(&reply)));
    };
    let methods: Vec<String> =
        reply.body.get("methods").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    let ttl = reply.body.get("expires_in").and_then(Value::as_i64).unwrap_or(600);
    let connections = reply
        .body
        .get("connections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("id")?.as_str()?.to_string(), c.get("name")?.as_str()?.to_string())))
        .filter(|(id, _)| super::account::valid_id(id))
        .collect();
    let login = LoginCookie {
        token: token.to_string(),
        email: email.to_string(),
        completed: Vec::new(),
        next: methods,
        code_sent: false,
        connections,
    };
    pages.redirect(&pages.step_url(&rt), vec![PageCookie::Login.set(&pages.app, &login.encode(), ttl)])
}

pub async fn step_page(State(pages): State<PagesState>, Query(q): Query<LoginQuery>, browser: Browser) -> Response {
    let rt = match pages.checked_return_to(q.return_to.as_deref()) {
        Ok(rt) => rt,
        Err(f) => return pages.error_page(f),
    };
    let resp = match PageCookie::Login.get(&pages.app, &browser.headers).as_deref().and_then(LoginCookie::decode) {
        Some(login) => pages.next_form(&browser, &login, &rt, None).await,
        None => pages.email_form(&browser, "", &rt, None, None),
    };
    with_target(&pages, Some(&rt), resp).await
}

pub async fn step_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let resp = step_submit_inner(&pages, &browser, &form).await;
    with_target(&pages, form.get("return_to"), resp).await
}

async fn step_submit_inner(pages: &super::Pages, browser: &Browser, form: &Form) -> Response {
    let rt = match pages.checked_return_to(form.get("return_to")) {
        Ok(rt) => rt,
        Err(f) => return pages.error_page(f),
    };
    let Some(mut login) = PageCookie::Login.get(&pages.app, &browser.headers).as_deref().and_then(LoginCookie::decode) else {
        let expired = Failure::Page(StatusCode::UNAUTHORIZED, "login_session_invalid", "the sign-in has expired: start again");
        return pages.email_form(browser, "", &rt, None, Some(expired));
    };
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.next_form(browser, &login, &rt, Some(r.into())).await;
    }
    let method = form.get("method").unwrap_or("");
    let mut body = json!({ "method": method, "cookie": true });
    if method == "org" {
        body["org"] = json!(form.get("org").unwrap_or(""));
    }
    if method == "password" {
        body["password"] = json!(form.get("password").unwrap_or(""));
    }
    if let Some(code) = form.get("code").filter(|_| method != "password") {
        body["code"] = json!(code.trim());
    }
    if method == "passkey" {
        match form.get("credential").and_then(|c| serde_json::from_str::<Value>(c).ok()) {
            Some(credential) => body["credential"] = credential,
            None => {
                let bad = Failure::Page(StatusCode::BAD_REQUEST, "passkey_invalid", "the passkey's answer is missing: try again");
                return pages.step_form(browser, &login, &rt, Some(bad));
            }
        }
    }
    let reply = pages.api.call(browser, Method::POST, "/v1/auth/authenticate", Some(body), &[("x-session-token", &login.token)]).await;
    if !reply.ok() {
        if reply.code() == "login_session_invalid" {
            let email = login.email.clone();
            let mut resp = pages.email_form(browser, &email, &rt, None, Some(Failure::Api(&reply)));
            resp.headers_mut().append(axum::http::header::SET_COOKIE, PageCookie::Login.clear(&pages.app));
            return resp;
        }
        return pages.next_form(browser, &login, &rt, Some(Failure::Api(&reply))).await;
    }
    let strings = |field: &str| -> Vec<String> {
        reply.body.get(field).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
    };
    match reply.str("status") {
        Some("complete") => {
            // The API set the session cookies (access, refresh, CSRF): pass them on.
            let mut cookies: Vec<_> = reply.set_cookies().cloned().collect();
            cookies.push(PageCookie::Login.clear(&pages.app));
            pages.redirect(&rt, cookies)
        }
        status => {
            login.code_sent = status == Some("code_sent");
            login.completed = strings("completed");
            login.next = strings("next");
            pages.redirect(
                &pages.step_url(&rt),
                vec![PageCookie::Login.set(&pages.app, &login.encode(), pages.app.cfg.login.session_token_ttl_s)],
            )
        }
    }
}

/// The passkey challenge for the page's script (JSON): the same form checks as every step, then
/// the API's challenge for this login, the same for every account.
pub async fn passkey_challenge(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let refuse = |failure: Failure<'_>| {
        let body = json!({ "error": failure.code(), "message": failure.message() });
        let mut resp = (failure.status(), axum::Json(body)).into_response();
        failure.headers(resp.headers_mut());
        resp
    };
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return refuse(r.into());
    }
    let Some(login) = PageCookie::Login.get(&pages.app, &browser.headers).as_deref().and_then(LoginCookie::decode) else {
        return refuse(Failure::Page(StatusCode::UNAUTHORIZED, "login_session_invalid", "the sign-in has expired: start again"));
    };
    let body = json!({ "method": "passkey", "cookie": true });
    let reply = pages.api.call(&browser, Method::POST, "/v1/auth/authenticate", Some(body), &[("x-session-token", &login.token)]).await;
    match (reply.ok(), reply.body.get("options")) {
        (true, Some(options)) => axum::Json(json!({ "options": options })).into_response(),
        _ => refuse(Failure::Api(&reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::LoginCookie;

    #[test]
    fn login_cookie_round_trips_and_refuses_what_it_did_not_write() {
        let c = LoginCookie {
            token: "lst_abc-_".into(),
            email: "ü@example.com".into(),
            completed: vec!["password".into()],
            next: vec!["totp".into(), "passkey".into()],
            code_sent: true,
            connections: vec![("conn_1".into(), "Acme SSO; \"quoted\"".into())],
        };
        let raw = c.encode();
        assert!(raw.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')), "{raw}");
        let back = LoginCookie::decode(&raw).unwrap();
        assert_eq!(
            (back.token, back.email, back.completed, back.next, back.code_sent, back.connections),
            (c.token, c.email, c.completed, c.next, c.code_sent, c.connections)
        );
        for bad in ["", "lst_x", "lst_x~%%%~~~0", "lst_x~/w==~a~b", "lst_x~_w~a~b"] {
            assert!(LoginCookie::decode(bad).is_none(), "{bad:?}");
        }
    }
}
