//! What a page's form must prove before it reaches the API (it comes from our own pages, in
//! this browser), where a login may return to, and the pages' own short-lived cookies.

use axum::http::{header, HeaderMap, HeaderValue};

use crate::app::App;
use crate::config::{origin_of, Config};
use crate::crypto;
use crate::http::auth::{cookie_header, get_cookie};

/// The pages' cookies: the form token of pages seen before login, the login in progress, the
/// sign-up waiting for its code, the API key waiting for its code, the address change waiting
/// for its code, and the identity provider's sign-in in progress. HttpOnly, SameSite=Strict —
/// but the last, which must come back with the provider's cross-site redirect (SameSite=Lax).
#[derive(Clone, Copy)]
pub enum PageCookie {
    Form,
    Login,
    SignUp,
    KeyRequest,
    EmailChange,
    Sso,
}

impl PageCookie {
    pub fn name(self, app: &App) -> String {
        let prefix = if app.cfg.cookies.secure { "__Host-" } else { "" };
        let base = match self {
            PageCookie::Form => "authgate_form",
            PageCookie::Login => "authgate_login",
            PageCookie::SignUp => "authgate_signup",
            PageCookie::KeyRequest => "authgate_keyreq",
            PageCookie::EmailChange => "authgate_emailchange",
            PageCookie::Sso => "authgate_sso",
        };
        format!("{prefix}{base}")
    }

    pub fn get(self, app: &App, headers: &HeaderMap) -> Option<String> {
        get_cookie(headers, &self.name(app)).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// `value` is base64url or our own `.`/`~`-joined base64url parts: always header-safe.
    pub fn set(self, app: &App, value: &str, max_age: i64) -> HeaderValue {
        // `__Host-` cookies must have `Path=/`; they are host-only (no Domain) either way.
        let same_site = if matches!(self, PageCookie::Sso) { "Lax" } else { "Strict" };
        cookie_header(&self.name(app), value, "/", max_age, same_site, true, app)
            .unwrap_or_else(|_| HeaderValue::from_static("authgate_invalid=; Max-Age=0"))
    }

    pub fn clear(self, app: &App) -> HeaderValue {
        self.set(app, "", 0)
    }
}

/// Why a form was refused before it reached the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormRefusal {
    /// `Origin` or `Sec-Fetch-Site` says another site sent it.
    CrossSite,
    /// The form's token is missing or not this browser's.
    BadToken,
}

impl FormRefusal {
    pub fn code(self) -> &'static str {
        match self {
            FormRefusal::CrossSite => "csrf_origin_mismatch",
            FormRefusal::BadToken => "csrf_token_invalid",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            FormRefusal::CrossSite => "this form was sent from another site",
            FormRefusal::BadToken => "this form has expired: reload the page and try again",
        }
    }
}

/// The browser's own statement of where a request comes from: `Origin` must be ours when sent,
/// and `Sec-Fetch-Site` (sent by every current browser) must not be `cross-site`/`same-site`.
pub fn same_origin(app: &App, headers: &HeaderMap) -> Result<(), FormRefusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.as_bytes() != app.cfg.public_origin().as_bytes() {
            return Err(FormRefusal::CrossSite);
        }
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(_) => Err(FormRefusal::CrossSite),
    }
}

/// A form sent before login: same origin, and its `csrf` field equal to this browser's form
/// cookie (random, HttpOnly, `__Host-`: another site can neither read nor plant it).
pub fn check_anonymous_form(app: &App, headers: &HeaderMap, field: Option<&str>) -> Result<(), FormRefusal> {
    same_origin(app, headers)?;
    let cookie = PageCookie::Form.get(app, headers).ok_or(FormRefusal::BadToken)?;
    match field {
        Some(f) if crypto::ct_eq(f.as_bytes(), cookie.as_bytes()) => Ok(()),
        _ => Err(FormRefusal::BadToken),
    }
}

/// This browser's form token, and the cookie that sets it when it has none yet.
pub fn form_token(app: &App, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match PageCookie::Form.get(app, headers) {
        Some(t) if t.len() == 43 => (t, None),
        _ => {
            let t = auth_core::b64::encode(&crypto::random_bytes(32));
            let cookie = PageCookie::Form.set(app, &t, 7 * 86400);
            (t, Some(cookie))
        }
    }
}

/// Where a finished login may go: a path on this server, or a URL on an origin the operator
/// listed (`pages.return_to_origins`). Everything else — other hosts, scheme-relative `//x`,
/// `/\x` (browsers read it as `//x`), userinfo tricks, control characters — is refused.
pub fn return_to(cfg: &Config, raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 2048 || !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains('\\') {
        return None;
    }
    if raw.starts_with('/') {
        return (!raw.starts_with("//")).then(|| raw.to_string());
    }
    raw.find("://")?;
    let origin = origin_of(raw);
    let allowed = origin == cfg.public_origin() || cfg.pages.return_to_origins.iter().any(|o| o == origin);
    let rest = &raw[origin.len()..];
    (allowed && (rest.is_empty() || rest.starts_with('/'))).then(|| raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(origins: &[&str]) -> Config {
        let mut cfg = Config::default();
        cfg.public_url = "https://auth.example.com".into();
        cfg.pages.return_to_origins = origins.iter().map(|s| s.to_string()).collect();
        cfg
    }

    #[test]
    fn return_to_takes_only_our_paths_and_listed_origins() {
        let cfg = config_with(&["https://app.example.com"]);
        for good in [
            "/account",
            "/account?tab=keys#x",
            "https://auth.example.com/account",
            "https://app.example.com",
            "https://app.example.com/cb?x=1",
        ] {
            assert_eq!(return_to(&cfg, good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "https://app.example.com:443@evil.example",
            "http://app.example.com/",
            "https://APP.example.com/",
            "javascript:alert(1)",
            "account",
            "/ok\tpath",
            "/ok path",
            "https://app.example.comx/",
        ] {
            assert_eq!(return_to(&cfg, bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Differential check against the WHATWG URL parser (the `url` crate, as browsers read
        /// a `Location`): whatever `return_to` accepts, resolved against our origin, lands on our
        /// origin or on a listed one — never anywhere else, however the string is spelled.
        #[test]
        fn whatever_return_to_accepts_a_browser_resolves_to_an_allowed_origin(
            raw in proptest::string::string_regex("(https?:)?(/|\\\\|//|///)?([a-z.@:%\\\\/?#\t ]|app\\.example\\.com|auth\\.example\\.com|evil\\.example|:443|%2f|%5c|@){0,12}").unwrap()
        ) {
            let cfg = config_with(&["https://app.example.com"]);
            if let Some(accepted) = return_to(&cfg, &raw) {
                let base = webauthn_rs::prelude::Url::parse("https://auth.example.com/login/step").unwrap();
                // A string the parser refuses is one no browser can follow either.
                if let Ok(resolved) = base.join(&accepted) {
                    let origin = resolved.origin().ascii_serialization();
                    proptest::prop_assert!(origin == "https://auth.example.com" || origin == "https://app.example.com", "{raw:?} -> {resolved}");
                }
            }
        }
    }
}
