//! Copies of material for host caches: what a copy is, the stable key of a source, and the
//! sealed form for caches other code can write to.

use std::sync::Arc;

use crate::time::UnixTime;

/// A copy of material in use, for a host cache: the body as fetched, when it was fetched (or
/// last confirmed current), and how long it is worth keeping (0: not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialCopy {
    pub body: Arc<[u8]>,
    pub fetched_at: UnixTime,
    pub keep_for_s: u64,
}

/// A copy for a cache other code can write to (the Workers Cache API is shared by every Worker of
/// a zone): `agm1`, the fetch time, an HMAC-SHA256 over both, the source and the body, then the
/// body. Only what [`open_copy`] authenticates with the same key is applied, so a planted entry
/// can neither bring its own keys nor claim to be fresher than it is.
pub fn seal_copy(key: &[u8; 32], source_key: &str, copy: &MaterialCopy) -> Vec<u8> {
    let at = copy.fetched_at.millis().to_be_bytes();
    let tag = copy_tag(key, source_key, &at, &copy.body);
    let mut out = Vec::with_capacity(4 + 8 + 32 + copy.body.len());
    out.extend_from_slice(b"agm1");
    out.extend_from_slice(&at);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&copy.body);
    out
}

/// The fetch time and body of a sealed copy, if it was sealed with `key` for `source_key`.
pub fn open_copy<'a>(key: &[u8; 32], source_key: &str, sealed: &'a [u8]) -> Option<(UnixTime, &'a [u8])> {
    use subtle::ConstantTimeEq;
    let rest = sealed.strip_prefix(b"agm1")?;
    let (at, rest) = (rest.get(..8)?, rest.get(8..)?);
    let (tag, body) = (rest.get(..32)?, rest.get(32..)?);
    let want = copy_tag(key, source_key, at, body);
    if !bool::from(want.ct_eq(tag)) {
        return None;
    }
    Some((UnixTime::from_millis(i64::from_be_bytes(at.try_into().ok()?)), body))
}

fn copy_tag(key: &[u8; 32], source_key: &str, at: &[u8], body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [b"authgate material copy v1\0".as_slice(), source_key.as_bytes(), b"\0", at, body] {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// 16 hex digits of SHA-256 of `text`: a stable key for host caches and shared data.
pub fn stable_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keys_are_the_first_8_bytes_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(stable_key("abc"), "ba7816bf8f01cfea");
        assert_ne!(stable_key("https://a.test/jwks"), stable_key("https://b.test/jwks"));
    }

    #[test]
    fn sealed_copies_open_only_with_their_key_and_source() {
        let copy =
            MaterialCopy { body: Arc::from(&b"{\"keys\": []}"[..]), fetched_at: UnixTime::from_millis(1_700_000_000_123), keep_for_s: 60 };
        let sealed = seal_copy(&[7; 32], "abc", &copy);
        assert_eq!(open_copy(&[7; 32], "abc", &sealed), Some((copy.fetched_at, copy.body.as_ref())));
        assert_eq!(open_copy(&[8; 32], "abc", &sealed), None, "another key");
        assert_eq!(open_copy(&[7; 32], "abd", &sealed), None, "another source");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(open_copy(&[7; 32], "abc", &tampered), None, "byte {i} flipped");
        }
        for cut in 0..sealed.len() {
            assert_eq!(open_copy(&[7; 32], "abc", &sealed[..cut]), None, "truncated to {cut}");
        }
    }
}
