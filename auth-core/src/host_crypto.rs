//! Signature checks the host does with its own native crypto (WebCrypto in Workers, BoringSSL
//! behind Envoy's `verify_signature`). The core still picks the key, refuses malformed
//! signatures, applies the low-`s` rule and every claim check: the host answers one question,
//! "does this signature verify over these bytes with this key", and the decision resumes.
//!
//! The step is sans-IO like the rest: [`crate::Gateway::decide_with`] answers
//! [`crate::Step::CheckSignature`] with the decision suspended where it stopped (the rules and
//! headers judged, the claims checked, all owned); the host checks its [`SignatureCheck`] and
//! calls [`crate::Gateway::resume`] with the verdict, and the decision goes on from there —
//! the revocation feed, the rules' requirements, expiry again at the time of resuming. A key
//! set applied while the host checked sends the token through the verifier again, and the
//! verdict counts only as a [`SignatureAnswer`]: bound to the key, message and signature it was
//! asked for, so a stale answer can never vouch for another token or key. (`decide_with` with
//! `host.answer` decides a request again with such an answer.)

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::Alg;

/// Algorithms a host verifies natively. HS256 is never delegated: an HMAC in WebAssembly is
/// cheaper than the round trip to the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostAlgs(u8);

impl HostAlgs {
    pub const NONE: HostAlgs = HostAlgs(0);

    /// The set with `alg` added (HS256 is ignored).
    pub const fn with(self, alg: Alg) -> HostAlgs {
        match alg {
            Alg::HS256 => self,
            _ => HostAlgs(self.0 | bit(alg)),
        }
    }

    pub const fn contains(self, alg: Alg) -> bool {
        self.0 & bit(alg) != 0
    }
}

const fn bit(alg: Alg) -> u8 {
    match alg {
        Alg::EdDSA => 1,
        Alg::ES256 => 2,
        Alg::RS256 => 4,
        Alg::HS256 => 8,
    }
}

/// What the host offers for one decision: the algorithms it checks, and the answer to the
/// check the previous call asked for, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCrypto<'a> {
    pub algs: HostAlgs,
    pub answer: Option<&'a SignatureAnswer>,
}

/// A public key as hosts import it: DER SubjectPublicKeyInfo (WebCrypto's `spki` format,
/// BoringSSL's `EVP_parse_public_key`), with a stable id to cache the imported key under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKey {
    /// The first 8 bytes of SHA-256 over `spki`: the same key has the same id across refetches.
    pub id: u64,
    pub spki: Arc<[u8]>,
}

impl HostKey {
    pub(crate) fn new(spki: Vec<u8>) -> HostKey {
        let digest = Sha256::digest(&spki);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        HostKey { id: u64::from_be_bytes(id), spki: spki.into() }
    }

    /// RFC 8410: id-Ed25519 with the 32-byte public key.
    pub(crate) fn ed25519(x: &[u8; 32]) -> HostKey {
        const PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        HostKey::new([&PREFIX[..], x].concat())
    }

    /// RFC 5480: id-ecPublicKey, prime256v1, with the uncompressed point `04 || x || y`.
    pub(crate) fn p256(uncompressed_point: &[u8]) -> HostKey {
        const PREFIX: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
            0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        HostKey::new([&PREFIX[..], uncompressed_point].concat())
    }
}

/// "Does `signature` verify over `message` with `key`, for `alg`?" Asked of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureCheck {
    pub alg: Alg,
    pub key: HostKey,
    /// The JWS signing input, `header.payload`.
    pub message: Vec<u8>,
    /// The signature as the JWS carries it: 64 bytes for Ed25519, `r || s` (32 bytes each) for
    /// ES256 (WebCrypto's form), the modulus length for RS256.
    pub signature: Vec<u8>,
}

impl SignatureCheck {
    /// The ES256 signature as a DER `ECDSA-Sig-Value` (what OpenSSL and BoringSSL verify);
    /// `None` for other algorithms.
    pub fn signature_der(&self) -> Option<Vec<u8>> {
        if self.alg != Alg::ES256 || self.signature.len() != 64 {
            return None;
        }
        let (r, s) = self.signature.split_at(32);
        let (r, s) = (der_uint(r), der_uint(s));
        let mut der = Vec::with_capacity(6 + r.len() + s.len());
        der.extend_from_slice(&[0x30, (r.len() + s.len()) as u8]);
        der.extend_from_slice(&r);
        der.extend_from_slice(&s);
        Some(der)
    }

    /// The host's verdict on this check.
    pub fn answer(self, valid: bool) -> SignatureAnswer {
        SignatureAnswer { check: self, valid }
    }
}

/// A DER INTEGER of a 32-byte unsigned big-endian value: leading zeros dropped, one zero added
/// when the top bit is set. At most 35 bytes, so short-form lengths suffice.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    let digits = &bytes[start..];
    let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
    let mut out = Vec::with_capacity(3 + digits.len());
    out.push(0x02);
    out.push((digits.len() + pad as usize) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

/// The host's verdict on one [`SignatureCheck`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureAnswer {
    check: SignatureCheck,
    valid: bool,
}

impl SignatureAnswer {
    /// The verdict, if this answer is for exactly this key, message and signature.
    pub(crate) fn verdict_for(&self, key: &HostKey, message: &[u8], signature: &[u8]) -> Option<bool> {
        let c = &self.check;
        (c.key.id == key.id && c.key.spki == key.spki && c.message == message && c.signature == signature).then_some(self.valid)
    }

    pub fn check(&self) -> &SignatureCheck {
        &self.check
    }
}

/// Order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// floor(n / 2): an `s` above it is the high form.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
    0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];
/// Order of the Ed25519 group, little-endian (as `S` is encoded).
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// An ES256 `r || s` whose `r` and `s` are both in `[1, n-1]`: anything else is refused
/// before a host sees it, whatever its crypto library would have said.
pub(crate) fn es256_in_range(signature: &[u8]) -> bool {
    signature.len() == 64 && signature.chunks(32).all(|v| v.iter().any(|&b| b != 0) && v < &P256_N[..])
}

/// The `s` of an in-range ES256 signature is above n/2 (the second, malleable form).
pub(crate) fn es256_high_s(signature: &[u8]) -> bool {
    signature.len() == 64 && signature[32..] > P256_HALF_N[..]
}

/// An Ed25519 signature whose `S` is canonical (`S < L`, RFC 8032 §5.1.7).
pub(crate) fn ed25519_canonical_s(signature: &[u8]) -> bool {
    if signature.len() != 64 {
        return false;
    }
    // Little-endian: compare from the most significant byte down.
    signature[32..].iter().rev().cmp(ED25519_L.iter().rev()) == core::cmp::Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_of_r_and_s() {
        let mut sig = vec![0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has its top bit set: a zero byte is prepended
        let check = SignatureCheck { alg: Alg::ES256, key: HostKey::new(vec![1]), message: vec![], signature: sig };
        let der = check.signature_der().unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..9], &[0x02, 0x21, 0x00, 0x80]);
        assert_eq!(der.len(), 2 + 3 + 35);
    }

    #[test]
    fn p256_ranges() {
        let mut sig = [0x11u8; 64];
        assert!(es256_in_range(&sig));
        assert!(!es256_high_s(&sig));
        sig[32..].copy_from_slice(&P256_HALF_N);
        assert!(!es256_high_s(&sig), "n/2 itself is the low form");
        sig[63] += 1;
        assert!(es256_high_s(&sig));
        sig[32..].copy_from_slice(&P256_N);
        assert!(!es256_in_range(&sig), "s = n is out of range");
        sig[..32].fill(0);
        sig[32] = 1;
        assert!(!es256_in_range(&sig), "r = 0 is out of range");
        assert!(!es256_in_range(&[1u8; 63]));
    }

    #[test]
    fn ed25519_s_bound() {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&ED25519_L);
        assert!(!ed25519_canonical_s(&sig), "S = L");
        sig[32] -= 1;
        assert!(ed25519_canonical_s(&sig), "S = L - 1");
        sig[63] = 0x20;
        assert!(!ed25519_canonical_s(&sig));
    }

    #[test]
    fn algs_never_include_hs256() {
        let algs = HostAlgs::NONE.with(Alg::ES256).with(Alg::HS256);
        assert!(algs.contains(Alg::ES256));
        assert!(!algs.contains(Alg::HS256));
        assert!(!algs.contains(Alg::RS256));
        let twice = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::EdDSA).with(Alg::RS256);
        assert!(twice.contains(Alg::EdDSA) && twice.contains(Alg::RS256), "adding twice keeps it");
    }

    #[test]
    fn only_es256_checks_of_64_bytes_have_a_der_form() {
        let check = |alg, len| SignatureCheck { alg, key: HostKey::new(vec![1]), message: vec![], signature: vec![0x11; len] };
        assert!(check(Alg::ES256, 64).signature_der().is_some());
        assert!(check(Alg::ES256, 63).signature_der().is_none());
        assert!(check(Alg::EdDSA, 64).signature_der().is_none());
        assert!(check(Alg::RS256, 256).signature_der().is_none());
    }

    /// An answer is for one key (id and bytes), one message and one signature: change any one
    /// and it vouches for nothing.
    #[test]
    fn an_answer_is_bound_to_key_message_and_signature() {
        let key = HostKey::new(vec![1, 2, 3]);
        let answer = SignatureCheck { alg: Alg::ES256, key: key.clone(), message: b"m".to_vec(), signature: vec![7; 64] }.answer(true);
        assert_eq!(answer.verdict_for(&key, b"m", &[7; 64]), Some(true));
        assert_eq!(answer.verdict_for(&key, b"n", &[7; 64]), None, "another message");
        assert_eq!(answer.verdict_for(&key, b"m", &[8; 64]), None, "another signature");
        assert_eq!(answer.verdict_for(&HostKey::new(vec![1, 2, 4]), b"m", &[7; 64]), None, "another key");
        let same_id = HostKey { id: key.id, spki: vec![9].into() };
        assert_eq!(answer.verdict_for(&same_id, b"m", &[7; 64]), None, "the same id over other bytes");
        let other_id = HostKey { id: key.id ^ 1, spki: key.spki.clone() };
        assert_eq!(answer.verdict_for(&other_id, b"m", &[7; 64]), None, "the same bytes under another id");
    }
}
