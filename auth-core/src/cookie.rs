//! Access tokens in cookies (web apps): reading `Cookie` headers, validating the cookie config,
//! and the CSRF check a cookie-authenticated unsafe request must pass.
//!
//! A browser attaches cookies to requests other sites make it send, so a cookie alone proves
//! nothing about intent. The auth-server's cookie mode gives the page a readable CSRF cookie;
//! the page repeats it in a header (double submit), which a cross-site request can neither read
//! nor set. `__Host-` cookies cannot be planted by a sibling domain, which closes the classic
//! gap of double submit.

use subtle::ConstantTimeEq;

use crate::config::CookieConfig;
use crate::error::{ConfigError, ErrorCode};

/// The `name=value` pairs of one `Cookie` header value. Pairs are separated by `;` (RFC 6265);
/// `,` is split too because intermediaries (the Fetch API) join repeated `Cookie` headers with
/// it, and a cookie value never contains one.
pub fn pairs(header_value: &str) -> impl Iterator<Item = (&str, &str)> {
    header_value.split([';', ',']).filter_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        let v = v.trim();
        // RFC 6265 allows a DQUOTE'd value.
        let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
        Some((k.trim(), v))
    })
}

/// Unsafe methods are the ones a forged cross-site request could use to change something.
pub fn needs_csrf(method: &str) -> bool {
    !["GET", "HEAD", "OPTIONS"].iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// What a request said about CSRF, gathered while `decide` walks the headers.
#[derive(Default)]
pub(crate) struct CsrfEvidence<'a> {
    pub cookie: Vec<&'a str>,
    pub header: Vec<&'a str>,
    pub origin: Option<&'a str>,
}

impl CsrfEvidence<'_> {
    /// The double-submit check: exactly one CSRF cookie and one CSRF header, equal (compared in
    /// constant time), and an allowed `Origin` when the config lists origins.
    pub fn check(&self, cfg: &CookieConfig) -> Result<(), ErrorCode> {
        if let Some(origin) = self.origin {
            if !cfg.allowed_origins.is_empty() && !cfg.allowed_origins.iter().any(|o| o == origin.trim()) {
                return Err(ErrorCode::CsrfOriginMismatch);
            }
        }
        match (self.cookie.as_slice(), self.header.as_slice()) {
            ([cookie], [header]) if !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(header.trim().as_bytes())) => Ok(()),
            _ => Err(ErrorCode::CsrfTokenInvalid),
        }
    }
}

/// RFC 6265 cookie-name: an RFC 7230 token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else { return false };
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Validates the `cookie` block; `is_header_name` is the gateway's header-name rule and
/// `strip_prefix` the identity-header prefix (the CSRF header must not be one of ours).
pub(crate) fn validate(cfg: &CookieConfig, is_header_name: fn(&str) -> bool, strip_prefix: &str) -> Result<(), ConfigError> {
    if !is_cookie_name(&cfg.name) {
        return Err(ConfigError::new("cookie.name", "must be a cookie name (an RFC 7230 token)"));
    }
    if !is_cookie_name(&cfg.csrf_cookie) {
        return Err(ConfigError::new("cookie.csrf_cookie", "must be a cookie name (an RFC 7230 token)"));
    }
    if cfg.csrf_cookie == cfg.name {
        return Err(ConfigError::new("cookie.csrf_cookie", "must differ from cookie.name"));
    }
    let h = cfg.csrf_header.as_str();
    if !is_header_name(h) {
        return Err(ConfigError::new("cookie.csrf_header", "must be a lowercase header name"));
    }
    if ["cookie", "origin", "authorization", "x-api-key", "x-api-secret"].contains(&h) || h.starts_with(strip_prefix) {
        return Err(ConfigError::new("cookie.csrf_header", "must not be a credential, cookie, origin or identity header"));
    }
    if let Some(i) = cfg.allowed_origins.iter().position(|o| !is_origin(o)) {
        return Err(ConfigError::new(format!("cookie.allowed_origins[{i}]"), "must be an origin: scheme://host[:port] with no path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CookieConfig {
        CookieConfig { name: "at".into(), csrf_cookie: "csrf".into(), csrf_header: "x-csrf-token".into(), allowed_origins: vec![] }
    }

    #[test]
    fn pairs_of_joined_and_quoted_cookies() {
        let v: Vec<_> = pairs(r#"a=1; at="x.y.z";b=2, csrf=t"#).collect();
        assert_eq!(v, vec![("a", "1"), ("at", "x.y.z"), ("b", "2"), ("csrf", "t")]);
        assert_eq!(pairs("novalue; =x").collect::<Vec<_>>(), vec![("", "x")]);
    }

    #[test]
    fn double_submit() {
        let c = cfg();
        let ok = CsrfEvidence { cookie: vec!["t1"], header: vec!["t1"], origin: None };
        assert_eq!(ok.check(&c), Ok(()));
        for (cookie, header) in
            [(vec!["t1"], vec!["t2"]), (vec![], vec!["t1"]), (vec!["t1"], vec![]), (vec!["t1", "t1"], vec!["t1"]), (vec![""], vec![""])]
        {
            let e = CsrfEvidence { cookie, header, origin: None };
            assert_eq!(e.check(&c), Err(ErrorCode::CsrfTokenInvalid));
        }
        let c = CookieConfig { allowed_origins: vec!["https://app.example".into()], ..cfg() };
        let from = |o| CsrfEvidence { cookie: vec!["t"], header: vec!["t"], origin: Some(o) };
        assert_eq!(from("https://app.example").check(&c), Ok(()));
        assert_eq!(from("https://evil.example").check(&c), Err(ErrorCode::CsrfOriginMismatch));
        assert_eq!(from("null").check(&c), Err(ErrorCode::CsrfOriginMismatch));
    }

    #[test]
    fn safe_methods() {
        assert!(!needs_csrf("GET") && !needs_csrf("head") && !needs_csrf("OPTIONS"));
        assert!(needs_csrf("POST") && needs_csrf("DELETE") && needs_csrf("PATCH") && needs_csrf("PUT"));
    }

    /// Every rule of the `cookie` block refuses with the field it is about; a good block passes.
    #[test]
    fn config_validation_names_the_field() {
        let check = |c: &CookieConfig| validate(c, crate::headers::is_header_name, "x-auth-").map_err(|e| e.path);
        let mut good = cfg();
        good.allowed_origins = vec!["https://app.example".into(), "http://localhost:8080".into(), "https://[::1]:8443".into()];
        assert_eq!(check(&good), Ok(()));

        let with = |f: &dyn Fn(&mut CookieConfig)| {
            let mut c = good.clone();
            f(&mut c);
            check(&c)
        };
        for bad in ["", "a b", "a;b", "a=b", "é", "a,b"] {
            assert_eq!(with(&|c| c.name = bad.into()), Err("cookie.name".into()), "name {bad:?}");
            assert_eq!(with(&|c| c.csrf_cookie = bad.into()), Err("cookie.csrf_cookie".into()), "csrf_cookie {bad:?}");
        }
        assert_eq!(with(&|c| c.csrf_cookie = c.name.clone()), Err("cookie.csrf_cookie".into()));
        for bad in ["", "X-Csrf", "x csrf", "cookie", "origin", "authorization", "x-api-key", "x-api-secret", "x-auth-csrf"] {
            assert_eq!(with(&|c| c.csrf_header = bad.into()), Err("cookie.csrf_header".into()), "csrf_header {bad:?}");
        }
        for (i, bad) in [
            "https://",
            "ftp://app.example",
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://a b",
            "https://app.example?x",
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = good.clone();
            c.allowed_origins.push(bad.into());
            assert_eq!(check(&c), Err(format!("cookie.allowed_origins[{}]", 3)), "origin {bad:?} ({i})");
        }
    }
}
