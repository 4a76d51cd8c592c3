//! Header rules: which client-sent headers are identity headers (and removed), what a header
//! name may be in config, and how forwarded identity values are written so every host sends
//! upstream the same bytes.

use std::borrow::Cow;

use crate::config::HeaderNames;

/// A lowercase header name as config accepts it.
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Header-name comparison for identity headers: case-insensitive, and `_` equal to `-`, because
/// CGI-style upstreams (WSGI, PHP, Rack) read `x_auth_subject` and `x-auth-subject` as the same
/// `HTTP_X_AUTH_SUBJECT`.
fn byte_eq(a: u8, b: u8) -> bool {
    let norm = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    norm(a) == norm(b)
}

fn starts_with(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes().iter().zip(prefix.as_bytes()).all(|(a, b)| byte_eq(*a, *b))
}

/// The identity headers a client must never set: everything under `strip_prefix`, and each
/// configured identity header name outside it.
#[derive(Clone, Debug)]
pub(crate) struct IdentityHeaders {
    prefix: String,
    extra: Vec<String>,
}

impl IdentityHeaders {
    pub(crate) fn new(names: &HeaderNames) -> IdentityHeaders {
        let extra = names.all().into_iter().map(|(_, n)| n).filter(|n| !n.starts_with(&names.strip_prefix)).map(str::to_string).collect();
        IdentityHeaders { prefix: names.strip_prefix.clone(), extra }
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        starts_with(name, &self.prefix) || self.extra.iter().any(|n| n.len() == name.len() && starts_with(name, n))
    }
}

/// An identity value as it goes upstream. Header values are bytes, and hosts write non-ASCII
/// differently (Envoy sends UTF-8, the Fetch API refuses characters above U+00FF and writes
/// Latin-1 for the rest), so values are percent-encoded (RFC 3986 style, UTF-8) wherever they
/// hold a byte outside printable ASCII or a `%` itself: the same bytes on every host, and no two
/// values encode alike. Plain ASCII values, nearly all of them, are borrowed unchanged.
pub fn forwarded_value(value: &str) -> Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if value.bytes().all(plain) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_header_matching() {
        let names = HeaderNames { subject: "x-user".into(), ..HeaderNames::default() };
        let h = IdentityHeaders::new(&names);
        for yes in ["x-auth-roles", "X-Auth-Roles", "x_auth_roles", "X_AUTH_SUBJECT", "x-auth-", "x-user", "X_User"] {
            assert!(h.matches(yes), "{yes}");
        }
        for no in ["x-aut", "x-user-agent", "x-use", "authorization", "x-authz"] {
            assert!(!h.matches(no), "{no}");
        }
    }

    #[test]
    fn forwarded_values_are_ascii_and_unambiguous() {
        assert!(matches!(forwarded_value("alice@example.com"), Cow::Borrowed(_)));
        assert_eq!(forwarded_value("josé@example.com"), "jos%C3%A9@example.com");
        assert_eq!(forwarded_value("100%"), "100%25");
        assert_eq!(forwarded_value("jos%C3%A9@example.com"), "jos%25C3%25A9@example.com", "differs from the encoded é");
        assert_eq!(forwarded_value("a\u{2028}b"), "a%E2%80%A8b");
        assert_eq!(forwarded_value("tab\there"), "tab%09here");
    }
}
