//! The account page's profile forms: the display name, and changing the address (the current
//! password, then the code sent to the new address), through the API like every other form.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::account::CodeForm;
use super::guard::PageCookie;
use super::{Browser, Failure, Form, PagesState};

impl super::Pages {
    fn email_code_form(&self, browser: &Browser, failure: Option<Failure<'_>>) -> Response {
        let form = CodeForm {
            title: "Confirm your new address",
            lead: "We emailed a code to your new address. Enter it to make it your account's address.",
            action: "/account/email/verify",
            button: "Change my address",
        };
        self.emailed_code_form(browser, form, failure)
    }
}

pub async fn save_name(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "name": form.get("name").unwrap_or("").trim() });
    match pages.act(&browser, &form, Method::PATCH, "/v1/me", Some(body)).await {
        Ok(reply) if reply.ok() => pages.redirect(&pages.path("/account?done=name_saved"), Vec::new()),
        Ok(reply) => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

/// Asks for the change: the API sends the code to the new address; the page keeps the
/// verification id in a short cookie for the code form.
pub async fn request_email(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "new_email": form.get("new_email").unwrap_or("").trim(), "password": form.get("password").unwrap_or("") });
    match pages.act(&browser, &form, Method::POST, "/v1/me/email", Some(body)).await {
        Ok(reply) => pages.code_requested(&browser, reply, PageCookie::EmailChange, "/account/email/verify").await,
        Err(resp) => resp,
    }
}

pub async fn email_code_page(State(pages): State<PagesState>, browser: Browser) -> Response {
    if PageCookie::EmailChange.get(&pages.app, &browser.headers).is_none() {
        return pages.redirect(&pages.path("/account"), Vec::new());
    }
    pages.email_code_form(&browser, None)
}

pub async fn email_code_submit(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let Some(vid) = PageCookie::EmailChange.get(&pages.app, &browser.headers) else {
        return pages.redirect(&pages.path("/account"), Vec::new());
    };
    let body = json!({ "verification_id": vid, "code": form.get("code").unwrap_or("").trim() });
    match pages.act(&browser, &form, Method::POST, "/v1/me/email/verify", Some(body)).await {
        Ok(reply) if reply.ok() => {
            pages.redirect(&pages.path("/account?done=email_changed"), vec![PageCookie::EmailChange.clear(&pages.app)])
        }
        // A code that can no longer work (taken address, changed since): back to the account.
        Ok(reply) if reply.status == StatusCode::CONFLICT => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
        Ok(reply) => pages.email_code_form(&browser, Some(Failure::Api(&reply))),
        Err(resp) => resp,
    }
}
