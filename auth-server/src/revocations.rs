//! Revocations: the durable list (table `revocations`), an in-memory snapshot every replica
//! checks credentials against, and the signed feed gateways poll (`GET /v1/revocations`).
//!
//! Consistency: every change the feed shows runs in a transaction whose first statement takes
//! the feed lock and bumps `feed_state.ver`. A snapshot is read inside the same lock, and its
//! watermark is one second before the database's time read once the lock is held; API keys are
//! minted (active) under the same lock with `iat` from the same clock. So every API key whose
//! `iat` is at or below the watermark was committed (active or revoked) before the snapshot was
//! read. Replicas notice another replica's change within `feed.recheck_ms`.
//!
//! Size: a key is minted only once its creation is verified, so unverified requests never enter
//! the feed; a revoked key's entry leaves it when the key would have expired
//! (`api_keys.max_lifetime_s`); each user has at most `api_keys.max_per_user` keys that are
//! active or revoked-but-unexpired. docs/formats.md has the bound.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use auth_core::formats::{RevocationFeedClaims, RevokedEntry, RevokedLists, RevokedSubject};
use auth_core::jwt::FEED_TYP;
use auth_core::RevocationList;

use crate::db::{self, now, Db};
use crate::keys::SigningKeys;

/// Entry expiry for credentials that never expire (service keys minted by the CLI, and keys of
/// versions before `api_keys.max_lifetime_s`).
pub const FAR_FUTURE: i64 = 253_402_300_799;

/// The `iat_before` of a subject revocation made at database time `db_now`: tokens are minted
/// with their replica's clock, so the cut-off reaches `tokens.max_clock_skew_s` further; a token
/// minted on a replica whose clock runs ahead, just before the revocation, is still covered
/// (nothing is minted for the subject after it: the account or client is gone).
pub fn subject_cutoff(cfg: &crate::config::Config, db_now: i64) -> i64 {
    db_now + cfg.tokens.max_clock_skew_s
}

/// The `exp` of an entry covering the access tokens minted until database time `db_now` (by any
/// replica, within `tokens.max_clock_skew_s`).
pub fn access_entry_exp(cfg: &crate::config::Config, db_now: i64) -> i64 {
    db_now + cfg.tokens.max_clock_skew_s + cfg.tokens.access_ttl_s
}

/// The revocations of one moment: what the feed signs, and the verdict the server itself
/// applies to the credentials it accepts (auth-core's, the gateways' rules).
pub struct Snapshot {
    pub ver: i64,
    pub watermark: i64,
    pub built_at: i64,
    /// `iat` of the newest API key: a feed whose watermark is below it must be re-signed as
    /// soon as a newer watermark can cover it (so new keys become usable at the next poll).
    pub newest_key_iat: i64,
    pub lists: RevokedLists,
    /// The same lists as auth-core judges them.
    pub list: RevocationList,
}

/// A signed feed document and its ETag.
#[derive(Clone)]
pub struct SignedFeed {
    pub ver: i64,
    pub iat: i64,
    pub watermark: i64,
    pub kid: String,
    pub jws: String,
    pub etag: String,
}

pub struct Revocations {
    db: Db,
    issuer: String,
    ttl_s: i64,
    recheck: Duration,
    snap: RwLock<Arc<Snapshot>>,
    checked: Mutex<Instant>,
    rebuild: tokio::sync::Mutex<()>,
    feed: Mutex<Option<SignedFeed>>,
}

impl Revocations {
    pub async fn open(db: Db, issuer: String, ttl_s: i64, recheck_ms: u64) -> anyhow::Result<Revocations> {
        let first = build(&db).await?;
        Ok(Revocations {
            db,
            issuer,
            ttl_s,
            recheck: Duration::from_millis(recheck_ms),
            snap: RwLock::new(Arc::new(first)),
            checked: Mutex::new(Instant::now()),
            rebuild: tokio::sync::Mutex::new(()),
            feed: Mutex::new(None),
        })
    }

    fn loaded(&self) -> Arc<Snapshot> {
        self.snap.read().expect("snapshot lock").clone()
    }

    /// The snapshot, re-checking the version at most every `recheck_ms`.
    pub async fn current(&self) -> anyhow::Result<Arc<Snapshot>> {
        let stale = self.checked.lock().expect("check lock").elapsed() >= self.recheck;
        if stale {
            self.recheck().await
        } else {
            Ok(self.loaded())
        }
    }

    /// Re-reads the version now and rebuilds when it changed (or always with `force`).
    pub async fn refresh(&self, force: bool) -> anyhow::Result<Arc<Snapshot>> {
        let _guard = self.rebuild.lock().await;
        self.refresh_locked(force).await
    }

    /// The periodic re-check: skipped when another request did it while this one waited.
    async fn recheck(&self) -> anyhow::Result<Arc<Snapshot>> {
        let _guard = self.rebuild.lock().await;
        if self.checked.lock().expect("check lock").elapsed() < self.recheck {
            return Ok(self.loaded());
        }
        self.refresh_locked(false).await
    }

    async fn refresh_locked(&self, force: bool) -> anyhow::Result<Arc<Snapshot>> {
        let have = self.loaded();
        let ver = db::feed_version(&self.db).await?;
        *self.checked.lock().expect("check lock") = Instant::now();
        // Same lists, but an API key newer than the watermark can be covered now: move it on,
        // or every request with that key would have to ask the database.
        let t = now();
        let coverable = have.newest_key_iat > have.watermark && t - 1 >= have.newest_key_iat;
        if ver == have.ver && !force && !coverable {
            return Ok(have);
        }
        let next = Arc::new(build(&self.db).await?);
        *self.snap.write().expect("snapshot lock") = next.clone();
        Ok(next)
    }

    /// The signed feed: re-signed when the lists changed, when half its lifetime has passed
    /// (a newer watermark), or when the signing key changed.
    pub async fn feed(&self, keys: &SigningKeys) -> anyhow::Result<SignedFeed> {
        let t = now();
        let mut snap = self.refresh(false).await?;
        let key = keys.current(t).ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        let coverable = |watermark: i64, newest: i64| newest > watermark && t - 1 >= newest;
        if let Some(f) = self.feed.lock().expect("feed lock").as_ref() {
            if f.ver == snap.ver && f.kid == key.key.kid && t < f.iat + self.ttl_s / 2 && !coverable(f.watermark, snap.newest_key_iat) {
                return Ok(f.clone());
            }
        }
        if snap.built_at < t - 1 || coverable(snap.watermark, snap.newest_key_iat) {
            // Same lists, but the watermark must move on: take a fresh snapshot.
            snap = self.refresh(true).await?;
        }
        let claims = RevocationFeedClaims {
            iss: self.issuer.clone(),
            iat: t,
            exp: t + self.ttl_s,
            ver: snap.ver as u64,
            watermark: snap.watermark,
            revoked: snap.lists.clone(),
        };
        let jws = key.key.sign_jws(FEED_TYP, &claims);
        let etag = format!("\"{}\"", &crate::crypto::sha256_hex(jws.as_bytes())[..32]);
        let signed = SignedFeed { ver: snap.ver, iat: t, watermark: snap.watermark, kid: key.key.kid.clone(), jws, etag };
        *self.feed.lock().expect("feed lock") = Some(signed.clone());
        metrics::counter!("authgate_feed_signed_total").increment(1);
        Ok(signed)
    }
}

async fn build(db: &Db) -> anyhow::Result<Snapshot> {
    let mut tx = db::begin_write(db).await?;
    let t = db::feed_lock(&mut tx, false).await?;
    let ver: i64 = sqlx::query_scalar("SELECT ver FROM feed_state WHERE id = 1").fetch_one(&mut *tx).await?;
    let rows: Vec<(String, String, Option<i64>, i64)> =
        sqlx::query_as("SELECT kind, id, iat_before, exp FROM revocations WHERE exp > $1 ORDER BY created_at, id")
            .bind(t)
            .fetch_all(&mut *tx)
            .await?;
    let newest_key_iat: Option<i64> = sqlx::query_scalar("SELECT MAX(created_at) FROM api_keys").fetch_one(&mut *tx).await?;
    tx.commit().await?;

    let mut lists = RevokedLists::default();
    for (kind, id, iat_before, exp) in rows {
        match kind.as_str() {
            "sid" => lists.sid.push(RevokedEntry { id, exp }),
            "jti" => lists.jti.push(RevokedEntry { id, exp }),
            "api_key" => lists.api_key.push(RevokedEntry { id, exp }),
            "org" => lists.org.push(RevokedEntry { id, exp }),
            "sub" => lists.sub.push(RevokedSubject { id, iat_before: iat_before.unwrap_or(exp), exp }),
            other => tracing::warn!(kind = other, "unknown revocation kind ignored"),
        }
    }
    let watermark = t - 1;
    let list = RevocationList::from_claims(RevocationFeedClaims {
        iss: String::new(),
        iat: t,
        exp: i64::MAX,
        ver: ver as u64,
        watermark,
        revoked: lists.clone(),
    });
    Ok(Snapshot { ver, watermark, built_at: now(), newest_key_iat: newest_key_iat.unwrap_or(0), lists, list })
}

/// Records a revocation inside a transaction that already holds the feed lock.
pub async fn insert(conn: &mut sqlx::AnyConnection, kind: &str, id: &str, iat_before: Option<i64>, exp: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO revocations (kind, id, iat_before, exp, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, id) DO UPDATE SET iat_before = excluded.iat_before, \
           exp = CASE WHEN excluded.exp > revocations.exp THEN excluded.exp ELSE revocations.exp END",
    )
    .bind(kind)
    .bind(id)
    .bind(iat_before)
    .bind(exp)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops entries past their expiry (the credentials they name are dead anyway).
pub async fn prune(db: &Db) -> anyhow::Result<u64> {
    let mut tx = db::begin_write(db).await?;
    let t = db::feed_lock(&mut tx, false).await?;
    let n = sqlx::query("DELETE FROM revocations WHERE exp <= $1").bind(t).execute(&mut *tx).await?.rows_affected();
    if n > 0 {
        db::bump_feed(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n)
}
