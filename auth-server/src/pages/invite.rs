//! An invitation's page: the emailed link shows which organisation and address it is for, and
//! its holder chooses a password (the API creates the account with the invited roles) — or,
//! when the address has an account, signs in with it and joins.

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::guard::{check_anonymous_form, form_token, same_origin};
use super::{Browser, Failure, Form, PagesState};

#[derive(Deserialize, Default)]
pub struct InviteQuery {
    token: Option<String>,
}

impl super::Pages {
    /// The invitation page, or the error page when the link is no good.
    async fn invite_form(&self, browser: &Browser, token: &str, failure: Option<Failure<'_>>) -> Response {
        let view = self.api.call(browser, Method::POST, "/v1/invitations/lookup", Some(json!({ "token": token })), &[]).await;
        if !view.ok() {
            return self.error_page(Failure::Api(&view));
        }
        // An existing account joins from a session of its own (a form of that session).
        let signed_in_as = if view.body.get("existing_account") == Some(&json!(true)) {
            let me = self.api.get(browser, "/v1/me").await;
            me.ok().then(|| me.str("email").map(str::to_string)).flatten()
        } else {
            None
        };
        let (csrf, set) = match signed_in_as {
            Some(_) => (self.session_csrf(browser), None),
            None => form_token(&self.app, &browser.headers),
        };
        let mut ctx = self.ctx("Join your organisation", &csrf);
        ctx.insert("token".into(), json!(token));
        ctx.insert("signed_in_as".into(), json!(signed_in_as));
        let here = serde_urlencoded::to_string([("token", token)]).unwrap_or_default();
        ctx.insert("here".into(), json!(self.path(&format!("/invite?{here}"))));
        ctx.insert("invitation".into(), view.body.clone());
        ctx.insert("min_password".into(), json!(self.app.cfg.passwords.min_length));
        self.html("invite.html", ctx, set.into_iter().collect(), failure)
    }
}

pub async fn page(State(pages): State<PagesState>, Query(q): Query<InviteQuery>, browser: Browser) -> Response {
    pages.invite_form(&browser, q.token.as_deref().unwrap_or(""), None).await
}

pub async fn submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let token = form.get("token").unwrap_or("").trim().to_string();
    if let Err(r) = check_anonymous_form(&pages.app, &browser.headers, form.get("csrf")) {
        return pages.invite_form(&browser, &token, Some(r.into())).await;
    }
    let body = json!({ "token": token, "password": form.get("password").unwrap_or("") });
    let reply = pages.api.call(&browser, Method::POST, "/v1/invitations/accept", Some(body), &[]).await;
    if !reply.ok() {
        return pages.invite_form(&browser, &token, Some(Failure::Api(&reply))).await;
    }
    let q = serde_urlencoded::to_string([("done", "invited"), ("email", reply.str("email").unwrap_or(""))]).unwrap_or_default();
    pages.redirect(&pages.path(&format!("/login?{q}")), Vec::new())
}

/// An existing account joins: the session's CSRF token, then the API checks the address.
pub async fn join(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let token = form.get("token").unwrap_or("").trim().to_string();
    if let Err(r) = same_origin(&pages.app, &browser.headers) {
        return pages.invite_form(&browser, &token, Some(r.into())).await;
    }
    let csrf = form.get("csrf").unwrap_or("");
    let reply =
        pages.api.call(&browser, Method::POST, "/v1/invitations/join", Some(json!({ "token": token })), &[("x-csrf-token", csrf)]).await;
    if !reply.ok() {
        return pages.invite_form(&browser, &token, Some(Failure::Api(&reply))).await;
    }
    let q = serde_urlencoded::to_string([("done", "joined"), ("email", reply.str("email").unwrap_or(""))]).unwrap_or_default();
    pages.redirect(&pages.path(&format!("/login?{q}")), Vec::new())
}
