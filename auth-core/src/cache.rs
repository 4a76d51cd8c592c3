//! The verified-token cache: SHA-256 of the token → the identity it proved, until the token's
//! `exp`. Bounded (FIFO eviction, expired entries first); flushed whenever keys or the revocation
//! feed change, so a hit never outlives the material it was verified against.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::decision::Identity;

pub(crate) type TokenHash = [u8; 32];

/// Keys are SHA-256 outputs, which an attacker cannot steer, so the first eight bytes are already
/// a well-distributed hash. This also avoids `RandomState`, which would read OS randomness.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= (*b as u64) << (i * 8);
        }
    }
}

#[derive(Clone)]
pub(crate) struct CachedToken {
    pub identity: Arc<Identity>,
    pub provider: usize,
    /// The token's own `exp`: the entry is never used at or after it.
    pub expires_at: i64,
}

pub(crate) struct TokenCache {
    max_entries: usize,
    map: HashMap<TokenHash, CachedToken, BuildHasherDefault<DigestHasher>>,
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> TokenCache {
        TokenCache { max_entries, map: HashMap::default(), order: VecDeque::new() }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    pub(crate) fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&mut self, key: &TokenHash, now: i64) -> Option<&CachedToken> {
        let expired = self.map.get(key)?.expires_at <= now;
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key)
    }

    pub(crate) fn insert(&mut self, key: TokenHash, entry: CachedToken, now: i64) {
        if self.max_entries == 0 || entry.expires_at <= now {
            return;
        }
        while self.map.len() >= self.max_entries {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // Entries removed on expiry leave their key in `order`; compact so it stays bounded.
        if self.order.len() >= self.max_entries.saturating_mul(2) {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        if self.map.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
