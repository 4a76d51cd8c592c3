//! Sign-in through an organisation's identity provider in the browser: `/login/sso/{id}` sends
//! the browser to the provider with a `state` also kept in a cookie of this browser (an answer
//! it did not ask for is refused: no login CSRF), `/login/sso/callback` takes the answer, opens
//! a cookie session in the connection's organisation (`amr` `fed`) and goes on to `return_to`
//! — or, when the account page started it (`/account/identities/link`), links the identity.
//! A SAML IdP posts its answer to `/saml/{id}/acs` instead (from its own site: the state's
//! SameSite=Lax cookie stays behind, so the page posts it once more from here), and our SAML
//! metadata is at `/saml/{id}/metadata`.

use std::borrow::Cow;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::guard::PageCookie;
use super::{Browser, Failure, Form, PagesState};
use crate::crypto;
use crate::error::ApiError;
use crate::federation::{self, Answer, Finished};
use crate::sessions::{self, SessionMeta};

#[derive(Deserialize, Default)]
pub struct StartQuery {
    return_to: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// An API error as a page's failure (its own words when they are fixed, a general one else).
fn failure(e: &ApiError) -> Failure<'static> {
    let message = match &e.message {
        Cow::Borrowed(m) => m,
        Cow::Owned(_) => "the sign-in through the identity provider could not be completed",
    };
    Failure::Page(e.status, e.code, message)
}

pub async fn start(State(pages): State<PagesState>, Path(id): Path<String>, Query(q): Query<StartQuery>, browser: Browser) -> Response {
    let ip = browser.ip(&pages.app);
    let rt = match pages.checked_return_to(q.return_to.as_deref()) {
        Ok(rt) => rt,
        Err(f) => return pages.error_page(f),
    };
    if !super::account::valid_id(&id) {
        return pages.error_page(Failure::Page(StatusCode::NOT_FOUND, "connection_not_found", "no such connection"));
    }
    // Each start makes the server call the provider: counted like the API's sign-in calls.
    if let Err(e) = crate::http::count_ip(&pages.app, ip).await {
        return pages.error_page(failure(&e));
    }
    match federation::start(&pages.app, &id, &rt, None).await {
        Ok((url, state)) => pages.redirect(&url, vec![PageCookie::Sso.set(&pages.app, &state, 600)]),
        Err(e) => pages.error_page(failure(&e)),
    }
}

pub async fn callback(State(pages): State<PagesState>, Query(q): Query<CallbackQuery>, browser: Browser) -> Response {
    let app = &pages.app;
    let state = q.state.unwrap_or_default();
    if let Some(refused) = not_bound_here(&pages, &browser, &state) {
        return refused;
    }
    let result = match (q.error, q.code) {
        (None, Some(code)) => federation::finish(app, &state, Answer::Code(&code)).await,
        // The provider said no: the pending sign-in is spent all the same.
        _ => match federation::abandon(app, &state).await {
            Ok(()) => Err(ApiError::forbidden("sso_failed", "the identity provider did not sign you in")),
            Err(e) => Err(e),
        },
    };
    complete(&pages, &browser, result).await
}

/// The answer's `state` must be the one this browser holds (no login CSRF): the refusal (the
/// cookie cleared) when it is not.
fn not_bound_here(pages: &PagesState, browser: &Browser, state: &str) -> Option<Response> {
    let bound = PageCookie::Sso.get(&pages.app, &browser.headers).unwrap_or_default();
    if state.is_empty() || !crypto::ct_eq(bound.as_bytes(), state.as_bytes()) {
        let refused =
            Failure::Page(StatusCode::BAD_REQUEST, "sso_state_invalid", "this sign-in was not started in this browser: start again");
        let mut resp = pages.error_page(refused);
        resp.headers_mut().append(header::SET_COOKIE, PageCookie::Sso.clear(&pages.app));
        return Some(resp);
    }
    None
}

#[derive(Deserialize, Default)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
    /// Set by our own page that posts the answer again.
    again: Option<String>,
}

/// `POST /saml/{id}/acs`: a SAML IdP's answer (HTTP-POST binding). Posted from the IdP's site,
/// it comes without the state's cookie: our page posts it again from here, once.
pub async fn acs(
    State(pages): State<PagesState>,
    Path(id): Path<String>,
    browser: Browser,
    form: axum::extract::Form<AcsForm>,
) -> Response {
    let app = &pages.app;
    let f = form.0;
    let state = f.relay_state.unwrap_or_default();
    let response = f.saml_response.unwrap_or_default();
    if !super::account::valid_id(&id) || response.is_empty() {
        return pages.error_page(Failure::Page(StatusCode::BAD_REQUEST, "saml_response_invalid", "this is not a SAML answer"));
    }
    if PageCookie::Sso.get(app, &browser.headers).is_none() && f.again.is_none() {
        let mut ctx = pages.ctx("Signing in", "");
        ctx.insert("connection".into(), json!(id));
        ctx.insert("saml_response".into(), json!(response));
        ctx.insert("relay_state".into(), json!(state));
        return pages.html("saml_post.html", ctx, vec![], None);
    }
    if let Some(refused) = not_bound_here(&pages, &browser, &state) {
        return refused;
    }
    // Each answer costs a signature check: counted like the API's sign-in calls.
    if let Err(e) = crate::http::count_ip(app, browser.ip(app)).await {
        return pages.error_page(failure(&e));
    }
    let result = federation::finish(app, &state, Answer::SamlResponse { connection: &id, response: &response }).await;
    complete(&pages, &browser, result).await
}

/// `GET /saml/{id}/metadata`: our SAML metadata for the connection (its entity id is this address).
pub async fn metadata(State(pages): State<PagesState>, Path(id): Path<String>) -> Response {
    if !super::account::valid_id(&id) {
        return pages.error_page(Failure::Page(StatusCode::NOT_FOUND, "connection_not_found", "no such connection"));
    }
    match federation::saml_metadata(&pages.app, &id).await {
        Ok(xml) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/samlmetadata+xml"))], xml).into_response(),
        Err(e) => pages.error_page(failure(&e)),
    }
}

/// How a round trip ends in the browser: a cookie session in the connection's organisation
/// (`amr` `fed`), or the identity linked; either way the state's cookie is cleared.
async fn complete(pages: &PagesState, browser: &Browser, result: Result<Finished, ApiError>) -> Response {
    let app = &pages.app;
    let ip = browser.ip(app);
    let clear = PageCookie::Sso.clear(app);
    let with_clear = |mut resp: Response| {
        resp.headers_mut().append(header::SET_COOKIE, clear.clone());
        resp
    };
    let (user, org, return_to) = match result {
        Ok(Finished::SignedIn { user, org, return_to }) => (user, org, return_to),
        Ok(Finished::Linked { return_to }) => {
            let ctx = onward(pages, "Linked", "The identity provider is linked.", &return_to);
            return pages.html("sso_done.html", ctx, vec![clear], None);
        }
        Err(e) => return with_clear(pages.error_page(failure(&e))),
    };
    let ip_s = ip.to_string();
    let meta = SessionMeta { user_agent: crate::http::user_agent(&browser.headers), ip: Some(&ip_s), cookie_mode: true, client: None };
    let issued = match sessions::create(app, &user, &org, vec!["fed".into()], meta).await {
        Ok(issued) => issued,
        Err(e) => return with_clear(pages.error_page(failure(&e))),
    };
    crate::http::login::notify_sign_in(app, &user, &browser.headers, ip).await;
    metrics::counter!("authgate_logins_total", "flow" => "federated").increment(1);
    let mut cookies = crate::http::auth::session_cookies(app, &issued);
    cookies.push(clear);
    pages.html("sso_done.html", onward(pages, "Signed in", "You are signed in.", &return_to), cookies, None)
}

/// A page that goes on to `to` by itself (`sso_done.html`). After a provider's answer: the
/// session's SameSite=Strict cookies are sent with a navigation this site starts, not with a
/// redirect chain a provider started. Before the provider: a form's redirect would be held to
/// the page's `form-action`, a navigation is not.
fn onward(pages: &PagesState, title: &'static str, lead: &'static str, to: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut ctx = pages.ctx(title, "");
    ctx.insert("lead".into(), json!(lead));
    ctx.insert("return_to".into(), json!(to));
    ctx
}

/// `POST /account/identities/link`: the account page's "Link" — the API starts the round trip
/// for the signed-in account (recent login, a connection of one of its organisations), the
/// browser keeps the state and goes on to the provider.
pub async fn link(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let connection = form.get("connection").unwrap_or("");
    let reply = match pages.act(&browser, &form, Method::POST, "/v1/me/identities", Some(json!({ "connection_id": connection }))).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match (reply.ok(), reply.str("authorization_url"), reply.str("state")) {
        (true, Some(url), Some(state)) => {
            let ctx = onward(&pages, "Linking", "On to the identity provider…", url);
            pages.html("sso_done.html", ctx, vec![PageCookie::Sso.set(&pages.app, state, 600)], None)
        }
        _ => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
    }
}
