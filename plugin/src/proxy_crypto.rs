//! Signature checks by the proxy's own crypto: Envoy's `verify_signature` foreign function
//! (BoringSSL), asked through auth-core's host-crypto step. This module frames the question and
//! reads the answer (the two protobuf messages of Envoy's `verify_signature.proto`); `vm` makes
//! the call. The messages are four fields and two: hand-framed here rather than generated, so
//! the filter carries no protobuf runtime.

use auth_core::{Alg, HostAlgs, SignatureCheck};

/// The foreign function Envoy registers.
pub const FUNCTION: &str = "verify_signature";

/// What Envoy's `verify_signature` checks: it calls `EVP_DigestVerify` with a digest, which
/// BoringSSL refuses for Ed25519 (a pure signature scheme). EdDSA stays in the filter.
pub const ALGS: HostAlgs = HostAlgs::NONE.with(Alg::ES256).with(Alg::RS256);

/// `VerifySignatureArguments { hash_function = 1, public_key = 2 (DER), signature = 3, text = 4 }`.
/// `None` for a check this function cannot answer.
pub fn arguments(check: &SignatureCheck) -> Option<Vec<u8>> {
    let signature = match check.alg {
        Alg::ES256 => check.signature_der()?,
        Alg::RS256 => check.signature.clone(),
        Alg::EdDSA | Alg::HS256 => return None,
    };
    let mut out = Vec::with_capacity(32 + check.key.spki.len() + signature.len() + check.message.len());
    field(&mut out, 1, b"sha256");
    field(&mut out, 2, &check.key.spki);
    field(&mut out, 3, &signature);
    field(&mut out, 4, &check.message);
    Some(out)
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// What `VerifySignatureResult { result = 1, error = 2 }` said.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    pub error: String,
}

/// Reads a `VerifySignatureResult`. `None` if it is not one (then the check is not trusted).
pub fn result(bytes: &[u8]) -> Option<Verdict> {
    let mut verdict = Verdict { valid: false, error: String::new() };
    let mut rest = bytes;
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (v, tail) = read_varint(rest)?;
                verdict.valid = v == 1;
                rest = tail;
            }
            (n, 2) => {
                let (len, tail) = read_varint(rest)?;
                let len = usize::try_from(len).ok().filter(|l| *l <= tail.len())?;
                if n == 2 {
                    verdict.error = String::from_utf8_lossy(&tail[..len]).into_owned();
                }
                rest = &tail[len..];
            }
            (_, 0) => rest = read_varint(rest)?.1,
            _ => return None,
        }
    }
    Some(verdict)
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_core::HostKey;

    fn check(alg: Alg, signature: Vec<u8>) -> SignatureCheck {
        SignatureCheck { alg, key: HostKey { id: 1, spki: vec![0x30; 300].into() }, message: b"h.p".to_vec(), signature }
    }

    #[test]
    fn frames_the_arguments() {
        let args = arguments(&check(Alg::RS256, vec![7; 256])).unwrap();
        assert_eq!(&args[..8], b"\x0a\x06sha256");
        // public_key: tag 0x12, length 300 as a two-byte varint.
        assert_eq!(&args[8..11], &[0x12, 0xac, 0x02]);
        assert_eq!(&args[311..314], &[0x1a, 0x80, 0x02]);
        assert_eq!(&args[args.len() - 5..], b"\x22\x03h.p");
        // ES256 goes as DER; EdDSA is not this function's.
        let mut rs = vec![1u8; 64];
        rs[32] = 0x80;
        let es = arguments(&check(Alg::ES256, rs)).unwrap();
        let at = 8 + 3 + 300;
        assert_eq!(&es[at..at + 4], &[0x1a, 71, 0x30, 69]);
        assert!(arguments(&check(Alg::EdDSA, vec![0; 64])).is_none());
    }

    #[test]
    fn reads_the_result() {
        assert_eq!(result(&[0x08, 0x01]), Some(Verdict { valid: true, error: String::new() }));
        assert_eq!(result(&[]), Some(Verdict { valid: false, error: String::new() }));
        let failed = [&[0x12, 0x04][..], b"nope"].concat();
        assert_eq!(result(&failed), Some(Verdict { valid: false, error: "nope".into() }));
        // Truncated or foreign framing is not an answer.
        assert_eq!(result(&[0x12, 0x09, b'x']), None);
        assert_eq!(result(&[0x08]), None);
        assert_eq!(result(&[0x0d, 0, 0, 0, 0]), None);
    }
}
