//! An organisation's webhooks, managed by its admins: register a URL (the signing secret is in
//! the answer only), list them with their queues, see recent deliveries, delete one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::Json;
use crate::app::{App, AppState};
use crate::audit::{self, Action, Event, Who};
use crate::authority::Actor;
use crate::crypto;
use crate::db::{self, now};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::webhooks;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: `https://` (see `webhooks.allow_http`, `allow_private_addresses`).
    pub url: String,
    /// Actions (`login.failed`) or families (`login.`) to receive; empty or absent: all.
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub actions: Vec<String>,
    pub created_at: i64,
    /// Deliveries waiting (first attempt or a retry).
    pub pending: i64,
    /// Deliveries given up after `webhooks.max_attempts` (kept a week).
    pub failed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub info: WebhookInfo,
    /// `whsec_` + base64 of 32 bytes: verify `webhook-signature` with it. Shown only here.
    pub secret: String,
}

fn disabled() -> ApiError {
    ApiError::not_found("webhooks_disabled", "webhooks are turned off on this server")
}

async fn admin(app: &App, caller: &Caller) -> Result<Actor, ApiError> {
    let actor = Actor::load(app, caller).await?;
    actor.require_admin()?;
    if !app.cfg.webhooks.enabled {
        return Err(disabled());
    }
    Ok(actor)
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "admin", request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, body = CreatedWebhook, description = "registered; the secret is shown only here"),
              (status = 400, body = ErrorBody, description = "invalid_webhook_url, invalid_action"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "webhooks_disabled"),
              (status = 409, body = ErrorBody, description = "too_many_webhooks")))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateWebhook>,
) -> ApiResult<(StatusCode, axum::Json<CreatedWebhook>)> {
    let actor = admin(&app, &caller).await?;
    let policy = crate::egress::Egress {
        allow_http: app.cfg.webhooks.allow_http,
        allow_private_addresses: app.cfg.webhooks.allow_private_addresses,
    };
    let url = crate::egress::check_url(policy, req.url.trim()).await.map_err(|m| ApiError::bad_request("invalid_webhook_url", m))?;
    let mut actions = req.actions;
    actions.sort();
    actions.dedup();
    if actions.len() > 50 || !actions.iter().all(|a| audit::valid_action_filter(a)) {
        return Err(ApiError::bad_request("invalid_action", "actions: at most 50 action codes (login.failed) or families (login.)"));
    }
    let id = crypto::new_id("whk");
    let (raw, shown) = webhooks::new_secret();
    let org = actor.org.as_str();
    let t = now();
    let mut tx = db::begin_write(&app.db).await?;
    // The organisation's row lock makes the cap exact under parallel requests (SQLite: the write lock).
    sqlx::query("UPDATE orgs SET name = name WHERE id = $1").bind(org).execute(&mut *tx).await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE org_id = $1").bind(org).fetch_one(&mut *tx).await?;
    if count >= app.cfg.webhooks.max_per_org {
        return Err(ApiError::conflict("too_many_webhooks", "the organisation has as many webhooks as webhooks.max_per_org allows"));
    }
    sqlx::query("INSERT INTO webhooks (id, org_id, url, secret, actions, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&id)
        .bind(org)
        .bind(url.as_str())
        .bind(app.master.seal(&raw, &webhooks::secret_context(&id)))
        .bind(serde_json::to_string(&actions).expect("serializes"))
        .bind(&actor.user.id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    // The host only: a query string may carry the receiver's own secret.
    Event::new(Action::WebhookCreated, Some(org), Who::User(&actor.user.id))
        .target("webhook", &id)
        .data(serde_json::json!({ "host": url.host_str(), "actions": actions }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    let info = WebhookInfo { id, url: url.into(), actions, created_at: t, pending: 0, failed: 0 };
    Ok((StatusCode::CREATED, axum::Json(CreatedWebhook { info, secret: shown })))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<WebhookInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<WebhookInfo>>> {
    let actor = admin(&app, &caller).await?;
    type Row = (String, String, String, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT w.id, w.url, w.actions, w.created_at, \
           (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.delivered_at IS NULL AND d.failed_at IS NULL), \
           (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.failed_at IS NOT NULL) \
         FROM webhooks w WHERE w.org_id = $1 ORDER BY w.created_at, w.id",
    )
    .bind(&actor.org)
    .fetch_all(&app.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, url, actions, created_at, pending, failed)| WebhookInfo {
                id,
                url,
                actions: serde_json::from_str(&actions).unwrap_or_default(),
                created_at,
                pending,
                failed,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    pub attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1 to 200 (default 50), newest first.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "admin", security(("bearer" = [])), params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<axum::Json<Vec<Delivery>>> {
    let actor = admin(&app, &caller).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit: 1 to 200"));
    }
    owned(&app, &id, &actor.org).await?;
    type Row = (String, String, i64, Option<i64>, Option<String>, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, event_id, attempts, last_status, last_error, created_at, delivered_at, failed_at FROM webhook_deliveries \
         WHERE webhook_id = $1 ORDER BY created_at DESC, event_id DESC LIMIT $2",
    )
    .bind(&id)
    .bind(limit)
    .fetch_all(&app.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, event_id, attempts, last_status, last_error, created_at, delivered_at, failed_at)| Delivery {
                status: match (delivered_at, failed_at) {
                    (Some(_), _) => "delivered",
                    (_, Some(_)) => "failed",
                    _ => "pending",
                },
                id,
                event_id,
                attempts,
                last_status,
                last_error,
                created_at,
                delivered_at,
            })
            .collect(),
    ))
}

/// 404 unless webhook `id` belongs to `org` (another organisation's looks like none).
async fn owned(app: &App, id: &str, org: &str) -> Result<(), ApiError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM webhooks WHERE id = $1 AND org_id = $2").bind(id).bind(org).fetch_optional(&app.db).await?;
    found.map(|_| ()).ok_or_else(|| ApiError::not_found("webhook_not_found", "no such webhook in your organisation"))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "deleted with its queue: nothing more is sent"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let actor = admin(&app, &caller).await?;
    let org = actor.org.as_str();
    let mut tx = db::begin_write(&app.db).await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE id = $1 AND org_id = $2)")
        .bind(&id)
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let n = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND org_id = $2").bind(&id).bind(org).execute(&mut *tx).await?.rows_affected();
    if n == 0 {
        return Err(ApiError::not_found("webhook_not_found", "no such webhook in your organisation"));
    }
    Event::new(Action::WebhookDeleted, Some(org), Who::User(&actor.user.id)).target("webhook", &id).write(&mut tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
