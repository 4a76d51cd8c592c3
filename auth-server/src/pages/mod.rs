//! Hosted pages: sign-up, login and the account page, server-rendered HTML for people with a
//! browser. The pages are a client of the JSON API, run in-process (`api.rs`): lockout,
//! enumeration resistance, authority and the CSRF rule of cookie sessions stay the API's,
//! written once; a page adds only what a form needs (its own CSRF check, `return_to`).

mod account;
mod api;
mod authorize;
mod guard;
mod invite;
mod login;
mod organisation;
mod password;
mod profile;
mod signup;
mod sso;
mod totp;
mod view;

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::error::{error_id, set_error_headers};
pub use api::{Api, Browser, Reply};
use guard::FormRefusal;
use view::Views;

pub struct Pages {
    app: AppState,
    api: Api,
    views: Views,
    /// `content-security-policy` of every page.
    csp: String,
}

/// A form target a page must allow besides our own (a response extension the headers
/// middleware reads): a client's redirect URI that a form's redirect chain ends at.
#[derive(Clone)]
pub struct FormTarget(String);

impl FormTarget {
    /// The CSP source of a redirect URI: its origin, or its scheme for a native app's.
    pub fn of(uri: &str) -> Option<FormTarget> {
        let url = url::Url::parse(uri).ok()?;
        let source = match url.scheme() {
            "https" | "http" => url.origin().ascii_serialization(),
            scheme => format!("{scheme}:"),
        };
        // Checked at registration; kept header-safe and one source whatever happens.
        source.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'\'' | b'"')).then_some(FormTarget(source))
    }

    pub fn apply(mut resp: Response, target: Option<FormTarget>) -> Response {
        if let Some(t) = target {
            resp.extensions_mut().insert(t);
        }
        resp
    }
}

type PagesState = Arc<Pages>;

/// The pages' routes; `api` is the JSON API's router, which the pages call in-process.
pub fn routes(app: AppState, api: Router) -> Result<Router<AppState>, minijinja::Error> {
    let csp = content_security_policy(&app);
    HeaderValue::from_str(&csp).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    let pages = Arc::new(Pages { app, api: Api::new(api), views: Views::new()?, csp });
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", get(login::email_page).post(login::email_submit))
        .route("/login/step", get(login::step_page).post(login::step_submit))
        .route("/signup", get(signup::page).post(signup::submit))
        .route("/signup/verify", get(signup::verify_page).post(signup::verify_submit))
        .route("/signup/resend", post(signup::resend))
        .route("/account", get(account::page))
        .route("/account/logout", post(account::logout))
        .route("/account/name", post(profile::save_name))
        .route("/account/email", post(profile::request_email))
        .route("/account/email/verify", get(profile::email_code_page).post(profile::email_code_submit))
        .route("/account/sessions/{id}/revoke", post(account::revoke_session))
        .route("/account/api-keys", post(account::request_key))
        .route("/account/api-keys/verify", get(account::key_verify_page).post(account::key_verify_submit))
        .route("/account/api-keys/{id}/revoke", post(account::revoke_key))
        .route("/account/passkeys/{id}/remove", post(account::remove_passkey))
        .route("/account/apps/{id}/revoke", post(account::revoke_app))
        .route("/invite", get(invite::page).post(invite::submit))
        .route("/invite/join", post(invite::join))
        .route("/organisation/invitations", post(organisation::invite))
        .route("/organisation/auth", post(organisation::set_auth))
        .route("/organisation/domains", post(organisation::add_domain))
        .route("/organisation/domains/remove", post(organisation::remove_domain))
        .route("/organisation/domains/check", post(organisation::check_domain))
        .route("/organisation/connections", post(organisation::add_connection))
        .route("/organisation/connections/{id}/delete", post(organisation::remove_connection))
        .route("/organisation/invitations/{id}/cancel", post(organisation::cancel_invitation))
        .route("/organisation/members/{id}/enable", post(organisation::enable))
        .route("/organisation/apps", post(organisation::register_app))
        .route("/organisation/apps/{id}/revoke", post(organisation::revoke_app))
        .route("/organisation/webhooks", post(organisation::register_webhook))
        .route("/organisation/webhooks/{id}/delete", post(organisation::delete_webhook))
        .route("/v1/sessions/refresh/page", post(account::resume))
        .route("/organisation", get(organisation::page))
        .route("/organisation/members/{id}/roles", post(organisation::set_roles))
        .route("/organisation/members/{id}/disable", post(organisation::disable))
        .route("/account/totp", post(totp::enrol))
        .route("/account/totp/confirm", post(totp::confirm))
        .route("/account/totp/disable", post(totp::disable))
        .route("/forgot-password", get(password::forgot_page).post(password::forgot_submit))
        .route("/reset-password", get(password::reset_page).post(password::reset_submit))
        .route("/login/passkey", post(login::passkey_challenge))
        .route("/login/sso/callback", get(sso::callback))
        .route("/account/identities/link", post(sso::link))
        .route("/account/identities/{id}/unlink", post(account::unlink_identity))
        .route("/login/sso/{id}", get(sso::start))
        .route("/saml/{id}/acs", post(sso::acs))
        .route("/saml/{id}/metadata", get(sso::metadata))
        .route("/oauth2/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/oauth2/continue", get(authorize::resume_request))
        .route("/oauth2/consent", post(authorize::consent))
        .route("/oauth2/logout", get(authorize::logout_page).post(authorize::logout_confirm))
        .route("/pages/static/pages.css", get(stylesheet))
        .route("/pages/static/pages.js", get(script))
        .route("/pages/theme.css", get(theme))
        .layer(middleware::from_fn_with_state(pages.clone(), page_headers))
        .with_state(pages))
}

/// Scripts, styles and form targets from this server only; images also from the logo's
/// origin; never framed (clickjacking); forms may end in a redirect to a `return_to` origin.
fn content_security_policy(app: &AppState) -> String {
    let cfg = &app.cfg.pages;
    let mut img = "'self' data:".to_string();
    if let Some(logo) = cfg.logo_url.as_deref().filter(|l| l.starts_with("https://")) {
        img = format!("{img} {}", crate::config::origin_of(logo));
    }
    let mut form = "'self'".to_string();
    for origin in &cfg.return_to_origins {
        form = format!("{form} {origin}");
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src {img}; connect-src 'self'; form-action {form}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Headers of every page: strict CSP, no framing, no sniffing, nothing cached (pages show
/// secrets and personal data), no referrer to other sites (URLs may hold a `return_to`);
/// `no-referrer` would also make the browser send `Origin: null` on our own forms.
async fn page_headers(State(pages): State<PagesState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let csp = match resp.extensions().get::<FormTarget>() {
        Some(FormTarget(source)) => pages.csp.replacen("form-action 'self'", &format!("form-action 'self' {source}"), 1),
        None => pages.csp.clone(),
    };
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn home(State(pages): State<PagesState>) -> Response {
    pages.redirect(&pages.path("/account"), Vec::new())
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", view::STYLESHEET.to_string())
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", view::SCRIPT.to_string())
}

/// The operator's colours (validated `#rrggbb`), as CSS: the CSP allows no inline style.
async fn theme(State(pages): State<PagesState>) -> Response {
    asset("text/css; charset=utf-8", format!(":root {{ --accent: {}; }}\n", pages.app.cfg.pages.accent_color))
}

fn asset(content_type: &'static str, body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// Why a page answers with an error: the API's refusal (its headers are passed on, so the
/// `x-error-id` is the one in the API's log line) or the page's own.
pub enum Failure<'a> {
    Api(&'a Reply),
    Page(StatusCode, &'static str, &'static str),
}

impl Failure<'_> {
    fn status(&self) -> StatusCode {
        match self {
            Failure::Api(r) => r.status,
            Failure::Page(s, ..) => *s,
        }
    }

    fn code(&self) -> &str {
        match self {
            Failure::Api(r) => r.code(),
            Failure::Page(_, code, _) => code,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Api(r) => r.message(),
            Failure::Page(_, _, m) => m,
        }
    }

    fn headers(&self, h: &mut HeaderMap) {
        if let Failure::Api(r) = self {
            if r.headers.contains_key("x-error-code") {
                for name in ["x-error", "x-error-id", "x-error-code", "retry-after"] {
                    if let Some(v) = r.headers.get(name) {
                        h.insert(name, v.clone());
                    }
                }
                return;
            }
        }
        let (code, message) = match self {
            Failure::Api(r) => (r.code(), r.message()),
            Failure::Page(_, code, message) => (*code, *message),
        };
        let id = error_id();
        tracing::info!(error_id = %id, error_code = code, status = self.status().as_u16(), "page refused");
        set_error_headers(h, code, message, &id);
    }
}

impl From<FormRefusal> for Failure<'static> {
    fn from(r: FormRefusal) -> Self {
        Failure::Page(StatusCode::FORBIDDEN, r.code(), r.message())
    }
}

impl Pages {
    /// The context every template gets.
    fn ctx(&self, title: &str, csrf: &str) -> Map<String, Value> {
        let cfg = &self.app.cfg.pages;
        let mut m = Map::new();
        m.insert("title".into(), json!(title));
        m.insert("product".into(), json!(cfg.product_name));
        m.insert(
            "logo".into(),
            json!(cfg.logo_url.as_deref().map(|l| if l.starts_with('/') { format!("{}{l}", self.base()) } else { l.to_string() })),
        );
        m.insert("base".into(), json!(self.base()));
        m.insert("csrf".into(), json!(csrf));
        m
    }

    fn base(&self) -> &str {
        self.app.cfg.public_path()
    }

    /// A rendered page; `failure` sets the status and the error headers and shows its message.
    fn html(&self, template: &str, mut ctx: Map<String, Value>, cookies: Vec<HeaderValue>, failure: Option<Failure<'_>>) -> Response {
        let status = failure.as_ref().map_or(StatusCode::OK, Failure::status);
        if let Some(f) = &failure {
            ctx.insert("error".into(), json!(f.message()));
        }
        let body = match self.views.render(template, &Value::Object(ctx)) {
            Ok(b) => b,
            Err(e) => {
                let id = error_id();
                tracing::error!(error_id = %id, template, detail = %e, "page: template failed");
                let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response();
                set_error_headers(resp.headers_mut(), "internal_error", "internal server error", &id);
                return resp;
            }
        };
        let mut resp = (status, axum::response::Html(body)).into_response();
        for c in cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        if let Some(f) = failure {
            f.headers(resp.headers_mut());
        }
        resp
    }

    /// The error page, for failures no form can recover from.
    fn error_page(&self, failure: Failure<'_>) -> Response {
        let ctx = self.ctx("Something went wrong", "");
        self.html("error.html", ctx, Vec::new(), Some(failure))
    }

    /// A path of this server's pages (`public_url`'s path first).
    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.base())
    }

    /// 303 to `location`: a [`Pages::path`] or a `return_to` that passed [`guard::return_to`].
    fn redirect(&self, location: &str, cookies: Vec<HeaderValue>) -> Response {
        let mut resp = StatusCode::SEE_OTHER.into_response();
        match HeaderValue::from_str(location) {
            Ok(v) => resp.headers_mut().insert(header::LOCATION, v),
            Err(_) => return self.error_page(Failure::Page(StatusCode::BAD_REQUEST, "invalid_request", "invalid redirect target")),
        };
        for c in cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }
}

/// A URL-encoded form, as name/value pairs (a name may repeat: the roles of a new API key).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;
    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024).await.map_err(|_| refuse_form("the form is too large"))?;
        if !form_type {
            return Err(refuse_form("send the form as application/x-www-form-urlencoded"));
        }
        serde_urlencoded::from_bytes(&bytes).map(Form).map_err(|_| refuse_form("the form could not be read"))
    }
}

/// A body that is not a form: the API's error, as every other refusal.
fn refuse_form(message: &'static str) -> Response {
    crate::error::ApiError::bad_request("invalid_request", message).into_response()
}

/// A fixed notice for `?done=…` (never text from the URL itself).
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "signup" => "Your email address is verified. Sign in to continue.",
        "logout" => "You are signed out.",
        "resent" => "A new code is on its way.",
        "session_revoked" => "The session is signed out.",
        "key_revoked" => "The API key is revoked.",
        "name_saved" => "Your name is saved.",
        "email_changed" => "Your address is changed: sign in with it from now on. Your other sessions are signed out.",
        "roles_changed" => "The roles are saved. They reach the member's tokens at the next sign-in or refresh.",
        "member_disabled" => "The member is disabled: their sessions and API keys are revoked.",
        "totp_on" => "The authenticator app is on: sign-ins now ask for its code after the password.",
        "totp_off" => "The authenticator app is off.",
        "reset" => "Your password is changed and every other session is signed out. Sign in with the new password.",
        "passkey_added" => "The passkey is added: use it next time you sign in.",
        "passkey_removed" => "The passkey is removed.",
        "invited" => "You have joined: sign in with your new password.",
        "joined" => "You have joined: sign in and choose the organisation.",
        "invitation_sent" => "The invitation is on its way: its link works once.",
        "auth_saved" => "The sign-in rules are saved. They apply to sign-ins from now on.",
        "domain_added" => "The domain is asked for: publish its TXT record, then check it (or ask your operator to verify it).",
        "connection_added" => "The identity provider is added: people of your domains see it when they sign in.",
        "connection_removed" => "The identity provider is removed: it signs nobody in any more.",
        "domain_verified" => "The domain is verified: its addresses sign in under these rules from now on.",
        "domain_removed" => "The domain is removed: its addresses sign in under the usual rules.",
        "invitation_cancelled" => "The invitation is cancelled: its link no longer works.",
        "member_enabled" => "The member is active again: they can sign in.",
        "app_revoked" => "The app's access is taken back: it is signed out.",
        "identity_linked" => "The identity provider is linked: you can sign in with it.",
        "identity_unlinked" => "The identity provider is unlinked: it no longer signs you in.",
        "webhook_deleted" => "The webhook is deleted: nothing more is sent to it.",
        "app_client_revoked" => "The app is revoked: its tokens and sessions have ended.",
        _ => return None,
    })
}
