//! Signing keys: generated on first start, kept in the database sealed with the master key,
//! rotated with an overlap window (`auth-server keys rotate`). Every replica reloads them
//! periodically; the current key is the newest one whose `activates_at` has passed, and the
//! JWKS lists every key not yet retired (so gateways learn a key before it signs anything
//! when rotation pre-publishes it, and keep the old one while its tokens live). Each loaded set
//! carries auth-core's verifier over exactly those keys: the server judges the tokens and API
//! keys it accepts by the gateways' rules.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use auth_core::config::{ApiKeysConfig, HmacKeyConfig, ProviderConfig, VerifierConfig};
use auth_core::formats::ACCESS_TOKEN_TYP;
use auth_core::{Alg, TokenCache, Verifier};
use serde_json::json;

use crate::crypto::{MasterKey, SigAlg, SigningKey};
use crate::db::{now, Db};

/// Verified tokens kept per key set (a hit skips the signature check; revocation is checked on
/// every use).
const VERIFIED_TOKENS: usize = 10_000;

/// The keys in use, the JWKS gateways fetch, and the verifier of what they signed.
pub struct SigningKeys {
    /// Newest first.
    pub keys: Vec<Arc<StoredKey>>,
    /// The JWKS as served (bytes) and its ETag.
    pub jwks_body: String,
    pub jwks_etag: String,
    /// auth-core's verifier: these keys (HS256 ones included) for `public_url` and the token
    /// audience, and the API-key ring.
    pub verifier: Verifier,
    /// Tokens this verifier checked; a new key set starts empty.
    pub verified: Mutex<TokenCache>,
}

impl SigningKeys {
    /// The verified-token cache. A panic while it was held (none is known) may have left it half
    /// updated: it is then emptied rather than trusted, and the request goes on without panicking.
    pub fn verified_tokens(&self) -> MutexGuard<'_, TokenCache> {
        self.verified.lock().unwrap_or_else(|poisoned| {
            let mut cache = poisoned.into_inner();
            cache.clear();
            self.verified.clear_poison();
            cache
        })
    }
}

/// What the verifier of every key set is built from besides the keys.
pub struct VerifierTemplate {
    pub issuer: String,
    pub audience: String,
    pub hmac_keys: Vec<HmacKeyConfig>,
}

impl VerifierTemplate {
    fn verifier(&self, keys: &[Arc<StoredKey>]) -> anyhow::Result<Verifier> {
        let jwks: Vec<serde_json::Value> = keys.iter().filter_map(|k| k.key.public_jwk().or_else(|| k.key.secret_jwk())).collect();
        let providers = if jwks.is_empty() {
            Vec::new()
        } else {
            vec![ProviderConfig {
                issuer: self.issuer.clone(),
                audiences: vec![self.audience.clone()],
                jwks: Some(json!({ "keys": jwks })),
                jwks_uri: None,
                algorithms: vec![Alg::EdDSA, Alg::ES256, Alg::RS256, Alg::HS256],
                clock_skew_s: ProviderConfig::DEFAULT_CLOCK_SKEW_S,
                typ: Some(vec![ACCESS_TOKEN_TYP.to_string()]),
                es256_accept_high_s: false,
            }]
        };
        let config =
            VerifierConfig { providers, api_keys: Some(ApiKeysConfig { hmac_keys: self.hmac_keys.clone() }), limits: Default::default() };
        Verifier::new(&config).map_err(|e| anyhow::anyhow!("verifier over the signing keys: {e}"))
    }
}

pub struct StoredKey {
    pub key: SigningKey,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    /// Signs access tokens (`access`), or only ID tokens of another algorithm (`id_token`).
    pub id_token_only: bool,
}

impl StoredKey {
    fn active(&self, now: i64) -> bool {
        self.activates_at <= now && self.retires_at.is_none_or(|r| r > now)
    }
}

impl SigningKeys {
    /// The key that signs access tokens (and feeds): the newest active access key.
    pub fn current(&self, now: i64) -> Option<&Arc<StoredKey>> {
        self.keys.iter().filter(|k| !k.id_token_only && k.active(now)).max_by_key(|k| k.activates_at)
    }

    /// The key that signs an ID token in `alg`: the access key when it has that algorithm, else
    /// the newest active key kept for ID tokens in it.
    pub fn current_for_id_token(&self, alg: SigAlg, now: i64) -> Option<&Arc<StoredKey>> {
        if let Some(k) = self.current(now).filter(|k| k.key.alg == alg) {
            return Some(k);
        }
        self.keys.iter().filter(|k| k.id_token_only && k.key.alg == alg && k.active(now)).max_by_key(|k| k.activates_at)
    }
}

pub struct KeyStore {
    db: Db,
    master: Arc<MasterKey>,
    alg: SigAlg,
    /// ID-token algorithms with keys of their own (`oidc.id_token_algs` other than `alg`).
    id_token_algs: Vec<SigAlg>,
    template: VerifierTemplate,
    set: RwLock<Arc<SigningKeys>>,
}

impl KeyStore {
    /// Loads the keys, generating the first one if there is none, and one for each ID-token
    /// algorithm that has no active key.
    pub async fn open(
        db: Db,
        master: Arc<MasterKey>,
        alg: SigAlg,
        id_token_algs: Vec<SigAlg>,
        template: VerifierTemplate,
    ) -> anyhow::Result<KeyStore> {
        let empty = SigningKeys {
            keys: Vec::new(),
            jwks_body: "{\"keys\":[]}".into(),
            jwks_etag: "\"empty\"".into(),
            verifier: template.verifier(&[])?,
            verified: Mutex::new(TokenCache::new(0)),
        };
        let id_token_algs = id_token_algs.into_iter().filter(|a| *a != alg).collect();
        let store = KeyStore { db, master, alg, id_token_algs, template, set: RwLock::new(Arc::new(empty)) };
        store.reload().await?;
        if store.get().current(now()).is_none() {
            store.insert_new(alg, now(), false).await?;
            store.reload().await?;
        }
        for &a in &store.id_token_algs {
            if store.get().current_for_id_token(a, now()).is_none() {
                store.insert_new(a, now(), true).await?;
                store.reload().await?;
            }
        }
        Ok(store)
    }

    pub fn get(&self) -> Arc<SigningKeys> {
        self.set.read().expect("key set lock").clone()
    }

    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        let t = now();
        let rows: Vec<(String, String, String, i64, Option<i64>, String)> = sqlx::query_as(
            "SELECT kid, alg, private_key, activates_at, retires_at, purpose FROM signing_keys \
             WHERE retires_at IS NULL OR retires_at > $1 ORDER BY activates_at DESC, created_at DESC",
        )
        .bind(t)
        .fetch_all(&self.db)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for (kid, alg, sealed, activates_at, retires_at, purpose) in rows {
            let alg = SigAlg::parse(&alg).ok_or_else(|| anyhow::anyhow!("signing key {kid}: unknown alg {alg}"))?;
            let private = self.master.open(&sealed, &kid).map_err(|e| anyhow::anyhow!("signing key {kid}: {e}"))?;
            let key = SigningKey::from_private_bytes(&kid, alg, &private)?;
            keys.push(Arc::new(StoredKey { key, activates_at, retires_at, id_token_only: purpose == "id_token" }));
        }
        // The same keys as in use: keep the set, and with it the verified tokens.
        let same = |a: &[Arc<StoredKey>], b: &[Arc<StoredKey>]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| x.key.kid == y.key.kid && x.activates_at == y.activates_at && x.retires_at == y.retires_at)
        };
        if same(&keys, &self.get().keys) && !keys.is_empty() {
            return Ok(());
        }
        let jwks = json!({"keys": keys.iter().filter_map(|k| k.key.public_jwk()).collect::<Vec<_>>()});
        let jwks_body = serde_json::to_string(&jwks)?;
        let jwks_etag = format!("\"{}\"", &crate::crypto::sha256_hex(jwks_body.as_bytes())[..32]);
        let verifier = self.template.verifier(&keys)?;
        let set = SigningKeys { keys, jwks_body, jwks_etag, verifier, verified: Mutex::new(TokenCache::new(VERIFIED_TOKENS)) };
        *self.set.write().expect("key set lock") = Arc::new(set);
        Ok(())
    }

    async fn insert_new(&self, alg: SigAlg, activates_at: i64, id_token_only: bool) -> anyhow::Result<String> {
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg)).await??;
        self.insert(&key, activates_at, id_token_only).await?;
        Ok(key.kid.clone())
    }

    /// Stores a key, its private half sealed with the master key (bound to its kid).
    async fn insert(&self, key: &SigningKey, activates_at: i64, id_token_only: bool) -> anyhow::Result<()> {
        let sealed = self.master.seal(&key.private_bytes()?, &key.kid);
        let jwk = key.public_jwk().map(|j| j.to_string());
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, activates_at, retires_at, purpose) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(sealed)
        .bind(jwk)
        .bind(now())
        .bind(activates_at)
        .bind(if id_token_only { "id_token" } else { "access" })
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// A key brought from elsewhere (migrating from another issuer, keys kept in an HSM export):
    /// published at once, signing from `now + activate_in_s` (activation times strictly
    /// increase, as with rotation); nothing is retired.
    pub async fn import(&self, key: SigningKey, activate_in_s: i64) -> anyhow::Result<(String, i64)> {
        let taken: Option<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kid = $1").bind(&key.kid).fetch_optional(&self.db).await?;
        if taken.is_some() {
            anyhow::bail!("--kid {}: a signing key with this kid exists", key.kid);
        }
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(activates_at) FROM signing_keys").fetch_one(&self.db).await?;
        let activation = (now() + activate_in_s.max(0)).max(latest.map_or(0, |l| l + 1));
        self.insert(&key, activation, false).await?;
        self.reload().await?;
        Ok((key.kid.clone(), activation))
    }

    /// Rotation: a new key published now and signing from `now + activate_in_s`; the keys it
    /// replaces stay published until `activation + retire_after_s` (the lifetime of what they
    /// signed), then leave the JWKS. The ID-token keys of other algorithms rotate with it.
    pub async fn rotate(&self, alg: SigAlg, activate_in_s: i64, retire_after_s: i64) -> anyhow::Result<(String, i64, i64)> {
        let t = now();
        // Activation times strictly increase, so "the newest active key" is never ambiguous.
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(activates_at) FROM signing_keys").fetch_one(&self.db).await?;
        let activation = (t + activate_in_s.max(0)).max(latest.map_or(0, |l| l + 1));
        let retire = activation + retire_after_s.max(0);
        let kid = self.insert_new(alg, activation, false).await?;
        for &a in self.id_token_algs.iter().filter(|a| **a != alg) {
            self.insert_new(a, activation, true).await?;
        }
        // Every key before the new ones (activation times strictly increase); keys already
        // scheduled to retire earlier keep their date.
        sqlx::query("UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL AND activates_at < $2")
            .bind(retire)
            .bind(activation)
            .execute(&self.db)
            .await?;
        self.reload().await?;
        Ok((kid, activation, retire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_verified_token_cache_is_emptied_not_a_panic() {
        let template = VerifierTemplate { issuer: "https://auth.example".into(), audience: "api".into(), hmac_keys: Vec::new() };
        let set = SigningKeys {
            keys: Vec::new(),
            jwks_body: "{\"keys\":[]}".into(),
            jwks_etag: "\"empty\"".into(),
            verifier: template.verifier(&[]).unwrap(),
            verified: Mutex::new(TokenCache::new(8)),
        };
        std::thread::scope(|s| {
            let poisoner = s.spawn(|| {
                let _held = set.verified.lock().unwrap();
                panic!("a panic while the cache is held");
            });
            assert!(poisoner.join().is_err());
        });
        assert!(set.verified.is_poisoned());
        assert!(set.verified_tokens().is_empty());
        assert!(!set.verified.is_poisoned(), "the lock is usable again");
    }
}
