//! Requests the server makes to URLs its tenants give it (webhook receivers, identity
//! providers): `https` and public addresses only unless the operator allows more — checked when
//! the URL is given and again at every connection (a resolver that returns only public
//! addresses, a check of addresses written in the URL, no redirects, no proxy from the
//! environment), so a tenant cannot aim the server at its own network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the operator allows beyond `https` to public addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Egress {
    pub allow_http: bool,
    pub allow_private_addresses: bool,
}

/// May the server connect to `ip` without `allow_private_addresses`? Only addresses
/// of the public internet: not loopback, private, shared (CGNAT), link-local (cloud metadata),
/// unspecified, multicast, broadcast, documentation or reserved ranges, in IPv4 or IPv6
/// (IPv4-mapped and NAT64 addresses are judged by the IPv4 address they carry).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b {
                let [.., a, b] = s;
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[..6] == [0; 6])
        }
    }
}

/// A URL as given: `https` (`http` only with `allow_http`), a host, no credentials or
/// fragment, at most 2000 characters; and, unless `allow_private_addresses`, a host that is or
/// resolves only to public addresses. The error says what is wrong.
pub async fn check_url(cfg: Egress, raw: &str) -> Result<url::Url, &'static str> {
    if raw.len() > 2000 {
        return Err("url: at most 2000 characters");
    }
    let url = url::Url::parse(raw).map_err(|_| "url: not an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        _ => return Err("url: https only (allow_http permits http)"),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("url: no credentials or fragment");
    }
    let host = url.host().ok_or("url: no host")?;
    if !cfg.allow_private_addresses {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => match tokio::net::lookup_host((name, port)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => return Err("url: the host does not resolve"),
            },
        };
        if addrs.is_empty() || !addrs.into_iter().all(is_public) {
            return Err("url: the host is or resolves to a non-public address");
        }
    }
    Ok(url)
}

/// Resolves names to their public addresses only: the check made again at each connection, so a
/// name that resolved to a public address when it was given cannot be pointed inside later.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err("the host resolves to no public address".into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client for such URLs: no proxy from the environment (a proxy would resolve the name itself,
/// past the public-address check), no redirects (each hop would need the check), and the
/// public-only resolver unless `allow_private_addresses`.
pub fn client(cfg: Egress, timeout: Duration, user_agent: &'static str) -> reqwest::Result<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).timeout(timeout).user_agent(user_agent);
    if !cfg.allow_private_addresses {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

/// Addresses written in a URL skip the resolver: may the client connect to this one's?
pub fn literal_allowed(allow_private_addresses: bool, url: &url::Url) -> bool {
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    allow_private_addresses || literal.is_none_or(is_public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} passed");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} refused");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_before_registration() {
        let strict = Egress::default();
        for bad in [
            "http://93.184.216.34/hook",
            "https://user:pw@93.184.216.34/hook",
            "https://93.184.216.34/hook#x",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest",
            "https://localhost/hook",
            "https://0x7f000001/hook",
            "https://2130706433/hook",
            "ftp://93.184.216.34/",
            "/relative",
        ] {
            assert!(check_url(strict, bad).await.is_err(), "{bad} accepted");
        }
        assert!(check_url(strict, "https://93.184.216.34/hook?x=1").await.is_ok());
        let open = Egress { allow_http: true, allow_private_addresses: true };
        assert!(check_url(open, "http://127.0.0.1:9/hook").await.is_ok());
        assert!(check_url(open, "ftp://127.0.0.1/").await.is_err());
    }
}
