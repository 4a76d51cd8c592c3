//! Signing keys: generated on first start, kept in the database sealed with the master key,
//! rotated with an overlap window (`auth-server keys rotate`). Every replica reloads them
//! periodically; the current key is the newest one whose `activates_at` has passed, and the
//! JWKS lists every key not yet retired (so gateways learn a key before it signs anything
//! when rotation pre-publishes it, and keep the old one while its tokens live).

use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::crypto::{MasterKey, SigAlg, SigningKey};
use crate::db::{now, Db};

pub struct KeySet {
    /// Newest first.
    pub keys: Vec<Arc<StoredKey>>,
    /// The JWKS as served (bytes) and its ETag.
    pub jwks_body: String,
    pub jwks_etag: String,
}

pub struct StoredKey {
    pub key: SigningKey,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
}

impl KeySet {
    pub fn current(&self, now: i64) -> Option<&Arc<StoredKey>> {
        self.keys.iter().filter(|k| k.activates_at <= now && k.retires_at.map_or(true, |r| r > now)).max_by_key(|k| k.activates_at)
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<StoredKey>> {
        self.keys.iter().find(|k| k.key.kid == kid)
    }
}

pub struct KeyStore {
    db: Db,
    master: Arc<MasterKey>,
    alg: SigAlg,
    set: RwLock<Arc<KeySet>>,
}

impl KeyStore {
    /// Loads the keys, generating the first one if there is none.
    pub async fn open(db: Db, master: Arc<MasterKey>, alg: SigAlg) -> anyhow::Result<KeyStore> {
        let store = KeyStore { db, master, alg, set: RwLock::new(Arc::new(empty_set())) };
        store.reload().await?;
        if store.get().current(now()).is_none() {
            store.insert_new(alg, now()).await?;
            store.reload().await?;
        }
        Ok(store)
    }

    pub fn get(&self) -> Arc<KeySet> {
        self.set.read().expect("key set lock").clone()
    }

    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        let t = now();
        let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT kid, alg, private_key, activates_at, retires_at FROM signing_keys \
             WHERE retires_at IS NULL OR retires_at > $1 ORDER BY activates_at DESC, created_at DESC",
        )
        .bind(t)
        .fetch_all(&self.db)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for (kid, alg, sealed, activates_at, retires_at) in rows {
            let alg = SigAlg::parse(&alg).ok_or_else(|| anyhow::anyhow!("signing key {kid}: unknown alg {alg}"))?;
            let private = self.master.open(&sealed, &kid).map_err(|e| anyhow::anyhow!("signing key {kid}: {e}"))?;
            keys.push(Arc::new(StoredKey { key: SigningKey::from_private_bytes(&kid, alg, &private)?, activates_at, retires_at }));
        }
        let jwks = json!({"keys": keys.iter().filter_map(|k| k.key.public_jwk()).collect::<Vec<_>>()});
        let jwks_body = serde_json::to_string(&jwks)?;
        let jwks_etag = format!("\"{}\"", &crate::crypto::sha256_hex(jwks_body.as_bytes())[..32]);
        *self.set.write().expect("key set lock") = Arc::new(KeySet { keys, jwks_body, jwks_etag });
        Ok(())
    }

    async fn insert_new(&self, alg: SigAlg, activates_at: i64) -> anyhow::Result<String> {
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg)).await??;
        let sealed = self.master.seal(&key.private_bytes()?, &key.kid);
        let jwk = key.public_jwk().map(|j| j.to_string());
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, activates_at, retires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(&key.kid)
        .bind(alg.as_str())
        .bind(sealed)
        .bind(jwk)
        .bind(now())
        .bind(activates_at)
        .execute(&self.db)
        .await?;
        Ok(key.kid.clone())
    }

    /// Rotation: a new key published now and signing from `now + activate_in_s`; the keys it
    /// replaces stay published until `activation + retire_after_s` (the lifetime of what they
    /// signed), then leave the JWKS.
    pub async fn rotate(&self, alg: SigAlg, activate_in_s: i64, retire_after_s: i64) -> anyhow::Result<(String, i64, i64)> {
        let t = now();
        // Activation times strictly increase, so "the newest active key" is never ambiguous.
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(activates_at) FROM signing_keys").fetch_one(&self.db).await?;
        let activation = (t + activate_in_s.max(0)).max(latest.map_or(0, |l| l + 1));
        let retire = activation + retire_after_s.max(0);
        let kid = self.insert_new(alg, activation).await?;
        // Keys already scheduled to retire earlier keep their date.
        sqlx::query("UPDATE signing_keys SET retires_at = $1 WHERE kid <> $2 AND retires_at IS NULL")
            .bind(retire)
            .bind(&kid)
            .execute(&self.db)
            .await?;
        self.reload().await?;
        Ok((kid, activation, retire))
    }
}

fn empty_set() -> KeySet {
    KeySet { keys: Vec::new(), jwks_body: "{\"keys\":[]}".into(), jwks_etag: "\"empty\"".into() }
}
