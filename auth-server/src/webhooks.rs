//! Webhooks: an organisation's audit events POSTed to the URLs its admins registered, signed as
//! Standard Webhooks sign (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC>`),
//! retried with exponential backoff, and delivered at least once across crashes and restarts:
//! each delivery is a row of an outbox written in the event's own transaction, which leaves the
//! queue only when the receiver answered 2xx (or `webhooks.max_attempts` ran out). Receivers
//! de-duplicate by `webhook-id`, the event's id.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sqlx::AnyConnection;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::config::WebhooksConfig;
use crate::crypto;
use crate::db;
use crate::egress::{self, Egress};

/// The prefix of a webhook's signing secret as shown to its creator.
pub const SECRET_PREFIX: &str = "whsec_";

/// The sealing context of a webhook's secret.
pub fn secret_context(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}")
}

/// Does a webhook subscribed to `filters` (actions or families; none: all) want `action`?
pub fn wants(filters: &[String], action: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f == action || (f.ends_with('.') && action.starts_with(f.as_str())))
}

/// Queues `event` for every webhook of its organisation that wants it, inside the transaction
/// that records the event. Platform events (no organisation) go to no webhook.
pub async fn enqueue(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), sqlx::Error> {
    let Some(org) = event.org_id.as_deref() else { return Ok(()) };
    let hooks: Vec<(String, String)> =
        sqlx::query_as("SELECT id, actions FROM webhooks WHERE org_id = $1").bind(org).fetch_all(&mut *conn).await?;
    let mut payload = None;
    for (hook, actions) in hooks {
        let actions: Vec<String> = serde_json::from_str(&actions).unwrap_or_default();
        if !wants(&actions, &event.action) {
            continue;
        }
        let body = payload.get_or_insert_with(|| serde_json::to_string(event).expect("events serialize"));
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, payload, attempts, next_attempt_ms, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(crypto::new_id("whd"))
        .bind(&hook)
        .bind(&event.id)
        .bind(body.as_str())
        .bind(now_ms())
        .bind(event.at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The `webhook-signature` value: `v1,` + base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}").
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mac = crypto::hmac_sha256(secret, format!("{msg_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
}

/// A new signing secret: 32 random bytes, and how its creator sees it (`whsec_` + base64).
pub fn new_secret() -> (Vec<u8>, String) {
    let raw = crypto::random_bytes(32);
    let shown = format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(&raw));
    (raw, shown)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The delay before attempt `attempts + 1`: `retry_base_ms` doubled per attempt made, capped
/// at `retry_max_ms`, less up to a fifth at random (receivers recovering are not hit at once).
fn backoff_ms(cfg: &WebhooksConfig, attempts: i64) -> i64 {
    let full = cfg.retry_base_ms.saturating_mul(1i64 << (attempts - 1).clamp(0, 30)).min(cfg.retry_max_ms);
    let jitter = u64::from_le_bytes(crypto::random_bytes(8).try_into().expect("8 bytes")) % (full as u64 / 5 + 1);
    full - jitter as i64
}

/// Each replica's delivery loop (when `webhooks.enabled`).
pub fn spawn(app: Arc<App>) {
    if !app.cfg.webhooks.enabled {
        return;
    }
    let policy = Egress { allow_http: app.cfg.webhooks.allow_http, allow_private_addresses: app.cfg.webhooks.allow_private_addresses };
    let client = match egress::client(policy, Duration::from_millis(app.cfg.webhooks.timeout_ms as u64), "authgate-webhooks") {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "webhook client not built: no deliveries"),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(app.cfg.webhooks.poll_ms as u64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = deliver_due(&app, &client).await {
                tracing::warn!(error = %e, "webhook deliveries not read");
            }
        }
    });
}

struct Due {
    id: String,
    event_id: String,
    payload: String,
    webhook_id: String,
    attempts: i64,
    url: String,
    secret: String,
}

/// Claims the due deliveries and sends them, concurrently. A claim moves `next_attempt_ms` past
/// the send's timeout (a lease): another replica, or this one restarted after a crash, takes a
/// delivery back only once its lease ran out — hence at least once, and rarely twice.
async fn deliver_due(app: &Arc<App>, client: &reqwest::Client) -> Result<(), sqlx::Error> {
    let t = now_ms();
    type Row = (String, String, String, String, i64, i64, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT d.id, d.event_id, d.payload, d.webhook_id, d.attempts, d.next_attempt_ms, w.url, w.secret \
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_attempt_ms <= $1 ORDER BY d.next_attempt_ms LIMIT 32",
    )
    .bind(t)
    .fetch_all(&app.db)
    .await?;
    let lease = t + 2 * app.cfg.webhooks.timeout_ms;
    let mut sends = tokio::task::JoinSet::new();
    for (id, event_id, payload, webhook_id, attempts, next, url, secret) in rows {
        let claimed = {
            let _gate = db::write_gate().await;
            sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_ms = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND next_attempt_ms = $3 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(lease)
            .bind(&id)
            .bind(next)
            .execute(&app.db)
            .await?
            .rows_affected()
                == 1
        };
        if claimed {
            let due = Due { id, event_id, payload, webhook_id, attempts: attempts + 1, url, secret };
            sends.spawn(send(app.clone(), client.clone(), due));
        }
    }
    while let Some(done) = sends.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "webhook delivery task failed");
        }
    }
    Ok(())
}

/// One attempt, and its outcome recorded.
async fn send(app: Arc<App>, client: reqwest::Client, due: Due) {
    let outcome = attempt(&app, &client, &due).await;
    let cfg = &app.cfg.webhooks;
    let (status, error) = match &outcome {
        Ok(s) => (Some(*s as i64), None),
        Err((s, e)) => (s.map(|s| s as i64), Some(e.chars().take(300).collect::<String>())),
    };
    let delivered = outcome.is_ok();
    let give_up = !delivered && due.attempts >= cfg.max_attempts;
    metrics::counter!("authgate_webhook_attempts_total", "result" => if delivered { "delivered" } else if give_up { "failed" } else { "retry" })
        .increment(1);
    if !delivered {
        tracing::info!(delivery = %due.id, webhook = %due.webhook_id, attempts = due.attempts, status = ?status, error = error.as_deref().unwrap_or(""), "webhook delivery failed");
    }
    let t = db::now();
    let sql = if delivered {
        "UPDATE webhook_deliveries SET delivered_at = $1, last_status = $2, last_error = $3 WHERE id = $4"
    } else if give_up {
        "UPDATE webhook_deliveries SET failed_at = $1, last_status = $2, last_error = $3 WHERE id = $4"
    } else {
        "UPDATE webhook_deliveries SET next_attempt_ms = $1, last_status = $2, last_error = $3 WHERE id = $4"
    };
    let first = if delivered || give_up { t } else { now_ms() + backoff_ms(cfg, due.attempts) };
    let _gate = db::write_gate().await;
    if let Err(e) = sqlx::query(sql).bind(first).bind(status).bind(error).bind(&due.id).execute(&app.db).await {
        // The lease runs out and the delivery is tried again: at least once still holds.
        tracing::warn!(error = %e, delivery = %due.id, "webhook delivery outcome not recorded");
    }
}

/// POSTs the event; `Ok(status)` for a 2xx, else the status (if any) and what went wrong.
async fn attempt(app: &App, client: &reqwest::Client, due: &Due) -> Result<u16, (Option<u16>, String)> {
    let url = url::Url::parse(&due.url).map_err(|_| (None, "stored URL does not parse".to_string()))?;
    if !egress::literal_allowed(app.cfg.webhooks.allow_private_addresses, &url) {
        return Err((None, "the URL's address is not public".into()));
    }
    let secret = app.master.open(&due.secret, &secret_context(&due.webhook_id)).map_err(|e| (None, format!("secret: {e}")))?;
    let ts = db::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &due.event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&secret, &due.event_id, ts, &due.payload))
        .body(due.payload.clone())
        .send()
        .await
        .map_err(|e| (None, error_chain(&e)))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(status)
    } else {
        Err((Some(status), format!("the receiver answered {status}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Drops deliveries finished (delivered or given up) more than a week ago.
pub async fn prune(db: &db::Db) -> Result<u64, sqlx::Error> {
    let _gate = db::write_gate().await;
    let cutoff = db::now() - 7 * 86400;
    let sql = "DELETE FROM webhook_deliveries WHERE (delivered_at IS NOT NULL AND delivered_at < $1) OR (failed_at IS NOT NULL AND failed_at < $1)";
    Ok(sqlx::query(sql).bind(cutoff).execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification (its test vector).
        let secret = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn filters_and_backoff() {
        assert!(wants(&[], "login.failed"));
        assert!(wants(&["login.".into()], "login.failed") && !wants(&["login.".into()], "user.created"));
        assert!(wants(&["user.created".into()], "user.created") && !wants(&["user.created".into()], "user.created_x"));
        let cfg = WebhooksConfig { retry_base_ms: 1000, retry_max_ms: 5000, ..Default::default() };
        for (n, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (40, 5000)] {
            let d = backoff_ms(&cfg, n);
            assert!(d <= full && d >= full - full / 5, "attempt {n}: {d}");
        }
    }
}
