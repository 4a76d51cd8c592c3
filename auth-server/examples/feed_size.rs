//! Measures the signed revocation feed: its size with N revoked API keys, the bytes one entry
//! adds, one user's largest contribution (`api_keys.max_per_user` revoked-but-unexpired keys),
//! and how many entries fit under the gateways' 16 MiB limit.
//!
//! ```text
//! cargo run -p auth-server --example feed_size -- 100000 25
//! ```
//! Arguments: the number of revoked keys (default 100000) and `api_keys.max_per_user` (default
//! 25). The feed is auth-core's `RevocationFeedClaims`, serialised and signed (EdDSA compact JWS,
//! `typ: revocations+jwt`) exactly as the server does, with ids and expiries of the shape the
//! server writes (128-bit hex ids, 10-digit unix times).

use auth_core::b64;
use auth_core::formats::{RevocationFeedClaims, RevokedEntry, RevokedLists};
use ed25519_dalek::Signer;
use rand::RngCore;

const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;

fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The signed feed with `n` revoked API keys (each expiring within a year of `now`).
fn signed_feed(key: &ed25519_dalek::SigningKey, n: usize) -> String {
    let now = 1_790_000_000;
    let api_key = (0..n).map(|i| RevokedEntry { id: random_id(), exp: now + 365 * 86400 - (i as i64 % 86400) }).collect();
    let claims = RevocationFeedClaims {
        iss: "https://auth.example.com".into(),
        iat: now,
        exp: now + 300,
        ver: 123_456,
        watermark: now - 1,
        revoked: RevokedLists { api_key, ..Default::default() },
    };
    let header = serde_json::json!({"alg": "EdDSA", "kid": "k_0123456789abcdef", "typ": "revocations+jwt"});
    let mut jws = b64::encode(&serde_json::to_vec(&header).expect("header"));
    jws.push('.');
    jws.push_str(&b64::encode(&serde_json::to_vec(&claims).expect("claims")));
    let sig = key.sign(jws.as_bytes());
    jws.push('.');
    jws.push_str(&b64::encode(&sig.to_bytes()));
    jws
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let n = args.first().copied().unwrap_or(100_000);
    let per_user = args.get(1).copied().unwrap_or(25);
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let empty = signed_feed(&key, 0).len();
    let full = signed_feed(&key, n).len();
    let per_entry = (full - empty) as f64 / n as f64;
    println!("empty feed: {empty} bytes");
    println!(
        "{n} revoked API keys: {full} bytes ({:.2} MiB, {:.1}% of the 16 MiB gateway limit)",
        full as f64 / 1048576.0,
        full as f64 * 100.0 / MAX_FEED_BYTES as f64
    );
    println!("one entry: {per_entry:.1} bytes (JSON {{\"id\":<32 hex>,\"exp\":<10 digits>}} and a comma, base64url)");
    println!(
        "one user at most: {per_user} entries = {:.0} bytes ({:.2} KiB)",
        per_user as f64 * per_entry,
        per_user as f64 * per_entry / 1024.0
    );
    println!(
        "entries under 16 MiB: {:.0} (= {:.0} users at their maximum)",
        (MAX_FEED_BYTES - empty) as f64 / per_entry,
        (MAX_FEED_BYTES - empty) as f64 / per_entry / per_user as f64
    );
}
