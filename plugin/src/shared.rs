//! What worker VMs share, as bytes: key names, the fetcher lease, material stamps, and the
//! proxy-wasm header-map wire format. Pure functions, unit-tested natively.
//!
//! Keys (in the VM's shared-data namespace; no `/` in them, so Kong's ngx_wasm_module reads them
//! from its default key/value zone):
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `authgate.v2.lease.<config>` | `<holder hex> <expires ms>` | whoever holds or takes the lease (CAS) |
//! | `authgate.v2.body.<source>` | the material (JWKS JSON, feed JWS) as fetched | the fetcher, when new material is in use |
//! | `authgate.v2.stamp.<source>` | `<fetched_at ms>`: when that body was last confirmed current | the fetcher, after the body, and on every confirmation |
//! | `authgate.v2.refetch.<source>` | `<requested ms>`: an unknown `kid` was seen by a non-fetcher | any VM |
//! | `authgate.v2.failed.<source>` | `<failed ms>`: the fetcher's last failed fetch (nothing usable came) | the fetcher |
//!
//! `<config>` identifies the gateway document and `<source>` the URL material comes from
//! (`auth_core::material::stable_key`, 16 hex digits of SHA-256).

/// Shared-data keys of one fetched source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceKeys {
    pub body: String,
    pub stamp: String,
    pub refetch: String,
    pub failed: String,
}

impl SourceKeys {
    pub fn new(prefix: &str, source_key: &str) -> SourceKeys {
        SourceKeys {
            body: format!("{prefix}authgate.v2.body.{source_key}"),
            stamp: format!("{prefix}authgate.v2.stamp.{source_key}"),
            refetch: format!("{prefix}authgate.v2.refetch.{source_key}"),
            failed: format!("{prefix}authgate.v2.failed.{source_key}"),
        }
    }
}

pub fn lease_key(prefix: &str, config_id: &str) -> String {
    format!("{prefix}authgate.v2.lease.{config_id}")
}

/// The fetcher lease: the VM `holder` fetches for everyone until `expires_ms` (renewed on every
/// tick while it lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub expires_ms: u64,
}

impl Lease {
    pub fn encode(&self) -> String {
        format!("{:016x} {}", self.holder, self.expires_ms)
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = core::str::from_utf8(bytes).ok()?;
        let (holder, expires) = text.split_once(' ')?;
        Some(Lease { holder: u64::from_str_radix(holder, 16).ok()?, expires_ms: expires.parse().ok()? })
    }

    /// Whether `me` may (re)write the lease at `now_ms`: it is free, expired, unreadable or mine.
    pub fn available_to(current: Option<&Lease>, me: u64, now_ms: u64) -> bool {
        match current {
            None => true,
            Some(l) => l.holder == me || l.expires_ms <= now_ms,
        }
    }
}

/// A decimal millisecond timestamp (stamps and refetch requests); `0` when absent or unreadable.
pub fn decode_ms(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| core::str::from_utf8(b).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Parses a proxy-wasm serialized header map: `u32 count`, then `count` pairs of `u32` sizes,
/// then each name and value followed by a NUL. Never panics: `None` on any inconsistency.
pub fn decode_map(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut pos = count.checked_mul(8)?.checked_add(4)?;
    if pos > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name = bytes.get(pos..pos.checked_add(name_len)?)?;
        pos = pos.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(value_len)?)?;
        pos = pos.checked_add(value_len)?.checked_add(1)?;
        out.push((name, value));
    }
    Some(out)
}

/// Serializes a header map in the proxy-wasm wire format.
pub fn encode_map<N: AsRef<[u8]>, V: AsRef<[u8]>>(map: &[(N, V)]) -> Vec<u8> {
    let size = 4 + map.iter().map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        out.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

/// The metric-name form of a source key (`jwks/0` → `jwks_0`).
pub fn metric_source_name(source_key: &str) -> String {
    source_key.replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_no_slash_and_differ_per_source() {
        let a = SourceKeys::new("", &auth_core::material::stable_key("http://h/jwks/0.json"));
        let b = SourceKeys::new("", &auth_core::material::stable_key("http://h/jwks/1.json"));
        assert_ne!(a, b);
        for k in [a.body, a.stamp, a.refetch, b.body, lease_key("", "0123456789abcdef")] {
            assert!(!k.contains('/'), "{k}");
        }
        assert_eq!(SourceKeys::new("authgate/", "x").body, "authgate/authgate.v2.body.x", "Kong's zone prefix");
    }

    #[test]
    fn lease_round_trips_and_expires() {
        let l = Lease { holder: 0xdead_beef, expires_ms: 1_700_000_000_123 };
        assert_eq!(Lease::decode(l.encode().as_bytes()), Some(l));
        assert_eq!(Lease::decode(b"zz 1"), None);
        assert_eq!(Lease::decode(b"12"), None);
        assert_eq!(Lease::decode(&[0xff, 0x20, 0x31]), None);
        assert!(Lease::available_to(None, 1, 0));
        assert!(Lease::available_to(Some(&l), 0xdead_beef, 0), "mine");
        assert!(!Lease::available_to(Some(&l), 2, 1_700_000_000_000), "held by another");
        assert!(Lease::available_to(Some(&l), 2, 1_700_000_000_123), "expired");
    }

    #[test]
    fn ms_decoding_is_total() {
        assert_eq!(decode_ms(Some(b"123")), 123);
        assert_eq!(decode_ms(Some(b"x")), 0);
        assert_eq!(decode_ms(None), 0);
    }

    #[test]
    fn header_maps_round_trip_and_garbage_is_rejected() {
        let map = [("a", "1"), (":path", "/x?y"), ("empty", "")];
        let bytes = encode_map(&map);
        let decoded = decode_map(&bytes).unwrap();
        let as_str: Vec<(&str, &str)> =
            decoded.iter().map(|(n, v)| (core::str::from_utf8(n).unwrap(), core::str::from_utf8(v).unwrap())).collect();
        assert_eq!(as_str, map);
        assert_eq!(decode_map(&[]).unwrap(), vec![]);
        for cut in 1..bytes.len() - 1 {
            assert_eq!(decode_map(&bytes[..cut]), None, "truncated at {cut}");
        }
        assert_eq!(decode_map(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut huge = encode_map(&[("a", "b")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_map(&huge), None);
    }
}
