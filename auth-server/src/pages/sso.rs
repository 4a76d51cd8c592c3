//! Sign-in through an organisation's identity provider in the browser: `/login/sso/{id}` sends
//! the browser to the provider with a `state` also kept in a cookie of this browser (an answer
//! it did not ask for is refused: no login CSRF), `/login/sso/callback` takes the answer, opens
//! a cookie session in the connection's organisation (`amr` `fed`) and goes on to `return_to`.

use std::borrow::Cow;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::guard::PageCookie;
use super::{Browser, Failure, PagesState};
use crate::crypto;
use crate::error::ApiError;
use crate::federation;
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
    match federation::start(&pages.app, &id, &rt).await {
        Ok((url, state)) => pages.redirect(&url, vec![PageCookie::Sso.set(&pages.app, &state, 600)]),
        Err(e) => pages.error_page(failure(&e)),
    }
}

pub async fn callback(State(pages): State<PagesState>, Query(q): Query<CallbackQuery>, browser: Browser) -> Response {
    let app = &pages.app;
    let ip = browser.ip(app);
    let clear = PageCookie::Sso.clear(app);
    let with_clear = |mut resp: Response| {
        resp.headers_mut().append(axum::http::header::SET_COOKIE, clear.clone());
        resp
    };
    let state = q.state.unwrap_or_default();
    let bound = PageCookie::Sso.get(app, &browser.headers).unwrap_or_default();
    if state.is_empty() || !crypto::ct_eq(bound.as_bytes(), state.as_bytes()) {
        let refused =
            Failure::Page(StatusCode::BAD_REQUEST, "sso_state_invalid", "this sign-in was not started in this browser: start again");
        return with_clear(pages.error_page(refused));
    }
    let result = match (q.error, q.code) {
        (None, Some(code)) => federation::finish(app, &state, &code).await,
        // The provider said no: the pending sign-in is spent all the same.
        _ => match federation::abandon(app, &state).await {
            Ok(()) => Err(ApiError::forbidden("sso_failed", "the identity provider did not sign you in")),
            Err(e) => Err(e),
        },
    };
    let signed_in = match result {
        Ok(s) => s,
        Err(e) => return with_clear(pages.error_page(failure(&e))),
    };
    let ip_s = ip.to_string();
    let meta = SessionMeta { user_agent: crate::http::user_agent(&browser.headers), ip: Some(&ip_s), cookie_mode: true, client: None };
    let issued = match sessions::create(app, &signed_in.user, &signed_in.org, vec!["fed".into()], meta).await {
        Ok(issued) => issued,
        Err(e) => return with_clear(pages.error_page(failure(&e))),
    };
    crate::http::login::notify_sign_in(app, &signed_in.user, &browser.headers, ip).await;
    metrics::counter!("authgate_logins_total", "flow" => "federated").increment(1);
    // A page of this site goes on to `return_to`: the session's SameSite=Strict cookies are
    // sent with a navigation this site starts, not with a redirect chain a provider started.
    let mut ctx = pages.ctx("Signed in", "");
    ctx.insert("return_to".into(), json!(signed_in.return_to));
    let mut cookies = crate::http::auth::session_cookies(app, &issued);
    cookies.push(clear);
    pages.html("sso_done.html", ctx, cookies, None)
}
