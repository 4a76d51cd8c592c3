//! Route rules: the first rule matching a method and a canonical path (see [`crate::path`]) wins.
//!
//! Matching follows what upstreams do with the request: methods compare case-insensitively (a
//! framework runs its `DELETE` handler for `delete`), `HEAD` is covered by rules for `GET` (the
//! upstream runs the `GET` handler), and a trailing slash does not change the resource (`/admin`
//! and `/admin/` match the same rules, exact or prefix).

use std::borrow::Cow;

use crate::config::{CredentialKind, Requirement, RouteConfig, StalePolicy};

/// Headers through which clients ask upstreams to run another method (Rails, Laravel, Symfony,
/// Express `method-override`, ASP.NET). A request carrying one is judged as that method too.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// The query parameter through which clients ask for another method: Laravel and Symfony read
/// `_method` from the query of a `POST`, Express `method-override` when configured with it.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// The methods a request target's query asks for through [`METHOD_OVERRIDE_PARAM`], form-decoded
/// (`%5Fmethod` is `_method`). A name is read as PHP reads it (leading spaces dropped; `.`, space
/// and `[` are `_`, so `?.method=` is `_method` to Laravel) and compared without letter case.
pub(crate) fn query_method_overrides(target: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes()).filter_map(|(name, value)| {
        let name = name.trim_start_matches(' ').bytes().map(|b| if matches!(b, b'.' | b' ' | b'[') { b'_' } else { b });
        let is_override =
            name.len() == METHOD_OVERRIDE_PARAM.len() && name.zip(METHOD_OVERRIDE_PARAM.bytes()).all(|(a, b)| a.eq_ignore_ascii_case(&b));
        is_override.then_some(value)
    })
}

/// A route rule ready for matching.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub matcher: PathMatch,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub require: Requirement,
    pub accepts_jwt: bool,
    pub accepts_api_key: bool,
    pub on_stale: StalePolicy,
    pub strip_credential: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum PathMatch {
    /// The path without a trailing slash (`/` stays `/`).
    Exact(String),
    /// Whole segments: the prefix without a trailing slash (`/` matches everything).
    Prefix(String),
}

/// `/admin/` and `/admin` name the same resource for matching.
fn trim_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

impl Route {
    pub(crate) fn compile(cfg: &RouteConfig) -> Route {
        let matcher = match (&cfg.path, &cfg.prefix) {
            (Some(p), _) => PathMatch::Exact(trim_trailing_slash(p).to_string()),
            (None, Some(p)) => PathMatch::Prefix(trim_trailing_slash(p).to_string()),
            (None, None) => PathMatch::Prefix("/".into()),
        };
        let kinds = cfg.credentials.as_deref();
        Route {
            matcher,
            methods: cfg.methods.as_ref().map(|m| m.iter().map(|s| s.to_ascii_uppercase()).collect()),
            require: cfg.require.clone(),
            accepts_jwt: kinds.is_none_or(|k| k.contains(&CredentialKind::Jwt)),
            accepts_api_key: kinds.is_none_or(|k| k.contains(&CredentialKind::ApiKey)),
            on_stale: cfg.on_stale,
            strip_credential: cfg.strip_credential,
        }
    }

    /// `method` must be a valid token ([`is_method`]); `path` canonical.
    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        let path = trim_trailing_slash(path);
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) if p == "/" => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/'),
        };
        path_ok && self.methods.as_ref().is_none_or(|m| m.iter().any(|x| method_matches(x, method)))
    }
}

/// A rule's method (upper case) against a request's.
fn method_matches(rule: &str, method: &str) -> bool {
    rule.eq_ignore_ascii_case(method) || (rule == "GET" && method.eq_ignore_ascii_case("HEAD"))
}

/// An HTTP method: an RFC 9110 token.
pub(crate) fn is_method(method: &str) -> bool {
    !method.is_empty() && method.len() <= 32 && method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The first rule matching, by index.
pub(crate) fn first_match(routes: &[Route], method: &str, path: &str) -> Option<usize> {
    routes.iter().position(|r| r.matches(method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: Option<&str>, path: Option<&str>, methods: Option<&[&str]>) -> Route {
        Route::compile(&RouteConfig {
            prefix: prefix.map(str::to_string),
            path: path.map(str::to_string),
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            require: Requirement::Authenticated,
            credentials: None,
            on_stale: StalePolicy::FailClosed,
            strip_credential: false,
        })
    }

    #[test]
    fn prefix_matches_whole_segments_with_or_without_trailing_slash() {
        for prefix in ["/admin", "/admin/"] {
            let r = route(Some(prefix), None, Some(&["get"]));
            for yes in ["/admin", "/admin/", "/admin/users", "/admin/users/"] {
                assert!(r.matches("GET", yes), "{prefix} must match {yes}");
            }
            assert!(!r.matches("GET", "/administrator"));
            assert!(!r.matches("GET", "/adm"));
            assert!(!r.matches("POST", "/admin"));
        }
        let root = route(Some("/"), None, None);
        assert!(root.matches("PATCH", "/") && root.matches("GET", "/anything/at/all"));
    }

    #[test]
    fn exact_paths_ignore_one_trailing_slash() {
        let r = route(None, Some("/admin"), None);
        assert!(r.matches("GET", "/admin") && r.matches("GET", "/admin/"));
        assert!(!r.matches("GET", "/admin/x") && !r.matches("GET", "/admi"));
        let r = route(None, Some("/admin/"), None);
        assert!(r.matches("GET", "/admin") && r.matches("GET", "/admin/"));
        let r = route(None, Some("/"), None);
        assert!(r.matches("GET", "/") && !r.matches("GET", "/x"));
    }

    #[test]
    fn methods_fold_case_and_head_is_get() {
        let r = route(Some("/"), None, Some(&["DELETE", "GET"]));
        for m in ["DELETE", "delete", "Delete", "GET", "get", "HEAD", "head"] {
            assert!(r.matches(m, "/x"), "{m}");
        }
        assert!(!r.matches("POST", "/x"));
        let head_only = route(Some("/"), None, Some(&["HEAD"]));
        assert!(head_only.matches("HEAD", "/") && !head_only.matches("GET", "/"), "HEAD rules do not cover GET");
        let post = route(Some("/"), None, Some(&["POST"]));
        assert!(!post.matches("HEAD", "/"));
    }

    #[test]
    fn query_overrides_are_read_as_frameworks_read_them() {
        let asked = |target: &str| query_method_overrides(target).map(|m| m.into_owned()).collect::<Vec<String>>();
        assert_eq!(asked("/x?_method=DELETE"), ["DELETE"]);
        for spelling in ["_method", "_METHOD", "%5Fmethod", ".method", "%2Emethod", "+.method", "++_method"] {
            assert_eq!(asked(&format!("/x?a=1&{spelling}=put")), ["put"], "{spelling}");
        }
        assert_eq!(asked("/x?_method=DE%20LETE&_method=post"), ["DE LETE", "post"]);
        for none in ["/x", "/x?", "/x?method=PUT", "/x?a_method=PUT", "/x?_methods=PUT", "/x?+method=PUT", "/_method=PUT"] {
            assert!(asked(none).is_empty(), "{none}");
        }
    }

    #[test]
    fn method_tokens() {
        for ok in ["GET", "delete", "M-SEARCH", "PROPFIND", "X!"] {
            assert!(is_method(ok), "{ok}");
        }
        for bad in ["", "GET ", "G\tET", "GÉT", "a(b)", &"A".repeat(33)] {
            assert!(!is_method(bad), "{bad:?}");
        }
    }
}
