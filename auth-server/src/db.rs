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
            let path = std::path::Path::new(&path);
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    crate::files::private_dir(parent)?;
                }
            }
            crate::files::ensure_private_file(path).map_err(|e| anyhow::anyhow!("database file {}: {e}", path.display()))?;
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
    if sqlite {
        let _ = SQLITE_WRITE_GATE.set(tokio::sync::Mutex::new(()));
    }
    Ok(pool)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Applies the migrations; makes sure the default and the operator organisations exist; and
/// takes platform roles away from users outside the operator organisation (docs/authority.md),
/// which earlier versions let tenant admins grant.
pub async fn migrate(db: &Db, cfg: &Config) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    let operator = cfg.platform.operator_org.as_str();
    for (id, name) in [(DEFAULT_ORG, "default"), (operator, "operator")] {
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(name)
            .bind(now())
            .execute(db)
            .await?;
    }
    let [a, b, c] = crate::authority::PLATFORM_ROLES;
    let stripped = sqlx::query("DELETE FROM member_roles WHERE role IN ($1, $2, $3) AND org_id <> $4")
        .bind(a)
        .bind(b)
        .bind(c)
        .bind(operator)
        .execute(db)
        .await?
        .rows_affected();
    if stripped > 0 {
        tracing::warn!(
            roles_removed = stripped,
            operator_org = operator,
            "platform roles held outside the operator organisation were removed"
        );
    }
    Ok(())
}

/// The organisation sign-ups without `org_name` join.
pub const DEFAULT_ORG: &str = "org_default";

/// SQLite has one writer at a time. Writers of this process queue on this async mutex instead
/// of sleeping in SQLite's busy handler (which backs off up to 100 ms); other processes on the
/// same file still meet the busy timeout. `None` on PostgreSQL (row locks suffice).
static SQLITE_WRITE_GATE: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();

/// A write transaction (holding the SQLite write gate, if any). Derefs to the connection, so
/// statements run with `.execute(&mut *tx)`.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _gate: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

pub async fn begin_write(db: &Db) -> Result<WriteTx, sqlx::Error> {
    let gate = match SQLITE_WRITE_GATE.get() {
        Some(m) => Some(m.lock().await),
        None => None,
    };
    // SQLite: the write lock is taken at BEGIN (IMMEDIATE, where the busy timeout applies). A
    // deferred transaction that reads before it writes would instead fail with
    // SQLITE_BUSY_SNAPSHOT (517) whenever another process — the CLI, another replica — wrote in
    // between, and no timeout helps with that.
    let tx = if gate.is_some() { db.begin_with("BEGIN IMMEDIATE").await? } else { db.begin().await? };
    Ok(WriteTx { tx, _gate: gate })
}

/// Holds the SQLite write gate for a single autocommit write (ephemeral counters).
pub async fn write_gate() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    match SQLITE_WRITE_GATE.get() {
        Some(m) => Some(m.lock().await),
        None => None,
    }
}

/// Takes the feed lock: the first statement of every transaction that changes what the
/// revocation feed shows (PostgreSQL: the feed_state row lock; SQLite: the write lock). It
/// also bumps the version when `bump`. Returns the database's clock, read once the lock is held
/// ([`db_now`]): the time every cut-off, watermark and API-key `iat` of the transaction uses.
pub async fn feed_lock(conn: &mut sqlx::AnyConnection, bump: bool) -> Result<i64, sqlx::Error> {
    let sql = if bump {
        "UPDATE feed_state SET ver = ver + 1, touched_at = $1 WHERE id = 1"
    } else {
        "UPDATE feed_state SET touched_at = $1 WHERE id = 1"
    };
    sqlx::query(sql).bind(now()).execute(&mut *conn).await?;
    db_now(conn).await
}

/// Bumps the feed version inside a transaction that already holds the feed lock.
pub async fn bump_feed(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE feed_state SET ver = ver + 1 WHERE id = 1").execute(conn).await?;
    Ok(())
}

/// Unix seconds by the database's clock: one clock for every replica.
///
/// Replicas' clocks differ; the database's is the only one they share. Times that must be
/// compared across replicas — a subject's revocation cut-off against the `iat` of tokens other
/// replicas mint, the feed's watermark against the `iat` of API keys — are read from it, inside
/// the feed-locked transaction (PostgreSQL: `clock_timestamp()`, the time of the statement, not
/// of the transaction's start). Tokens keep their minting replica's clock, which
/// `tokens.max_clock_skew_s` bounds (see `revocation_cutoff`).
pub async fn db_now(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    let sql = if conn.backend_name() == "PostgreSQL" {
        "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)"
    } else {
        "SELECT CAST(strftime('%s', 'now') AS INTEGER)"
    };
    sqlx::query_scalar(sql).fetch_one(conn).await
}

pub async fn feed_version(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT ver FROM feed_state WHERE id = 1").fetch_one(db).await
}
