//! The database: one `sqlx::AnyPool` over SQLite or PostgreSQL, with the same portable SQL for
//! both (numbered `$n` parameters, BIGINT unix times, TEXT for everything else). Every value
//! goes in as a bound parameter; no SQL is ever built from input.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::Config;

pub type Db = AnyPool;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Opens the pool (creating the SQLite file and its directory if needed).
pub async fn connect(cfg: &Config) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let url = cfg.database_url();
    let sqlite = url.starts_with("sqlite:");
    if sqlite {
        if let Some(path) = sqlite_path(&url) {
            if let Some(parent) = std::path::Path::new(&path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
        }
    }
    let opts = AnyConnectOptions::from_str(&url)
        .map_err(|e| anyhow::anyhow!("database_url: {e}"))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { cfg.database_max_connections.clamp(1, 8) } else { cfg.database_max_connections.max(1) })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    // WAL: readers never block the writer; NORMAL is durable across process
                    // crashes (a SIGKILL loses nothing committed), and busy_timeout queues writers.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    Ok(pool)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(DEFAULT_ORG)
        .bind("default")
        .bind(now())
        .execute(db)
        .await?;
    Ok(())
}

/// The organisation sign-ups without `org_name` join.
pub const DEFAULT_ORG: &str = "org_default";

/// Takes the feed lock: the first statement of every transaction that changes what the
/// revocation feed shows (PostgreSQL: the feed_state row lock; SQLite: the write lock). It
/// also bumps the version when `bump`.
pub async fn feed_lock(tx: &mut sqlx::Transaction<'_, sqlx::Any>, bump: bool) -> Result<(), sqlx::Error> {
    let sql = if bump {
        "UPDATE feed_state SET ver = ver + 1, touched_at = $1 WHERE id = 1"
    } else {
        "UPDATE feed_state SET touched_at = $1 WHERE id = 1"
    };
    sqlx::query(sql).bind(now()).execute(&mut **tx).await?;
    Ok(())
}

pub async fn feed_version(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT ver FROM feed_state WHERE id = 1").fetch_one(db).await
}
