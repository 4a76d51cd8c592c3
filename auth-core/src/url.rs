//! The one URL rule of the project: absolute `http(s)://host[:port][/path][?query]` URLs for
//! JWKS and feed fetches and for origins. Strict on purpose (no user info, no fragment, no
//! spaces, control characters or non-ASCII, a real port), so `authgate config check`, the
//! plugin and the worker accept exactly the same URLs.

use core::fmt;

/// A parsed absolute http(s) URL. Scheme and host are lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    https: bool,
    host: String,
    port: Option<u16>,
    /// Path and query; `/` when the URL has neither.
    path_and_query: String,
}

/// Why a URL was refused; the message is fit for a config error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlError(&'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        if url.bytes().any(|b| b <= 0x20 || b >= 0x7f) {
            return Err(UrlError("must be an http:// or https:// URL without spaces, control characters or non-ASCII"));
        }
        let (scheme, rest) = url.split_once("://").ok_or(UrlError("must be an http:// or https:// URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(UrlError("must be an http:// or https:// URL")),
        };
        if rest.contains('#') {
            return Err(UrlError("must not have a #fragment"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError("must not carry user info (user@host)"));
        }
        let (host, port) = split_host_port(authority)?;
        let path_and_query = match tail {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(HttpUrl { https, host: host.to_ascii_lowercase(), port, path_and_query })
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// `host[:port]`, as sent in `:authority` / `Host`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority())
    }

    /// Path and query (`/` when absent).
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// True when the URL names an origin only: no path beyond `/`, no query.
    pub fn is_origin(&self) -> bool {
        self.path_and_query == "/"
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    const NO_HOST: UrlError = UrlError("must be an http:// or https:// URL with a host");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or(UrlError("an IPv6 host must be closed with ]"))?;
        let inside = &v6[..close];
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(UrlError("not an IPv6 address in brackets"));
        }
        let after = &v6[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError("unexpected characters after the IPv6 host"))?),
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let plain = host.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if host.is_empty() || !plain {
        return Err(NO_HOST);
    }
    let port = match port {
        None => None,
        Some(p) => {
            // Port 0 parses (RFC 3986 allows any digits) and never connects: a placeholder.
            let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            let n: u16 = p.parse().ok().filter(|_| digits).ok_or(UrlError("the port must be a number up to 65535"))?;
            Some(n)
        }
    };
    Ok((host, port))
}

impl fmt::Display for HttpUrl {
    /// The URL normalised: lowercase scheme and host, `/` for an empty path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let u = HttpUrl::parse("HTTPS://Auth.Example.com:8443/.well-known/jwks.json?x=1").unwrap();
        assert_eq!(u.origin(), "https://auth.example.com:8443");
        assert_eq!(u.authority(), "auth.example.com:8443");
        assert_eq!(u.path_and_query(), "/.well-known/jwks.json?x=1");
        assert!(!u.is_origin());
        assert_eq!(HttpUrl::parse("http://h").unwrap().path_and_query(), "/");
        assert_eq!(HttpUrl::parse("http://h?a=b").unwrap().path_and_query(), "/?a=b");
        assert!(HttpUrl::parse("http://127.0.0.1:9000/").unwrap().is_origin());
        assert_eq!(HttpUrl::parse("http://[::1]:8080/x").unwrap().authority(), "[::1]:8080");
    }

    #[test]
    fn refusals() {
        for bad in [
            "ftp://h/x",
            "http:///x",
            "http://u@h/x",
            "http://u:p@h",
            "h/x",
            "http://h/a b",
            "http://h/#frag",
            "http://h:-1",
            "http://h:99999",
            "http://h:x",
            "http://h:",
            "http://h:+80/",
            "http://[::1",
            "http://[zz]",
            "http://h\r\n/",
            "http://hé/",
            "http://h%2e/",
            "",
            "http://",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(HttpUrl::parse("ftp://h/x").unwrap_err().to_string(), "must be an http:// or https:// URL");
    }
}
