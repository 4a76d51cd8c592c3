//! The verified-token cache: SHA-256 of the token → the identity it proved, until the token's
//! `exp`. Bounded (FIFO eviction, expired entries first); flushed whenever keys or the revocation
//! feed change, so a hit never outlives the material it was verified against. Used through
//! [`crate::Verifier::verify_token_cached`] by the gateway and by the auth-server alike.

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
struct CachedToken {
    pub identity: Arc<Identity>,
    pub provider: usize,
    /// The token's own `exp`: the entry is never used at or after it.
    pub expires_at: i64,
}

/// A bounded cache of verified tokens. Belongs to one key set: flush it (or start a new one)
/// when the keys or the revocation list change.
pub struct TokenCache {
    max_entries: usize,
    map: HashMap<TokenHash, CachedToken, BuildHasherDefault<DigestHasher>>,
    order: VecDeque<TokenHash>,
}

impl core::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenCache").field("max_entries", &self.max_entries).field("len", &self.map.len()).finish()
    }
}

impl TokenCache {
    /// `max_entries` 0 turns the cache off.
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache { max_entries, map: HashMap::default(), order: VecDeque::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    pub(crate) fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A hit for `key` (a [`TokenCache::hash`]) at `now` (unix seconds): the identity and the
    /// issuer index it was verified with.
    pub(crate) fn get(&mut self, key: &TokenHash, now: i64) -> Option<(Arc<Identity>, usize)> {
        let expired = self.map.get(key)?.expires_at <= now;
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| (e.identity.clone(), e.provider))
    }

    /// Keeps a fully checked verification for reuse: one made with fresh keys, not a hit
    /// already, and whose revocation check was complete (the caller says so by calling this).
    pub fn remember(&mut self, verified: &crate::Verified, now: crate::UnixTime) {
        let (Some(key), Some(provider), Some(exp)) = (verified.cache_key, verified.provider, verified.identity.expires_at) else { return };
        if verified.stale_keys || verified.cache_hit {
            return;
        }
        self.insert(key, CachedToken { identity: verified.identity.clone(), provider, expires_at: exp }, now.secs());
    }

    fn insert(&mut self, key: TokenHash, entry: CachedToken, now: i64) {
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

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}
