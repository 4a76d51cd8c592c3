//! Randomness, hashing, sealing with the master key, and JWS signing keys. Nothing here
//! verifies a token: the server judges what it accepts with auth-core's verifier (`keys.rs`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use auth_core::b64;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    OsRng.fill_bytes(&mut v);
    v
}

/// 128 random bits as 32 hex characters.
pub fn random_id128() -> String {
    hex::encode(random_bytes(16))
}

/// A prefixed random identifier, e.g. `usr_<32 hex>`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_id128())
}

/// 256 random bits, base64url, with a prefix: bearer secrets (session tokens, refresh tokens).
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", b64::encode(&random_bytes(32)))
}

/// A numeric code of `digits` digits, uniformly distributed.
pub fn numeric_code(digits: u32) -> String {
    let modulus = 10u64.pow(digits);
    // Rejection sampling: no modulo bias.
    let zone = u64::MAX - (u64::MAX % modulus);
    loop {
        let v = OsRng.next_u64();
        if v < zone {
            return format!("{:0width$}", v % modulus, width = digits as usize);
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The master key and the keys derived from it, each for one purpose.
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// Peppers the hashes of emailed codes.
    pub code_pepper: Zeroizing<[u8; 32]>,
    /// Binds CSRF tokens to sessions.
    pub csrf_key: Zeroizing<[u8; 32]>,
    /// Default API-key HMAC secret when the config names none.
    pub api_key_hmac: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub fn new(raw: &[u8; 32]) -> MasterKey {
        let derive = |label: &str| Zeroizing::new(hmac_sha256(raw, label.as_bytes()));
        let enc = derive("authgate/v1/seal");
        MasterKey {
            cipher: Aes256Gcm::new_from_slice(&enc[..]).expect("32-byte key"),
            code_pepper: derive("authgate/v1/code-pepper"),
            csrf_key: derive("authgate/v1/csrf"),
            api_key_hmac: derive("authgate/v1/api-key-hmac"),
        }
    }

    /// AES-256-GCM with a random nonce; `context` is authenticated (binds the blob to its row).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let nonce_bytes = random_bytes(12);
        let nonce_arr: [u8; 12] = nonce_bytes.clone().try_into().expect("12 bytes");
        let ct =
            self.cipher.encrypt(&Nonce::from(nonce_arr), Payload { msg: plaintext, aad: context.as_bytes() }).expect("AES-GCM encryption");
        let mut out = nonce_bytes;
        out.extend_from_slice(&ct);
        format!("v1.{}", b64::encode(&out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let body = sealed.strip_prefix("v1.").ok_or_else(|| anyhow::anyhow!("unknown sealed format"))?;
        let raw = b64::decode(body.as_bytes()).ok_or_else(|| anyhow::anyhow!("sealed value is not base64url"))?;
        if raw.len() < 12 + 16 {
            anyhow::bail!("sealed value too short");
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(&Nonce::from(<[u8; 12]>::try_from(nonce).expect("12 bytes")), Payload { msg: ct, aad: context.as_bytes() })
            .map_err(|_| anyhow::anyhow!("cannot open a sealed value: wrong master key or tampered data"))?;
        Ok(Zeroizing::new(pt))
    }
}

/// Signing algorithms the server issues with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigAlg {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

impl SigAlg {
    pub fn parse(s: &str) -> Option<SigAlg> {
        match s {
            "EdDSA" => Some(SigAlg::EdDSA),
            "ES256" => Some(SigAlg::ES256),
            "RS256" => Some(SigAlg::RS256),
            "HS256" => Some(SigAlg::HS256),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SigAlg::EdDSA => "EdDSA",
            SigAlg::ES256 => "ES256",
            SigAlg::RS256 => "RS256",
            SigAlg::HS256 => "HS256",
        }
    }
    pub fn core(self) -> auth_core::Alg {
        match self {
            SigAlg::EdDSA => auth_core::Alg::EdDSA,
            SigAlg::ES256 => auth_core::Alg::ES256,
            SigAlg::RS256 => auth_core::Alg::RS256,
            SigAlg::HS256 => auth_core::Alg::HS256,
        }
    }
}

enum KeyMaterial {
    Ed(ed25519_dalek::SigningKey),
    Es(p256::ecdsa::SigningKey),
    Rs(Box<rsa::pkcs1v15::SigningKey<Sha256>>, rsa::RsaPublicKey),
    Hs(Zeroizing<Vec<u8>>),
}

/// One signing key with its private half.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigAlg,
    material: KeyMaterial,
}

impl SigningKey {
    /// Generates a fresh key (RSA: 2048 bits).
    pub fn generate(alg: SigAlg) -> anyhow::Result<SigningKey> {
        let kid = format!("k_{}", &random_id128()[..16]);
        let material = match alg {
            SigAlg::EdDSA => KeyMaterial::Ed(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            SigAlg::ES256 => KeyMaterial::Es(p256::ecdsa::SigningKey::random(&mut OsRng)),
            SigAlg::RS256 => {
                let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048)?;
                let public = private.to_public_key();
                KeyMaterial::Rs(Box::new(rsa::pkcs1v15::SigningKey::<Sha256>::new(private)), public)
            }
            SigAlg::HS256 => KeyMaterial::Hs(Zeroizing::new(random_bytes(32))),
        };
        Ok(SigningKey { kid, alg, material })
    }

    /// The private key as bytes (seed, scalar, PKCS#8 DER or raw secret), for sealing.
    pub fn private_bytes(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        Ok(match &self.material {
            KeyMaterial::Ed(k) => Zeroizing::new(k.to_bytes().to_vec()),
            KeyMaterial::Es(k) => Zeroizing::new(k.to_bytes().to_vec()),
            KeyMaterial::Rs(k, _) => {
                use rsa::pkcs8::EncodePrivateKey;
                let private: &rsa::RsaPrivateKey = k.as_ref().as_ref();
                Zeroizing::new(private.to_pkcs8_der()?.as_bytes().to_vec())
            }
            KeyMaterial::Hs(k) => Zeroizing::new(k.to_vec()),
        })
    }

    pub fn from_private_bytes(kid: &str, alg: SigAlg, bytes: &[u8]) -> anyhow::Result<SigningKey> {
        let material = match alg {
            SigAlg::EdDSA => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("Ed25519 seed must be 32 bytes"))?;
                KeyMaterial::Ed(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            SigAlg::ES256 => KeyMaterial::Es(p256::ecdsa::SigningKey::from_slice(bytes)?),
            SigAlg::RS256 => {
                use rsa::pkcs8::DecodePrivateKey;
                let private = rsa::RsaPrivateKey::from_pkcs8_der(bytes)?;
                let public = private.to_public_key();
                KeyMaterial::Rs(Box::new(rsa::pkcs1v15::SigningKey::<Sha256>::new(private)), public)
            }
            SigAlg::HS256 => KeyMaterial::Hs(Zeroizing::new(bytes.to_vec())),
        };
        Ok(SigningKey { kid: kid.to_string(), alg, material })
    }

    /// A key brought from elsewhere (`auth-server keys import`): PKCS#8 PEM for EdDSA, ES256 and
    /// RS256 (2048 to 8192 bits), the base64url secret (at least 32 bytes) for HS256. The kid is
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub fn import(kid: &str, alg: SigAlg, text: &str) -> anyhow::Result<SigningKey> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            anyhow::bail!("--kid: 1 to 64 of A-Z a-z 0-9 . _ -");
        }
        let pem_error = |e: &dyn std::fmt::Display| anyhow::anyhow!("not a PKCS#8 PEM private key for {}: {e}", alg.as_str());
        let material = match alg {
            SigAlg::EdDSA => KeyMaterial::Ed(ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| pem_error(&e))?),
            SigAlg::ES256 => KeyMaterial::Es(p256::ecdsa::SigningKey::from_pkcs8_pem(text).map_err(|e| pem_error(&e))?),
            SigAlg::RS256 => {
                use rsa::traits::PublicKeyParts;
                let private = rsa::RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| pem_error(&e))?;
                let bits = private.n().bits();
                if !(2048..=8192).contains(&bits) {
                    anyhow::bail!("an RSA key of {bits} bits: 2048 to 8192 accepted");
                }
                let public = private.to_public_key();
                KeyMaterial::Rs(Box::new(rsa::pkcs1v15::SigningKey::<Sha256>::new(private)), public)
            }
            SigAlg::HS256 => {
                let secret = b64::decode(text.trim().as_bytes())
                    .ok_or_else(|| anyhow::anyhow!("an HS256 key is its secret, base64url without padding"))?;
                if secret.len() < 32 {
                    anyhow::bail!("an HS256 secret must be at least 32 bytes");
                }
                KeyMaterial::Hs(Zeroizing::new(secret))
            }
        };
        Ok(SigningKey { kid: kid.to_string(), alg, material })
    }

    /// The public JWK (`None` for HS256, which has no public half).
    pub fn public_jwk(&self) -> Option<Value> {
        let (kid, alg) = (&self.kid, self.alg.as_str());
        match &self.material {
            KeyMaterial::Ed(k) => Some(json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes()),
                "kid": kid, "alg": alg, "use": "sig"
            })),
            KeyMaterial::Es(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                Some(json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64::encode(point.x().expect("uncompressed point")),
                    "y": b64::encode(point.y().expect("uncompressed point")),
                    "kid": kid, "alg": alg, "use": "sig"
                }))
            }
            KeyMaterial::Rs(_, public) => {
                use rsa::traits::PublicKeyParts;
                Some(json!({
                    "kty": "RSA", "n": b64::encode(&public.n().to_bytes_be()), "e": b64::encode(&public.e().to_bytes_be()),
                    "kid": kid, "alg": alg, "use": "sig"
                }))
            }
            KeyMaterial::Hs(_) => None,
        }
    }

    /// The symmetric JWK for HS256 (only ever handed to gateways through gateway-config).
    pub fn secret_jwk(&self) -> Option<Value> {
        match &self.material {
            KeyMaterial::Hs(k) => Some(json!({"kty": "oct", "k": b64::encode(k), "kid": self.kid, "alg": "HS256"})),
            _ => None,
        }
    }

    fn sign_bytes(&self, input: &[u8]) -> Vec<u8> {
        use signature_compat::Signer;
        match &self.material {
            KeyMaterial::Ed(k) => k.sign(input).to_bytes().to_vec(),
            KeyMaterial::Es(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                // Low s only: (r, n - s) is a second valid encoding, which gateways refuse
                // unless a provider opts in (auth-core `es256_accept_high_s`).
                sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
            }
            KeyMaterial::Rs(k, _) => {
                use rsa::signature::SignatureEncoding;
                k.sign(input).to_vec()
            }
            KeyMaterial::Hs(k) => hmac_sha256(k, input).to_vec(),
        }
    }

    /// Compact JWS of `claims` with header `{alg, kid, typ}`.
    pub fn sign_jws(&self, typ: &str, claims: &impl serde::Serialize) -> String {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": typ});
        let mut out = b64::encode(&serde_json::to_vec(&header).expect("header serializes"));
        out.push('.');
        out.push_str(&b64::encode(&serde_json::to_vec(claims).expect("claims serialize")));
        let sig = self.sign_bytes(out.as_bytes());
        out.push('.');
        out.push_str(&b64::encode(&sig));
        out
    }
}

/// The `signature` crate's traits, as re-exported by the key crates.
mod signature_compat {
    pub use ed25519_dalek::ed25519::signature::Signer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_context_binding() {
        let mk = MasterKey::new(&[3u8; 32]);
        let sealed = mk.seal(b"secret", "kid-1");
        assert_eq!(&mk.open(&sealed, "kid-1").unwrap()[..], b"secret");
        assert!(mk.open(&sealed, "kid-2").is_err());
        assert!(MasterKey::new(&[4u8; 32]).open(&sealed, "kid-1").is_err());
    }

    /// What each key signs verifies in auth-core (the gateways' verifier) with the key's JWK,
    /// also after the key went through its sealed byte form; ES256 signatures are low-s.
    #[test]
    fn every_alg_signs_what_auth_core_verifies() {
        use auth_core::{StalePolicy, UnixTime, Verifier, VerifierConfig};
        for alg in [SigAlg::EdDSA, SigAlg::ES256, SigAlg::RS256, SigAlg::HS256] {
            let key = SigningKey::generate(alg).unwrap();
            let restored = SigningKey::from_private_bytes(&key.kid, alg, &key.private_bytes().unwrap()).unwrap();
            assert_eq!(restored.public_jwk(), key.public_jwk());
            let jwk = restored.public_jwk().or_else(|| restored.secret_jwk()).unwrap();
            let config: VerifierConfig = serde_json::from_value(json!({
                "providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks": {"keys": [jwk]}, "algorithms": [alg.as_str()]}]
            }))
            .unwrap();
            let verifier = Verifier::new(&config).unwrap();
            for _ in 0..8 {
                let jws = key.sign_jws("at+jwt", &json!({"iss": "https://iss", "aud": "api", "sub": "u", "exp": 2_000_000_000}));
                let v = verifier.verify_token(&jws, UnixTime::from_secs(1_700_000_000), StalePolicy::FailClosed);
                assert_eq!(v.map(|v| v.identity.subject.clone()).map_err(|r| r.code), Ok("u".to_string()), "{}", alg.as_str());
            }
        }
    }

    #[test]
    fn imported_keys_are_checked() {
        assert!(SigningKey::import("k 1", SigAlg::HS256, &b64::encode(&[1; 32])).is_err(), "kid");
        assert!(SigningKey::import("k1", SigAlg::HS256, &b64::encode(&[1; 31])).is_err(), "short secret");
        assert!(SigningKey::import("k1", SigAlg::EdDSA, "not pem").is_err());
        let hs = SigningKey::import("k1", SigAlg::HS256, &b64::encode(&[1; 32])).unwrap();
        assert_eq!(hs.secret_jwk().unwrap()["k"], b64::encode(&[1; 32]));
        let ed_pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/keys/ed1.pem")).unwrap();
        let ed = SigningKey::import("ed1", SigAlg::EdDSA, &ed_pem).unwrap();
        assert_eq!(ed.public_jwk().unwrap()["kid"], "ed1");
        assert!(SigningKey::import("ed1", SigAlg::ES256, &ed_pem).is_err(), "an Ed25519 key is not a P-256 key");
    }

    #[test]
    fn codes_have_the_requested_digits() {
        for _ in 0..100 {
            let c = numeric_code(6);
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
