//! Forgotten password: ask for a reset link by address (the same answer for every address, the
//! API's rule), then choose a new password from the emailed link.

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::guard::{check_anonymous_form, form_token};
use super::{Browser, Failure, Form, PagesState};

#[derive(Deserialize, Default)]
pub struct ResetQuery {
    token: Option<String>,
}

impl super::Pages {
    fn forgot_form(&self, browser: &Browser, email: &str, sent: bool, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Reset your password", &csrf);
        ctx.insert("email".into(), json!(email));
        ctx.insert("sent".into(), json!(sent));
        self.html("forgot.html", ctx, set.into_iter().collect(), failure)
    }

    fn reset_form(&self, browser: &Browser, token: &str, failure: Option<Failure<'_>>) -> Response {
        let (csrf, set) = form_token(&self.app, &browser.headers);
        let mut ctx = self.ctx("Choose a new password", &csrf);
        ctx.insert("token".into(), json!(token));
        ctx.insert("min_password".into(), json!(self.app.cfg.passwords.min_length));
        self.html("reset.html", ctx, set.into_iter().collect(), failure)
    }
}

pub async fn forgot_page(State(pages): State<PagesState>, browser: Browser) -> Response {
    pages.forgot_form(&browser, "", false, None)
}

pub async fn forgot_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let email = form.get("email").unwrap_or("").trim().to_string();
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.forgot_form(&browser, &email, false, Some(r.into()));
    }
    let reply = pages.api.call(&browser, Method::POST, "/v1/password/forgot", Some(json!({ "email": email })), &[]).await;
    if !reply.ok() {
        return pages.forgot_form(&browser, &email, false, Some(Failure::Api(&reply)));
    }
    pages.forgot_form(&browser, &email, true, None)
}

pub async fn reset_page(State(pages): State<PagesState>, Query(q): Query<ResetQuery>, browser: Browser) -> Response {
    pages.reset_form(&browser, q.token.as_deref().unwrap_or(""), None)
}

pub async fn reset_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let token = form.get("token").unwrap_or("").trim().to_string();
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.reset_form(&browser, &token, Some(r.into()));
    }
    let body = json!({ "token": token, "password": form.get("password").unwrap_or("") });
    let reply = pages.api.call(&browser, Method::POST, "/v1/password/reset", Some(body), &[]).await;
    if !reply.ok() {
        return pages.reset_form(&browser, &token, Some(Failure::Api(&reply)));
    }
    pages.redirect(&pages.path("/login?done=reset"), Vec::new())
}
