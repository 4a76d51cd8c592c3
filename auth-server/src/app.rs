//! The application state shared by every handler, and start-up.

use std::sync::Arc;

use auth_core::apikey::HmacKeyRing;
use auth_core::b64;
use auth_core::config::HmacKeyConfig;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::crypto::{MasterKey, SigAlg};
use crate::db::{self, Db};
use crate::ephemeral::Ephemeral;
use crate::keys::{KeyStore, VerifierTemplate};
use crate::mail::Mailer;
use crate::passwords::Hasher;
use crate::revocations::Revocations;

pub struct App {
    pub cfg: Config,
    pub db: Db,
    pub eph: Ephemeral,
    pub keys: KeyStore,
    pub revs: Revocations,
    pub mailer: Mailer,
    pub hasher: Hasher,
    pub master: Arc<MasterKey>,
    pub hmac: HmacKeyRing,
    /// `(kid, secret)` of the HMAC ring; the first one mints.
    pub hmac_keys: Vec<(String, Vec<u8>)>,
    pub metrics: Option<PrometheusHandle>,
    /// A sealed random TOTP secret: accounts without TOTP are checked against it, so a TOTP step
    /// costs the same for every account (`http/login.rs::check_totp`).
    pub dummy_totp: String,
    /// The WebAuthn relying party; `None` when passkeys are off (`passkeys.rs::relying_party`).
    pub passkeys: Option<webauthn_rs::Webauthn>,
}

/// The sealing context of [`App::dummy_totp`].
pub const DUMMY_TOTP_CONTEXT: &str = "totp:dummy";

pub type AppState = Arc<App>;

/// The master key: configured, or (SQLite only) generated once into `data_dir/master.key`.
pub fn master_key(cfg: &Config) -> anyhow::Result<[u8; 32]> {
    if let Some(k) = &cfg.master_key {
        let raw = b64::decode(k.trim().as_bytes()).ok_or_else(|| anyhow::anyhow!("master_key: not base64url"))?;
        return raw.try_into().map_err(|_| anyhow::anyhow!("master_key: must be 32 bytes"));
    }
    if cfg.is_postgres() {
        anyhow::bail!("master_key is required with PostgreSQL");
    }
    let path = cfg.data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let raw = b64::decode(text.trim().as_bytes()).ok_or_else(|| anyhow::anyhow!("{}: not base64url", path.display()))?;
        return raw.try_into().map_err(|_| anyhow::anyhow!("{}: must hold 32 bytes", path.display()));
    }
    crate::files::private_dir(&cfg.data_dir)?;
    let raw: [u8; 32] = crate::crypto::random_bytes(32).try_into().expect("32 bytes");
    crate::files::write_private(&path, b64::encode(&raw).as_bytes())?;
    tracing::warn!(path = %path.display(), "generated a master key; back it up with the database (see docs/auth-server.md)");
    Ok(raw)
}

impl App {
    /// Connects, migrates, loads keys; `metrics` is the installed recorder (server only).
    pub async fn build(cfg: Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<AppState> {
        let db = db::connect(&cfg).await?;
        db::migrate(&db, &cfg).await?;
        let master = Arc::new(MasterKey::new(&master_key(&cfg)?));
        let eph = match &cfg.redis_url {
            Some(url) => Ephemeral::redis(url, &cfg.redis_prefix).await?,
            None => Ephemeral::Db(db.clone()),
        };
        let alg = SigAlg::parse(&cfg.tokens.alg).expect("validated");
        let hmac_keys: Vec<(String, Vec<u8>)> = if cfg.api_keys.hmac_keys.is_empty() {
            vec![("mk1".to_string(), master.api_key_hmac.to_vec())]
        } else {
            cfg.api_keys.hmac_keys.iter().map(|k| (k.kid.clone(), b64::decode(k.secret.as_bytes()).expect("validated"))).collect()
        };
        let template = VerifierTemplate {
            issuer: cfg.public_url.clone(),
            audience: cfg.tokens.audience.clone(),
            hmac_keys: hmac_keys.iter().map(|(kid, secret)| HmacKeyConfig { kid: kid.clone(), secret: b64::encode(secret) }).collect(),
        };
        let id_token_algs = cfg.oidc.id_token_algs.iter().filter_map(|a| SigAlg::parse(a)).collect();
        let keys = KeyStore::open(db.clone(), master.clone(), alg, id_token_algs, template).await?;
        let revs = Revocations::open(db.clone(), cfg.public_url.clone(), cfg.feed.ttl_s, cfg.feed.recheck_ms).await?;
        let look = crate::mail::Look { product: cfg.pages.product_name.clone(), accent: cfg.pages.accent_color.clone() };
        let mailer = Mailer::start(cfg.email.smtp_url.as_deref(), cfg.outbox_dir(), &cfg.email.from, look)?;
        let hasher = Hasher::new(&cfg.passwords)?;
        let hmac = HmacKeyRing::new(hmac_keys.iter().map(|(k, s)| (k.as_str(), s.as_slice())));
        let dummy_totp = master.seal(&crate::crypto::random_bytes(20), DUMMY_TOTP_CONTEXT);
        let passkeys = crate::passkeys::relying_party(&cfg)?;
        Ok(Arc::new(App { cfg, db, eph, keys, revs, mailer, hasher, master, hmac, hmac_keys, metrics, dummy_totp, passkeys }))
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.public_url
    }

    pub fn hmac_current(&self) -> &str {
        &self.hmac_keys[0].0
    }

    /// Background upkeep: key reloads, expired-row sweeps (ephemeral state, revocation entries,
    /// refresh tokens, API-key requests, codes, audit events, webhook deliveries, known devices,
    /// invitations).
    pub fn spawn_upkeep(self: &Arc<Self>) {
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(app.cfg.tokens.key_reload_s));
            loop {
                tick.tick().await;
                if let Err(e) = app.keys.reload().await {
                    tracing::error!(error = %e, "signing key reload failed");
                }
            }
        });
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = app.eph.sweep().await {
                    tracing::warn!(error = %e, "ephemeral sweep failed");
                }
                match crate::revocations::prune(&app.db).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "expired revocation entries dropped"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "revocation prune failed"),
                }
                let cutoff = db::now() - app.cfg.tokens.refresh_ttl_s.max(app.cfg.tokens.session_ttl_s);
                for sql in ["DELETE FROM refresh_tokens WHERE expires_at < $1", "DELETE FROM spent_refresh_tokens WHERE expires_at < $1"] {
                    let _gate = db::write_gate().await;
                    if let Err(e) = sqlx::query(sql).bind(cutoff).execute(&app.db).await {
                        tracing::warn!(error = %e, "refresh token sweep failed");
                    }
                }
                match crate::audit::prune(&app.db, app.cfg.audit.retention_days).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "audit events past their retention dropped"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit prune failed"),
                }
                if let Err(e) = crate::webhooks::prune(&app.db).await {
                    tracing::warn!(error = %e, "webhook delivery prune failed");
                }
                // Devices unseen for a year are new again; finished or expired invitations go
                // after 30 days (the organisation page lists them until then).
                let t = db::now();
                for (sql, before, what) in [
                    ("DELETE FROM known_devices WHERE last_seen < $1", t - 365 * 86400, "known device"),
                    (
                        "DELETE FROM invitations WHERE (accepted_at IS NOT NULL AND accepted_at < $1) OR (cancelled_at IS NOT NULL AND cancelled_at < $1) OR expires_at < $1",
                        t - 30 * 86400,
                        "invitation",
                    ),
                ] {
                    let _gate = db::write_gate().await;
                    if let Err(e) = sqlx::query(sql).bind(before).execute(&app.db).await {
                        tracing::warn!(error = %e, kind = what, "sweep failed");
                    }
                }
                let _gate = db::write_gate().await;
                if let Err(e) = sqlx::query("DELETE FROM api_key_requests WHERE expires_at < $1").bind(db::now()).execute(&app.db).await {
                    tracing::warn!(error = %e, "API-key request sweep failed");
                }
                // Spent codes stay a day, so a late replay still revokes what the code issued.
                if let Err(e) = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1").bind(db::now() - 86400).execute(&app.db).await
                {
                    tracing::warn!(error = %e, "authorization code sweep failed");
                }
            }
        });
    }
}
