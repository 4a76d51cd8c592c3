//! The sign-up pages: address and password, then the emailed code; the account exists only
//! once the code is verified (the API's rule), and the person goes on to sign in.

use axum::extract::{Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::guard::{check_anonymous_form, form_token, PageCookie};
use super::{notice, Browser, Failure, Form, PagesState};
use auth_core::b64;

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

/// The sign-up waiting for its code: the API's verification id and the address.
fn decode(raw: &str) -> Option<(String, String)> {
    let (vid, email) = raw.split_once('~')?;
    Some((vid.to_string(), String::from_utf8(b64::decode(email.as_bytes())?).ok()?))
}

impl super::Pages {
    fn signup_form(&self, browser: &Browser, email: &str, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Create your account", &csrf);
        ctx.insert("email".into(), json!(email));
        ctx.insert("org_creation".into(), json!(self.app.cfg.signup.allow_org_creation));
        ctx.insert("min_password".into(), json!(self.app.cfg.passwords.min_length));
        self.html("signup.html", ctx, set.into_iter().collect(), failure)
    }

    fn code_form(&self, browser: &Browser, email: &str, done: Option<&str>, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Check your email", &csrf);
        ctx.insert("email".into(), json!(email));
        ctx.insert("notice".into(), json!(notice(done)));
        self.html("signup_verify.html", ctx, set.into_iter().collect(), failure)
    }

    fn pending_signup(&self, browser: &Browser) -> Option<(String, String)> {
        PageCookie::SignUp.get(&self.app, &browser.headers).as_deref().and_then(decode)
    }
}

pub async fn page(State(pages): State<PagesState>, browser: Browser) -> Response {
    pages.signup_form(&browser, "", None)
}

pub async fn submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let email = form.get("email").unwrap_or("").trim().to_string();
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.signup_form(&browser, &email, Some(r.into()));
    }
    let mut body = json!({ "email": email, "password": form.get("password").unwrap_or("") });
    if let Some(org) = form.get("org_name").map(str::trim).filter(|o| !o.is_empty()) {
        body["org_name"] = json!(org);
    }
    let reply = pages.api.call(&browser, Method::POST, "/v1/users", Some(body), &[]).await;
    let (true, Some(vid)) = (reply.ok(), reply.str("verification_id")) else {
        return pages.signup_form(&browser, &email, Some(Failure::Api(&reply)));
    };
    let ttl = reply.body.get("expires_in").and_then(serde_json::Value::as_i64).unwrap_or(900);
    let value = format!("{vid}~{}", b64::encode(email.as_bytes()));
    pages.redirect(&pages.path("/signup/verify"), vec![PageCookie::SignUp.set(&pages.app, &value, ttl)])
}

pub async fn verify_page(State(pages): State<PagesState>, Query(q): Query<DoneQuery>, browser: Browser) -> Response {
    match pages.pending_signup(&browser) {
        Some((_, email)) => pages.code_form(&browser, &email, q.done.as_deref(), None),
        None => pages.redirect(&pages.path("/signup"), Vec::new()),
    }
}

pub async fn verify_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let Some((vid, email)) = pages.pending_signup(&browser) else {
        return pages.signup_form(
            &browser,
            "",
            Some(Failure::Page(StatusCode::BAD_REQUEST, "invalid_code", "this sign-up has expired: start again")),
        );
    };
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.code_form(&browser, &email, None, Some(r.into()));
    }
    let code = form.get("code").unwrap_or("").trim();
    let reply =
        pages.api.call(&browser, Method::POST, "/v1/users/verify", Some(json!({ "verification_id": vid, "code": code })), &[]).await;
    if !reply.ok() {
        return pages.code_form(&browser, &email, None, Some(Failure::Api(&reply)));
    }
    let q = serde_urlencoded::to_string([("email", email.as_str()), ("done", "signup")]).unwrap_or_default();
    pages.redirect(&pages.path(&format!("/login?{q}")), vec![PageCookie::SignUp.clear(&pages.app)])
}

pub async fn resend(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let Some((vid, email)) = pages.pending_signup(&browser) else {
        return pages.redirect(&pages.path("/signup"), Vec::new());
    };
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.code_form(&browser, &email, None, Some(r.into()));
    }
    let reply = pages.api.call(&browser, Method::POST, "/v1/users/verify/resend", Some(json!({ "verification_id": vid })), &[]).await;
    match (reply.ok(), reply.str("verification_id")) {
        (true, Some(new_vid)) => {
            let value = format!("{new_vid}~{}", b64::encode(email.as_bytes()));
            let ttl = reply.body.get("expires_in").and_then(serde_json::Value::as_i64).unwrap_or(900);
            let mut resp = pages.redirect(&pages.path("/signup/verify?done=resent"), Vec::new());
            resp.headers_mut().append(header::SET_COOKIE, PageCookie::SignUp.set(&pages.app, &value, ttl));
            resp
        }
        _ => pages.code_form(&browser, &email, None, Some(Failure::Api(&reply))),
    }
}
