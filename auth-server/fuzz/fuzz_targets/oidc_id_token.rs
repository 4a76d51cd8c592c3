//! An ID token's claims (any bytes as its payload), signed by the provider, through the OpenID
//! Connect checks and each preset's reading of them.
#![no_main]

use std::sync::LazyLock;

use auth_server::fuzz::{oidc_id_token, OidcParties};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_bytes(&[7; 32]));
static JWKS: LazyLock<Value> =
    LazyLock::new(|| json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "x": B64.encode(KEY.verifying_key().as_bytes())}]}));

fn sign(claims: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(br#"{"alg":"EdDSA","kid":"fuzz","typ":"JWT"}"#), B64.encode(claims));
    let signature = KEY.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(signature.to_bytes()))
}

fuzz_target!(|claims: &[u8]| {
    // The clock, client and nonce of auth-server/fuzz/make_seeds.py.
    let parties = OidcParties { now: 1_800_000_000, client_id: "client-1", nonce: "n0nce-of-this-round-trip", jwks: &JWKS };
    oidc_id_token(claims, sign, &parties);
});
