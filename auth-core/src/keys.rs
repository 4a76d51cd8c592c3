//! JWKS parsing into verification keys, and the signature check itself. The key type decides the
//! algorithm: a key can only ever verify the one algorithm its type implies, which is what makes
//! algorithm confusion (an RSA public key used as an HMAC secret) impossible by construction.

use std::sync::Arc;

use serde::Deserialize;
use sha2::Sha256;

use crate::b64;
use crate::config::Alg;
use crate::host_crypto::{self, HostKey};
use crate::mac::HmacSha256;
use crate::objects::objects_only;

/// Longest `kid` accepted, in bytes.
pub const MAX_KID_LEN: usize = 256;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;
const MIN_HMAC_KEY_LEN: usize = 32;

/// Verification material of one key.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Rsa(Box<RsaKey>),
    /// Keyed HMAC state: the key schedule runs once.
    Hmac(HmacSha256),
}

/// An RSA public key: the `rsa` crate's, and with the `ring` feature the big-endian modulus
/// and exponent `ring` verifies with.
#[derive(Clone)]
pub(crate) struct RsaKey {
    pub key: rsa::pkcs1v15::VerifyingKey<Sha256>,
    #[cfg(feature = "ring")]
    pub components: ring::signature::RsaPublicKeyComponents<Vec<u8>>,
}

impl KeyMaterial {
    /// The only algorithm this key verifies.
    pub(crate) fn alg(&self) -> Alg {
        match self {
            KeyMaterial::Ed25519(_) => Alg::EdDSA,
            KeyMaterial::P256(_) => Alg::ES256,
            KeyMaterial::Rsa(_) => Alg::RS256,
            KeyMaterial::Hmac(_) => Alg::HS256,
        }
    }

    /// Verifies `signature` over `message`. Strict encodings only: Ed25519 rejects non-canonical
    /// and small-order inputs, ES256 takes only the 64-byte JOSE `r || s` form (never DER) and,
    /// unless `es256_accept_high_s`, only the low-`s` one of its two valid forms.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8], es256_accept_high_s: bool) -> Verdict {
        use signature_verify::*;
        let valid = |ok: bool| if ok { Verdict::Valid } else { Verdict::Invalid };
        match self {
            KeyMaterial::Ed25519(key) => valid(ed25519(key, message, signature)),
            KeyMaterial::P256(key) => es256(key, message, signature, es256_accept_high_s),
            KeyMaterial::Rsa(key) => valid(rs256(key, message, signature)),
            KeyMaterial::Hmac(mac) => valid(mac.verify(message, signature)),
        }
    }
}

/// What a signature check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid,
    /// A genuine ES256 signature in its high-`s` form, which the issuer is not trusted to send.
    HighS,
}

/// The primitives: RustCrypto everywhere, `ring` (BoringSSL's assembly) for ES256 and RS256 in
/// native builds with the `ring` feature. Ed25519 stays with ed25519-dalek, which is as fast as
/// `ring` natively (docs/benchmarks.md) and rejects the small-order and non-canonical forms
/// `verify_strict` names.
mod signature_verify {
    #[cfg(not(feature = "ring"))]
    use signature::Verifier as _;

    pub fn ed25519(key: &ed25519_dalek::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes)).is_ok()
    }

    pub fn es256(key: &p256::ecdsa::VerifyingKey, message: &[u8], signature: &[u8], accept_high_s: bool) -> super::Verdict {
        use super::Verdict;
        if !crate::host_crypto::es256_in_range(signature) {
            return Verdict::Invalid;
        }
        #[cfg(feature = "ring")]
        let valid = {
            let point = key.to_encoded_point(false);
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point.as_bytes())
                .verify(message, signature)
                .is_ok()
        };
        #[cfg(not(feature = "ring"))]
        let valid = match p256::ecdsa::Signature::from_slice(signature) {
            Ok(sig) => key.verify(message, &sig).is_ok(),
            Err(_) => false,
        };
        // (r, n - s) verifies too: a second encoding of the same signature.
        match (valid, accept_high_s || !crate::host_crypto::es256_high_s(signature)) {
            (true, true) => Verdict::Valid,
            (true, false) => Verdict::HighS,
            (false, _) => Verdict::Invalid,
        }
    }

    pub fn rs256(key: &super::RsaKey, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "ring")]
        {
            key.components.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message, signature).is_ok()
        }
        #[cfg(not(feature = "ring"))]
        match rsa::pkcs1v15::Signature::try_from(signature) {
            Ok(sig) => key.key.verify(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// One key of a key set.
#[derive(Clone)]
pub(crate) struct Key {
    pub kid: Option<String>,
    pub material: KeyMaterial,
    /// The key as a host imports it (`None` for HMAC secrets, never handed out).
    pub host: Option<HostKey>,
}

impl Key {
    /// Refuses, without any crypto, a signature no valid one can look like: the wrong length,
    /// a non-canonical Ed25519 `S`, an ES256 `r` or `s` outside `[1, n-1]`. A host is asked only
    /// about signatures that pass, so its library's leniency never decides.
    pub(crate) fn well_formed(&self, signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Ed25519(_) => host_crypto::ed25519_canonical_s(signature),
            KeyMaterial::P256(_) => host_crypto::es256_in_range(signature),
            KeyMaterial::Rsa(key) => signature.len() == rsa::traits::PublicKeyParts::size(key.key.as_ref()),
            KeyMaterial::Hmac(_) => signature.len() == 32,
        }
    }
}

/// Where a JWKS came from. Symmetric keys are accepted only from the operator's own config: a
/// secret published at a URL would let anyone who can read it mint tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyOrigin {
    Inline,
    Fetched,
}

/// Why a JWKS or one of its keys was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksError {
    /// Field path inside the JWKS (`keys[1].x`), or `.` for the document.
    pub path: String,
    pub message: String,
}

impl core::fmt::Display for JwksError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn jwks_err(path: String, message: &str) -> JwksError {
    JwksError { path, message: message.to_string() }
}

// A JWKS and each of its keys are objects (see `objects`).
objects_only!(RawJwks, RawJwk);

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    k: Option<String>,
}

/// Outcome of parsing one JWK: usable, deliberately skipped (not a signature key we handle), or bad.
// Returned once per key and moved straight into the key list: boxing `Key` would only add an
// allocation per key.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Key(Key),
    Skip,
}

/// A set of verification keys.
#[derive(Clone, Default)]
pub(crate) struct VerificationKeys {
    pub keys: Vec<Key>,
}

impl VerificationKeys {
    /// Parses a JWKS document. Inline sets must be entirely valid (a typo in config is an error);
    /// fetched sets skip keys they cannot use (an issuer may publish encryption keys or curves we
    /// do not verify) but fail if nothing usable remains.
    pub(crate) fn from_json(bytes: &[u8], origin: KeyOrigin) -> Result<VerificationKeys, JwksError> {
        let raw: RawJwks = serde_json::from_slice(bytes).map_err(|e| jwks_err(".".into(), &format!("not a JWKS document: {e}")))?;
        Self::from_values(&raw.keys, origin)
    }

    pub(crate) fn from_value(value: &serde_json::Value, origin: KeyOrigin) -> Result<VerificationKeys, JwksError> {
        let raw = <RawJwks as Deserialize>::deserialize(value).map_err(|e| jwks_err(".".into(), &format!("not a JWKS document: {e}")))?;
        Self::from_values(&raw.keys, origin)
    }

    fn from_values(values: &[serde_json::Value], origin: KeyOrigin) -> Result<VerificationKeys, JwksError> {
        let mut keys = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            match parse_jwk(value, origin) {
                Ok(Parsed::Key(key)) => keys.push(key),
                Ok(Parsed::Skip) => {}
                Err((field, message)) => {
                    if origin == KeyOrigin::Inline {
                        let path = if field.is_empty() { format!("keys[{i}]") } else { format!("keys[{i}].{field}") };
                        return Err(jwks_err(path, &message));
                    }
                }
            }
        }
        if keys.is_empty() {
            return Err(jwks_err("keys".into(), "no usable signature verification key"));
        }
        Ok(VerificationKeys { keys })
    }

    pub(crate) fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// What a refresh must keep for nothing to have changed: every key's id, type and public
    /// key (an issuer may replace a key under the same `kid`, or publish keys without one).
    pub(crate) fn fingerprint(&self) -> Vec<KeyFingerprint> {
        self.keys.iter().map(|k| (k.kid.clone(), k.material.alg(), k.host.as_ref().map(|h| h.spki.clone()))).collect()
    }
}

/// One key as [`VerificationKeys::fingerprint`] compares it: id, type, public key (SPKI).
pub(crate) type KeyFingerprint = (Option<String>, Alg, Option<Arc<[u8]>>);

type FieldError = (&'static str, String);

fn parse_jwk(value: &serde_json::Value, origin: KeyOrigin) -> Result<Parsed, FieldError> {
    let jwk = <RawJwk as Deserialize>::deserialize(value).map_err(|e| ("", format!("not a JWK: {e}")))?;
    if let Some(kid) = &jwk.kid {
        if kid.len() > MAX_KID_LEN {
            return Err(("kid", "longer than 256 bytes".into()));
        }
    }
    if matches!(jwk.use_.as_deref(), Some(u) if u != "sig") {
        return Ok(Parsed::Skip);
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Ok(Parsed::Skip);
        }
    }
    let declared_alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match Alg::from_jose(name) {
            Some(alg) => Some(alg),
            // An algorithm we do not verify (RS384, ES512, RSA-OAEP...): not ours to use.
            None => return Ok(Parsed::Skip),
        },
    };
    let field = |name: &'static str, v: &Option<String>| -> Result<Vec<u8>, FieldError> {
        let s = v.as_deref().ok_or((name, "missing".to_string()))?;
        b64::decode(s.as_bytes()).ok_or((name, "not base64url without padding".to_string()))
    };
    let (material, host) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => {
            let x: [u8; 32] = field("x", &jwk.x)?.try_into().map_err(|_| ("x", "not 32 bytes".to_string()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| ("x", "not an Ed25519 point".to_string()))?;
            if key.is_weak() {
                return Err(("x", "small-order Ed25519 key".into()));
            }
            (KeyMaterial::Ed25519(key), Some(HostKey::ed25519(&x)))
        }
        ("EC", Some("P-256")) => {
            let x = field("x", &jwk.x)?;
            let y = field("y", &jwk.y)?;
            if x.len() != 32 || y.len() != 32 {
                return Err(("x", "P-256 coordinates must be 32 bytes".into()));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| ("x", "not a point on P-256".to_string()))?;
            (KeyMaterial::P256(key), Some(HostKey::p256(point.as_bytes())))
        }
        ("RSA", _) => {
            let n = field("n", &jwk.n)?;
            let e = field("e", &jwk.e)?;
            let n = rsa::BigUint::from_bytes_be(&n);
            let e = rsa::BigUint::from_bytes_be(&e);
            let bits = n.bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(("n", format!("RSA modulus of {bits} bits; 2048 to 8192 accepted")));
            }
            let key =
                rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS).map_err(|err| ("n", format!("not an RSA public key: {err}")))?;
            let spki =
                rsa::pkcs8::EncodePublicKey::to_public_key_der(&key).map_err(|err| ("n", format!("not an RSA public key: {err}")))?;
            let rsa_key = RsaKey {
                #[cfg(feature = "ring")]
                components: {
                    use rsa::traits::PublicKeyParts;
                    ring::signature::RsaPublicKeyComponents { n: key.n().to_bytes_be(), e: key.e().to_bytes_be() }
                },
                key: rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key),
            };
            (KeyMaterial::Rsa(Box::new(rsa_key)), Some(HostKey::new(spki.into_vec())))
        }
        ("oct", _) => {
            if origin == KeyOrigin::Fetched {
                // Never trust a symmetric key served over the network.
                return Ok(Parsed::Skip);
            }
            let k = field("k", &jwk.k)?;
            if k.len() < MIN_HMAC_KEY_LEN {
                return Err(("k", "HS256 keys must be at least 32 bytes".into()));
            }
            (KeyMaterial::Hmac(HmacSha256::new(&k)), None)
        }
        // Other curves (X25519, P-384, …) and key types: not ours to use.
        _ => return Ok(Parsed::Skip),
    };
    if let Some(alg) = declared_alg {
        if alg != material.alg() {
            return Err(("alg", format!("{} does not match key type {}", alg.as_str(), jwk.kty)));
        }
    }
    Ok(Parsed::Key(Key { kid: jwk.kid, material, host }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const ED_X: &str = "jRt6KYVsUdzb84dBdUX72bOCPom4v2X2LroZ96cuRLE";
    const EC_X: &str = "q-DIypHAl0nrM5RS_DVmpd-0yFU_1oTAugtvVfc4Bu8";
    const EC_Y: &str = "5pPf6K-H5bgLS_ZqDIfM_KaYo6_H6JMac97VSfEoe_8";

    fn ed(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": kid})
    }

    fn parse(keys: Vec<Value>, origin: KeyOrigin) -> Result<VerificationKeys, JwksError> {
        VerificationKeys::from_value(&json!({ "keys": keys }), origin)
    }

    fn kids(keys: &VerificationKeys) -> Vec<Option<String>> {
        keys.fingerprint().into_iter().map(|(kid, _, _)| kid).collect()
    }

    #[test]
    fn a_bad_key_is_an_error_inline_and_skipped_when_fetched() {
        let bad = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "bad"});
        let err = parse(vec![ed("good"), bad.clone()], KeyOrigin::Inline).err().expect("inline: refused");
        assert_eq!(err.path, "keys[1].x");
        assert_eq!(err.to_string(), format!("keys[1].x: {}", err.message));
        let fetched = parse(vec![ed("good"), bad], KeyOrigin::Fetched).expect("fetched: the good key stays usable");
        assert_eq!(kids(&fetched), vec![Some("good".to_string())]);
    }

    #[test]
    fn kid_length_is_bounded_at_256_bytes() {
        let at = "k".repeat(MAX_KID_LEN);
        assert_eq!(kids(&parse(vec![ed(&at)], KeyOrigin::Inline).unwrap()), vec![Some(at)]);
        let err = parse(vec![ed(&"k".repeat(MAX_KID_LEN + 1))], KeyOrigin::Inline).err().unwrap();
        assert_eq!(err.path, "keys[0].kid");
    }

    #[test]
    fn only_signature_keys_are_used() {
        let mut enc = ed("enc");
        enc["use"] = json!("enc");
        let mut sig = ed("sig");
        sig["use"] = json!("sig");
        let mut wrap_only = ed("wrap");
        wrap_only["key_ops"] = json!(["wrapKey"]);
        let mut verify_op = ed("verify-op");
        verify_op["key_ops"] = json!(["verify"]);
        let keys = parse(vec![enc, sig, wrap_only, verify_op], KeyOrigin::Fetched).unwrap();
        assert_eq!(kids(&keys), vec![Some("sig".to_string()), Some("verify-op".to_string())]);
    }

    #[test]
    fn p256_coordinates_must_both_be_32_bytes() {
        let shorter = |c: &str| b64::encode(&b64::decode(c.as_bytes()).unwrap()[1..]); // 31 bytes
        let (short_x, short_y) = (shorter(EC_X), shorter(EC_Y));
        for (x, y) in [(EC_X, short_y.as_str()), (short_x.as_str(), EC_Y)] {
            let key = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "ec"});
            let err = parse(vec![key], KeyOrigin::Inline).err().expect("refused, never a panic");
            assert_eq!(err.path, "keys[0].x");
        }
        let good = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "ec"});
        assert!(parse(vec![good], KeyOrigin::Inline).is_ok());
        // Another curve is skipped, not refused.
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": EC_X, "y": EC_Y, "kid": "p384"});
        assert_eq!(kids(&parse(vec![p384, ed("ed")], KeyOrigin::Inline).unwrap()), vec![Some("ed".to_string())]);
    }

    #[test]
    fn hs256_keys_need_32_bytes_and_come_only_from_config() {
        let oct = |len: usize| json!({"kty": "oct", "k": b64::encode(&vec![7u8; len]), "kid": "h"});
        assert_eq!(parse(vec![oct(31)], KeyOrigin::Inline).err().unwrap().path, "keys[0].k");
        assert!(parse(vec![oct(32)], KeyOrigin::Inline).is_ok());
        assert!(parse(vec![oct(64)], KeyOrigin::Inline).is_ok());
        assert_eq!(parse(vec![oct(32)], KeyOrigin::Fetched).err().unwrap().path, "keys", "a fetched secret is never used");
    }

    /// The shape check before a host is asked: exactly the signature length each key type makes.
    #[test]
    fn well_formed_signatures_have_the_length_of_their_key_type() {
        let key = |v: Value| parse(vec![v], KeyOrigin::Inline).unwrap().keys.remove(0);
        let hmac = key(json!({"kty": "oct", "k": b64::encode(&[7u8; 32]), "kid": "h"}));
        assert!(hmac.well_formed(&[0u8; 32]));
        assert!(!hmac.well_formed(&[0u8; 31]) && !hmac.well_formed(&[0u8; 33]));
        let ed_key = key(ed("e"));
        assert!(ed_key.well_formed(&[0u8; 64]));
        assert!(!ed_key.well_formed(&[0u8; 63]));
    }
}
