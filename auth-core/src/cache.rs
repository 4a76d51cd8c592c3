//! The verified-token cache: the token itself → the identity it proved, until the token's `exp`.
//! Bounded (FIFO eviction; an expired entry is never used and leaves in its turn); flushed whenever keys or the revocation feed
//! change, so a hit never outlives the material it was verified against. Used through
//! [`crate::Verifier::verify_token_cached`] by the gateway and by the auth-server alike.
//!
//! An entry is found by the whole token, compared byte for byte: a token differing anywhere (a
//! tampered payload under a genuine signature, say) never hits another's entry, and an upstream
//! that re-reads the JWT sees exactly what was verified. That costs the token's bytes per entry
//! (the identity already holds its claims) and buys a lookup without a cryptographic hash: the
//! SHA-256 this cache used to key on was most of a hit's time, in WebAssembly above all.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::decision::Identity;

/// A fast, fixed-seed hasher: only verified tokens are ever stored, so a caller cannot fill a
/// bucket with chosen keys, and a fixed seed needs no randomness from the host.
type TokenHasher = foldhash::fast::FixedState;

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
    map: HashMap<Arc<str>, CachedToken, TokenHasher>,
    order: VecDeque<Arc<str>>,
}

impl core::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenCache").field("max_entries", &self.max_entries).field("len", &self.map.len()).finish()
    }
}

impl TokenCache {
    /// `max_entries` 0 turns the cache off.
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache { max_entries, map: HashMap::with_hasher(TokenHasher::with_seed(0x6175_7468_6761_7465)), order: VecDeque::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// A hit for `token` at `now` (unix seconds): the identity and the issuer index it was
    /// verified with.
    pub(crate) fn get(&mut self, token: &str, now: i64) -> Option<(Arc<Identity>, usize)> {
        // An expired entry stays until it is evicted in its turn: `order` and `map` always hold
        // the same keys, so neither needs compacting.
        let entry = self.map.get(token).filter(|e| e.expires_at > now)?;
        Some((entry.identity.clone(), entry.provider))
    }

    /// Keeps a fully checked verification for reuse: one made with fresh keys, not a hit
    /// already, and whose revocation check was complete (the caller says so by calling this).
    pub fn remember(&mut self, verified: &crate::Verified, now: crate::UnixTime) {
        let (Some(key), Some(provider), Some(exp)) = (&verified.cache_key, verified.provider, verified.identity.expires_at) else { return };
        // (A hit has no `cache_key`: it is in already.)
        if verified.stale_keys {
            return;
        }
        self.insert(key.clone(), CachedToken { identity: verified.identity.clone(), provider, expires_at: exp }, now.secs());
    }

    fn insert(&mut self, key: Arc<str>, entry: CachedToken, now: i64) {
        if !self.enabled() || entry.expires_at <= now {
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
        if self.map.insert(key.clone(), entry).is_none() {
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
