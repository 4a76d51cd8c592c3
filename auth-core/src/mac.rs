//! HMAC-SHA256 with the key schedule run once: the pure-Rust `hmac` crate, or `ring`'s (which
//! uses the CPU's SHA extensions) in native builds with the `ring` feature. One type for HS256
//! tokens and API keys alike.

#[cfg(not(feature = "ring"))]
use hmac::{Hmac, Mac};
#[cfg(not(feature = "ring"))]
use sha2::Sha256;

/// A keyed HMAC-SHA256.
#[derive(Clone)]
pub(crate) struct HmacSha256 {
    #[cfg(not(feature = "ring"))]
    keyed: Hmac<Sha256>,
    #[cfg(feature = "ring")]
    keyed: ring::hmac::Key,
}

impl HmacSha256 {
    /// Any key length is accepted (HMAC hashes long keys); callers enforce their minimums.
    pub(crate) fn new(key: &[u8]) -> HmacSha256 {
        #[cfg(not(feature = "ring"))]
        let keyed = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
        #[cfg(feature = "ring")]
        let keyed = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        HmacSha256 { keyed }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        #[cfg(not(feature = "ring"))]
        {
            let mut mac = self.keyed.clone();
            mac.update(message);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        #[cfg(feature = "ring")]
        out.copy_from_slice(ring::hmac::sign(&self.keyed, message).as_ref());
        out
    }

    /// Compares the whole tag in constant time.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        #[cfg(not(feature = "ring"))]
        {
            let mut mac = self.keyed.clone();
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        #[cfg(feature = "ring")]
        {
            ring::hmac::verify(&self.keyed, message, tag).is_ok()
        }
    }
}

/// HMAC takes keys of every length; `new_from_slice` cannot fail for it.
#[cfg(not(feature = "ring"))]
fn unreachable_key() -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let mac = HmacSha256::new(b"Jefe");
        let tag = mac.sign(b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(mac.verify(b"what do ya want for nothing?", &tag));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!mac.verify(b"what do ya want for nothing?", &bad));
        assert!(!mac.verify(b"what do ya want for nothing?", &tag[..31]));
    }
}
