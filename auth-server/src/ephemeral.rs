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

/// INCR with a TTL set on creation; the key's life becomes ARGV[3] seconds when the count
/// reaches ARGV[2].
const INCR_HOLD_SCRIPT: &str = r#"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if c == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
local t = redis.call('TTL', KEYS[1])
if t < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); t = tonumber(ARGV[1]) end
return {c, t}
"#;

/// Decrements a counter that exists (never below zero, never creating it).
const DECR_SCRIPT: &str = r#"
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c > 0 then redis.call('DECR', KEYS[1]) end
return 0
"#;

/// The count of a counter and its seconds to live (absent: 0, 0).
const COUNT_SCRIPT: &str = r#"
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = redis.call('TTL', KEYS[1])
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
                let row: Option<(Option<String>, i64)> =
                    sqlx::query_as("DELETE FROM kv WHERE k = $1 RETURNING v, expires_at").bind(key).fetch_optional(db).await?;
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
        self.incr_hold(key, window_s, i64::MAX, window_s).await
    }

    /// [`Ephemeral::incr`], except that the increment which brings the count to `hold_at` makes
    /// the counter live `hold_s` seconds from now (a lockout: the count stays at or above
    /// `hold_at` for that long). One atomic step on every backend, so of parallel callers each
    /// sees its own count.
    pub async fn incr_hold(&self, key: &str, window_s: i64, hold_at: i64, hold_s: i64) -> anyhow::Result<(i64, i64)> {
        let window_s = window_s.max(1);
        let hold_s = hold_s.max(1);
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                let t = now();
                let first_exp = if hold_at == 1 { t + hold_s } else { t + window_s };
                let (n, exp): (i64, i64) = sqlx::query_as(
                    "INSERT INTO kv (k, v, n, expires_at) VALUES ($1, NULL, 1, $2) \
                     ON CONFLICT (k) DO UPDATE SET \
                       n = CASE WHEN kv.expires_at <= $3 THEN 1 ELSE kv.n + 1 END, \
                       expires_at = CASE WHEN kv.expires_at <= $3 THEN excluded.expires_at \
                                         WHEN kv.n + 1 = $4 THEN $5 ELSE kv.expires_at END \
                     RETURNING n, expires_at",
                )
                .bind(key)
                .bind(first_exp)
                .bind(t)
                .bind(hold_at)
                .bind(t + hold_s)
                .fetch_one(db)
                .await?;
                Ok((n, (exp - t).max(1)))
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let (n, ttl): (i64, i64) = redis::Script::new(INCR_HOLD_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .arg(window_s)
                    .arg(hold_at)
                    .arg(hold_s)
                    .invoke_async(&mut c)
                    .await?;
                Ok((n, ttl.max(1)))
            }
        }
    }

    /// Takes one back from a live counter (never below zero; an absent counter stays absent).
    pub async fn decr(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Ephemeral::Db(db) => {
                let _gate = crate::db::write_gate().await;
                sqlx::query("UPDATE kv SET n = n - 1 WHERE k = $1 AND n > 0 AND expires_at > $2").bind(key).bind(now()).execute(db).await?;
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let _: i64 = redis::Script::new(DECR_SCRIPT).key(format!("{prefix}{key}")).invoke_async(&mut c).await?;
            }
        }
        Ok(())
    }

    /// A counter's `(count, seconds to live)`; `(0, 0)` when it does not exist.
    pub async fn count(&self, key: &str) -> anyhow::Result<(i64, i64)> {
        match self {
            Ephemeral::Db(db) => {
                let t = now();
                let row: Option<(i64, i64)> = sqlx::query_as("SELECT n, expires_at FROM kv WHERE k = $1 AND expires_at > $2")
                    .bind(key)
                    .bind(t)
                    .fetch_optional(db)
                    .await?;
                Ok(row.map_or((0, 0), |(n, exp)| (n, (exp - t).max(1))))
            }
            Ephemeral::Redis { conn, prefix } => {
                let mut c = conn.clone();
                let (n, ttl): (i64, i64) = redis::Script::new(COUNT_SCRIPT).key(format!("{prefix}{key}")).invoke_async(&mut c).await?;
                Ok(if n > 0 { (n, ttl.max(1)) } else { (0, 0) })
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
