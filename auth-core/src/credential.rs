//! Reading a request's headers once: the credential it carries (bearer token, API key in either
//! header form, or an access-token cookie), the identity headers to remove, what it says about
//! CSRF, and the methods it asks an upstream to run. Used by the gateway and, without routes,
//! by the auth-server ([`extract`]).

use std::borrow::Cow;

use crate::apikey;
use crate::config::CookieConfig;
use crate::cookie::{self, CsrfEvidence};
use crate::error::ErrorCode;
use crate::headers::IdentityHeaders;
use crate::route::METHOD_OVERRIDE_HEADERS;

/// A credential as presented, not yet verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `x-api-key` + `x-api-secret`, or `authorization: ApiKey <key_id>.<secret>`.
    ApiKey { key_id: &'a str, secret: &'a str },
    /// The access token from the configured cookie (only looked at without a header credential).
    Cookie(&'a str),
}

/// How often a credential field was seen, and its first value.
#[derive(Default, Clone, Copy)]
struct Seen<'a> {
    count: usize,
    first: Option<&'a str>,
}

impl<'a> Seen<'a> {
    fn add(&mut self, value: &'a str) {
        self.count += 1;
        self.first.get_or_insert(value);
    }
}

/// Everything `decide` needs from the headers, gathered in one pass.
#[derive(Default)]
pub(crate) struct HeaderScan<'a> {
    /// Client-sent identity headers, lowercase, to remove before forwarding.
    pub remove: Vec<Cow<'static, str>>,
    authorization: Seen<'a>,
    api_key: Seen<'a>,
    api_secret: Seen<'a>,
    cookie_token: Seen<'a>,
    pub csrf: CsrfEvidence<'a>,
    /// Values of method-override headers.
    pub overrides: Vec<&'a str>,
    /// Raw `Cookie` header values (for stripping auth cookies before forwarding).
    pub cookie_headers: Vec<&'a str>,
}

/// Scans the headers. `identity` marks headers to remove (none for the server); `cookie` is the
/// cookie-credential config, if any.
pub(crate) fn scan<'a>(
    headers: &[(&'a str, &'a str)],
    identity: Option<&IdentityHeaders>,
    cookie: Option<&CookieConfig>,
) -> HeaderScan<'a> {
    let mut s = HeaderScan::default();
    for (name, value) in headers {
        if identity.is_some_and(|h| h.matches(name)) {
            s.remove.push(Cow::Owned(name.to_ascii_lowercase()));
            continue;
        }
        let field = if name.eq_ignore_ascii_case("authorization") {
            Some(&mut s.authorization)
        } else if name.eq_ignore_ascii_case("x-api-key") {
            Some(&mut s.api_key)
        } else if name.eq_ignore_ascii_case("x-api-secret") {
            Some(&mut s.api_secret)
        } else {
            None
        };
        if let Some(seen) = field {
            // Intermediaries (Envoy, the Fetch API) merge repeated fields into one comma-joined
            // value: split it back so two credentials stay two.
            for part in crate::coalesce::credential_values(name, value) {
                seen.add(part);
            }
            continue;
        }
        if METHOD_OVERRIDE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            s.overrides.push(value.trim());
            continue;
        }
        let Some(cc) = cookie else { continue };
        if name.eq_ignore_ascii_case("cookie") {
            s.cookie_headers.push(value);
            for (k, v) in cookie::pairs(value) {
                if k == cc.name {
                    s.cookie_token.add(v);
                } else if k == cc.csrf_cookie {
                    s.csrf.cookie.push(v);
                }
            }
        } else if name.eq_ignore_ascii_case("origin") {
            s.csrf.origin = Some(value);
        } else if name.eq_ignore_ascii_case(&cc.csrf_header) {
            s.csrf.header.push(value);
        }
    }
    s
}

impl<'a> HeaderScan<'a> {
    /// The one credential of the request. A header credential is the client's explicit choice;
    /// the cookie is only looked at without one. More than one credential is
    /// `conflicting_credentials`.
    pub(crate) fn credential(&self) -> Result<Option<Credential<'a>>, ErrorCode> {
        let (auth, key, secret) = (self.authorization, self.api_key, self.api_secret);
        if auth.count > 1 || key.count > 1 || secret.count > 1 || (auth.count == 1 && key.count + secret.count > 0) {
            return Err(ErrorCode::ConflictingCredentials);
        }
        if let Some(value) = auth.first {
            let value = value.trim();
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                return if rest.is_empty() { Err(ErrorCode::TokenMalformed) } else { Ok(Some(Credential::Bearer(rest))) };
            }
            if scheme.eq_ignore_ascii_case("apikey") {
                let (key_id, secret) = apikey::split_combined(rest).ok_or(ErrorCode::ApiKeyMalformed)?;
                return Ok(Some(Credential::ApiKey { key_id, secret }));
            }
            return Err(ErrorCode::UnsupportedScheme);
        }
        match (key.first, secret.first) {
            (Some(k), Some(s)) if !k.trim().is_empty() && !s.trim().is_empty() => {
                return Ok(Some(Credential::ApiKey { key_id: k.trim(), secret: s.trim() }))
            }
            (None, None) => {}
            _ => return Err(ErrorCode::ApiKeyMalformed),
        }
        match self.cookie_token.first {
            Some(token) if !token.is_empty() => {
                if self.cookie_token.count > 1 {
                    return Err(ErrorCode::ConflictingCredentials);
                }
                Ok(Some(Credential::Cookie(token)))
            }
            _ => Ok(None),
        }
    }
}

/// The credential of a request, for hosts that judge credentials without routes (the
/// auth-server): the same header rules as the gateways (duplicates refused, merged fields
/// split, the cookie only without a header credential).
pub fn extract<'a>(headers: &[(&'a str, &'a str)], cookie: Option<&CookieConfig>) -> Result<Option<Credential<'a>>, ErrorCode> {
    scan(headers, None, cookie).credential()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc() -> CookieConfig {
        CookieConfig { name: "at".into(), csrf_cookie: "csrf".into(), csrf_header: "x-csrf-token".into(), allowed_origins: vec![] }
    }

    #[test]
    fn one_credential_per_request() {
        assert_eq!(extract(&[("Authorization", "Bearer a.b.c")], None), Ok(Some(Credential::Bearer("a.b.c"))));
        assert_eq!(extract(&[("authorization", "bearer   a.b.c ")], None), Ok(Some(Credential::Bearer("a.b.c"))));
        assert_eq!(extract(&[("authorization", "ApiKey agk_x.s")], None), Ok(Some(Credential::ApiKey { key_id: "agk_x", secret: "s" })));
        assert_eq!(
            extract(&[("x-api-key", " agk_x "), ("X-Api-Secret", "s")], None),
            Ok(Some(Credential::ApiKey { key_id: "agk_x", secret: "s" }))
        );
        assert_eq!(extract(&[], None), Ok(None));
        for (headers, code) in [
            (vec![("authorization", "Bearer a"), ("authorization", "Bearer b")], ErrorCode::ConflictingCredentials),
            (vec![("authorization", "Bearer a.b.c, Bearer d.e.f")], ErrorCode::ConflictingCredentials),
            (vec![("authorization", "Bearer a"), ("x-api-key", "k")], ErrorCode::ConflictingCredentials),
            (vec![("x-api-key", "k"), ("x-api-key", "k2"), ("x-api-secret", "s")], ErrorCode::ConflictingCredentials),
            (vec![("x-api-key", "k")], ErrorCode::ApiKeyMalformed),
            (vec![("x-api-secret", "s")], ErrorCode::ApiKeyMalformed),
            (vec![("x-api-key", " "), ("x-api-secret", "s")], ErrorCode::ApiKeyMalformed),
            (vec![("authorization", "Bearer")], ErrorCode::TokenMalformed),
            (vec![("authorization", "Basic dXNlcg==")], ErrorCode::UnsupportedScheme),
            (vec![("authorization", "ApiKey nodot")], ErrorCode::ApiKeyMalformed),
        ] {
            assert_eq!(extract(&headers, None), Err(code), "{headers:?}");
        }
    }

    #[test]
    fn cookie_only_without_a_header_credential() {
        let c = cc();
        assert_eq!(extract(&[("cookie", "a=1; at=x.y.z")], Some(&c)), Ok(Some(Credential::Cookie("x.y.z"))));
        assert_eq!(extract(&[("cookie", "at=x.y.z"), ("authorization", "Bearer h.e.d")], Some(&c)), Ok(Some(Credential::Bearer("h.e.d"))));
        assert_eq!(extract(&[("cookie", "at=x; at=y")], Some(&c)), Err(ErrorCode::ConflictingCredentials));
        assert_eq!(extract(&[("cookie", "at=")], Some(&c)), Ok(None));
        assert_eq!(extract(&[("cookie", "at=x.y.z")], None), Ok(None), "no cookie config: cookies are not credentials");
    }

    #[test]
    fn scan_collects_removals_overrides_and_csrf() {
        let c = cc();
        let ids = IdentityHeaders::new(&crate::config::HeaderNames::default());
        let headers = [
            ("X-Auth-Subject", "admin"),
            ("x-http-method-override", " DELETE "),
            ("origin", "https://a"),
            ("x-csrf-token", "t"),
            ("cookie", "csrf=t"),
        ];
        let s = scan(&headers, Some(&ids), Some(&c));
        assert_eq!(s.remove, vec![Cow::Borrowed("x-auth-subject")]);
        assert_eq!(s.overrides, vec!["DELETE"]);
        assert_eq!((s.csrf.origin, s.csrf.header.as_slice(), s.csrf.cookie.as_slice()), (Some("https://a"), &["t"][..], &["t"][..]));
    }
}
