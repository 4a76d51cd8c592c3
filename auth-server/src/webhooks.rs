//! Webhooks: an organisation's audit events POSTed to the URLs its admins registered, signed as
//! Standard Webhooks sign (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC>`),
//! retried with exponential backoff, and delivered at least once across crashes and restarts:
//! each delivery is a row of an outbox written in the event's own transaction, which leaves the
//! queue only when the receiver answered 2xx (or `webhooks.max_attempts` ran out). Receivers
//! de-duplicate by `webhook-id`, the event's id.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sqlx::AnyConnection;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::config::WebhooksConfig;
use crate::crypto;
use crate::db;

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

/// May the server connect to `ip` without `webhooks.allow_private_addresses`? Only addresses
/// of the public internet: not loopback, private, shared (CGNAT), link-local (cloud metadata),
/// unspecified, multicast, broadcast, documentation or reserved ranges, in IPv4 or IPv6
/// (IPv4-mapped and NAT64 addresses are judged by the IPv4 address they carry).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b {
                let [.., a, b] = s;
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[..6] == [0; 6])
        }
    }
}

/// A webhook URL as registered: `https` (`http` only with `webhooks.allow_http`), a host, no
/// credentials or fragment, at most 2000 characters; and, unless
/// `webhooks.allow_private_addresses`, a host that is or resolves only to public addresses.
/// The error says what is wrong.
pub async fn check_url(cfg: &WebhooksConfig, raw: &str) -> Result<url::Url, &'static str> {
    if raw.len() > 2000 {
        return Err("url: at most 2000 characters");
    }
    let url = url::Url::parse(raw).map_err(|_| "url: not an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        _ => return Err("url: https only (webhooks.allow_http permits http)"),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("url: no credentials or fragment");
    }
    let host = url.host().ok_or("url: no host")?;
    if !cfg.allow_private_addresses {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => match tokio::net::lookup_host((name, port)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => return Err("url: the host does not resolve"),
            },
        };
        if addrs.is_empty() || !addrs.into_iter().all(is_public) {
            return Err("url: the host is or resolves to a non-public address");
        }
    }
    Ok(url)
}

/// Resolves names to their public addresses only: the check made again at each connection, so a
/// name that resolved to a public address at registration cannot be pointed inside later.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err("the webhook host resolves to no public address".into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn http_client(cfg: &WebhooksConfig) -> reqwest::Result<reqwest::Client> {
    // No proxy from the environment: a proxy would resolve the receiver's name itself, past
    // the public-address check.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(cfg.timeout_ms as u64))
        .user_agent("authgate-webhooks");
    if !cfg.allow_private_addresses {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
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
    let client = match http_client(&app.cfg.webhooks) {
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
    // Addresses written in the URL skip the resolver: judged here.
    if !app.cfg.webhooks.allow_private_addresses {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !is_public(ip)) {
            return Err((None, "the URL's address is not public".into()));
        }
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
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} passed");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} refused");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_before_registration() {
        let strict = WebhooksConfig::default();
        for bad in [
            "http://93.184.216.34/hook",
            "https://user:pw@93.184.216.34/hook",
            "https://93.184.216.34/hook#x",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest",
            "https://localhost/hook",
            "https://0x7f000001/hook",
            "https://2130706433/hook",
            "ftp://93.184.216.34/",
            "/relative",
        ] {
            assert!(check_url(&strict, bad).await.is_err(), "{bad} accepted");
        }
        assert!(check_url(&strict, "https://93.184.216.34/hook?x=1").await.is_ok());
        let open = WebhooksConfig { allow_http: true, allow_private_addresses: true, ..Default::default() };
        assert!(check_url(&open, "http://127.0.0.1:9/hook").await.is_ok());
        assert!(check_url(&open, "ftp://127.0.0.1/").await.is_err());
    }

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
