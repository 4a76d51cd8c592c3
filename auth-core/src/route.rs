//! Route rules: canonical-path check, then first match wins.

use crate::config::{CredentialKind, Requirement, RouteConfig, StalePolicy};

/// A route rule ready for matching.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub matcher: PathMatch,
    pub methods: Option<Vec<String>>,
    pub require: Requirement,
    pub accepts_jwt: bool,
    pub accepts_api_key: bool,
    pub on_stale: StalePolicy,
    pub strip_credential: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl Route {
    pub(crate) fn compile(cfg: &RouteConfig) -> Route {
        let matcher = match (&cfg.path, &cfg.prefix) {
            (Some(p), _) => PathMatch::Exact(p.clone()),
            (None, Some(p)) => PathMatch::Prefix(p.clone()),
            (None, None) => PathMatch::Prefix("/".into()),
        };
        let kinds = cfg.credentials.as_deref();
        Route {
            matcher,
            methods: cfg.methods.as_ref().map(|m| m.iter().map(|s| s.to_ascii_uppercase()).collect()),
            require: cfg.require.clone(),
            accepts_jwt: kinds.map_or(true, |k| k.contains(&CredentialKind::Jwt)),
            accepts_api_key: kinds.map_or(true, |k| k.contains(&CredentialKind::ApiKey)),
            on_stale: cfg.on_stale,
            strip_credential: cfg.strip_credential,
        }
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (path.len() == p.len() || p.ends_with('/') || path.as_bytes()[p.len()] == b'/')
            }
        };
        path_ok && self.methods.as_ref().map_or(true, |m| m.iter().any(|x| x == method))
    }
}

/// The path part of a request target (query and fragment cut), checked to be canonical: it
/// starts with `/`, has no dot segments (plain or `%2e`-encoded), no encoded `/` or `\`, no `\`,
/// no control characters. Runs of `/` are merged, as most upstreams do, so `//admin` cannot slip
/// past a `/admin` rule. `None` means the request is refused with `invalid_path`.
pub(crate) fn canonical_path(target: &str) -> Option<std::borrow::Cow<'_, str>> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let path = &target[..end];
    if !path.starts_with('/') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' | 0..=0x1f | 0x7f => return None,
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let decoded = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                if matches!(decoded, b'/' | b'\\' | 0..=0x1f | 0x7f) {
                    return None;
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    for segment in path.split('/') {
        if is_dot_segment(segment) {
            return None;
        }
    }
    // `%61dmin` is `admin` (RFC 3986 §6.2.2.2) to any upstream that decodes, so rules must
    // see it decoded too; other escapes stay as they are.
    let decoded = decode_unreserved(path);
    if decoded.contains("//") {
        let mut merged = String::with_capacity(decoded.len());
        let mut prev_slash = false;
        for c in decoded.chars() {
            if c == '/' && prev_slash {
                continue;
            }
            prev_slash = c == '/';
            merged.push(c);
        }
        return Some(std::borrow::Cow::Owned(merged));
    }
    Some(decoded)
}

/// Decodes percent-escapes of unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`); the
/// escapes were checked to be well formed by the caller.
fn decode_unreserved(path: &str) -> std::borrow::Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let hex = |i: usize| path.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
    let bytes = path.as_bytes();
    if !(0..bytes.len()).any(|i| bytes[i] == b'%' && hex(i).is_some_and(unreserved)) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i)) {
            (b'%', Some(b)) if unreserved(b) => {
                out.push(b as char);
                i += 3;
            }
            _ => {
                // Copy one UTF-8 character whole.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_dot_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    if b.is_empty() || b.len() > 6 {
        return false;
    }
    let (mut dots, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%' && b.get(i + 1) == Some(&b'2') && b.get(i + 2).map(|c| c | 0x20) == Some(b'e') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        assert_eq!(canonical_path("/a/b?x=../..").as_deref(), Some("/a/b"));
        assert_eq!(canonical_path("//admin///x").as_deref(), Some("/admin/x"));
        assert_eq!(canonical_path("/a%20b").as_deref(), Some("/a%20b"));
        assert_eq!(canonical_path("/%61dmin/%7Eme%2D%5f").as_deref(), Some("/admin/~me-_"));
        assert_eq!(canonical_path("/%2561/é%41").as_deref(), Some("/%2561/éA"));
        assert_eq!(canonical_path("/a%2e/b").as_deref(), Some("/a./b"));
        for bad in [
            "a", "", "/public/../admin", "/public/..", "/./x", "/%2e%2e/admin", "/%2E./x", "/a%2fb", "/a%5Cb", "/a\\b",
            "/a\r\nb", "/a%00", "/a%zz", "/a%2",
        ] {
            assert!(canonical_path(bad).is_none(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let r = Route::compile(&RouteConfig {
            prefix: Some("/admin".into()),
            path: None,
            methods: Some(vec!["get".into()]),
            require: Requirement::Authenticated,
            credentials: None,
            on_stale: StalePolicy::FailClosed,
            strip_credential: false,
        });
        assert!(r.matches("GET", "/admin"));
        assert!(r.matches("GET", "/admin/users"));
        assert!(!r.matches("GET", "/administrator"));
        assert!(!r.matches("POST", "/admin"));
    }
}
