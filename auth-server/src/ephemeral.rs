//! Ephemeral state: login sessions in progress, emailed codes, reset tokens, rate-limit and
//! lockout counters. In Redis when `REDIS_URL` is set (shared by every replica), otherwise in
//! the database's `kv` table. Every entry has a TTL; nothing here must survive a Redis flush.

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::db::{now, Db};

#[derive(Clone)]
pub enum Ephemeral {
    Db(Db),
    Redis { conn: ConnectionManager, prefix: String },
}

const INCR_SCRIPT: &str = r#"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local t = redis.call('TTL', KEYS[1])
if t < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); t = tonumber(ARGV[1]) end
return {c, t}
"#;

impl Ephemeral {
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Ephemeral> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
        let conn = ConnectionManager::new(client).await.map_err(|e| anyhow::anyhow!("cannot connect to Redis: {e}"))?;
        Ok(Ephemeral::Redis { conn, prefix: prefix.to_string() })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Ephemeral::Db(_) => "database",
            Ephemeral::Redis { .. } => "redis",
        }
    }

    /// Stores `value` under `key` for `ttl_s` seconds (overwrites).
    pub async fn put(&self, key: &str, value: &str, ttl_s: i64) -> anyhow::Result<()> {
        let ttl_s = ttl_s.max(1);
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                sqlx::query(
                    "INSERT INTO kv (k, v, n, expires_at) VALUES ($1, $2, 0, $3) \
                     ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = 0, expires_at = excluded.expires_at",
                )
                .bind(key)
                .bind(value)
                .bind(now() + ttl_s)
                .execute(db)
                .await?;
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let _: () = c.set_ex(format!("{prefix}{key}"), value, ttl_s as u64).await?;
            }
        }
        Ok(())
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Ephemeral::Db(db) => Ok(sqlx::query_scalar::<_, Option<String>>("SELECT v FROM kv WHERE k = $1 AND expires_at > $2")
                .bind(key)
                .bind(now())
                .fetch_optional(db)
                .await?
                .flatten()),
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                Ok(c.get(format!("{prefix}{key}")).await?)
            }
        }
    }

    /// Atomically reads and deletes: of concurrent callers, exactly one gets the value.
    pub async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                let row: Option<(Option<String>, i64)> = sqlx::query_as("DELETE FROM kv WHERE k = $1 RETURNING v, expires_at")
                    .bind(key)
                    .fetch_optional(db)
                    .await?;
                Ok(row.and_then(|(v, exp)| if exp > now() { v } else { None }))
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                Ok(redis::cmd("GETDEL").arg(format!("{prefix}{key}")).query_async(&mut c).await?)
            }
        }
    }

    pub async fn del(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                sqlx::query("DELETE FROM kv WHERE k = $1").bind(key).execute(db).await?;
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let _: () = c.del(format!("{prefix}{key}")).await?;
            }
        }
        Ok(())
    }

    /// Fixed-window counter: increments `key` (created with `window_s` to live) and returns
    /// `(count, seconds until the window ends)`.
    pub async fn incr(&self, key: &str, window_s: i64) -> anyhow::Result<(i64, i64)> {
        let window_s = window_s.max(1);
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                let t = now();
                let (n, exp): (i64, i64) = sqlx::query_as(
                    "INSERT INTO kv (k, v, n, expires_at) VALUES ($1, NULL, 1, $2) \
                     ON CONFLICT (k) DO UPDATE SET \
                       n = CASE WHEN kv.expires_at <= $3 THEN 1 ELSE kv.n + 1 END, \
                       expires_at = CASE WHEN kv.expires_at <= $3 THEN excluded.expires_at ELSE kv.expires_at END \
                     RETURNING n, expires_at",
                )
                .bind(key)
                .bind(t + window_s)
                .bind(t)
                .fetch_one(db)
                .await?;
                Ok((n, (exp - t).max(1)))
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let (n, ttl): (i64, i64) =
                    redis::Script::new(INCR_SCRIPT).key(format!("{prefix}{key}")).arg(window_s).invoke_async(&mut c).await?;
                Ok((n, ttl.max(1)))
            }
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Ephemeral::Db(db) => {
                sqlx::query("SELECT 1").execute(db).await?;
            }
            Ephemeral::Redis { conn, .. } => {
                let mut c = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut c).await?;
            }
        }
        Ok(())
    }

    /// Deletes expired rows (database backend; Redis expires keys itself).
    pub async fn sweep(&self) -> anyhow::Result<u64> {
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                Ok(sqlx::query("DELETE FROM kv WHERE expires_at <= $1").bind(now()).execute(db).await?.rows_affected())
            }
            Ephemeral::Redis { .. } => Ok(0),
        }
    }
}
