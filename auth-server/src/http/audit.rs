//! Reading the audit log: an organisation's admins read their organisation's events, platform
//! admins every organisation's and the platform's own; a page as JSON, or everything that
//! matches as JSON lines (`format=jsonl`) for export.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Filter};
use crate::authority::Actor;
use crate::error::{ApiError, ApiResult, ErrorBody};

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Platform admins: one organisation's events (default: all). Others: their own only.
    pub org: Option<String>,
    /// An action (`login.failed`) or a family of them (`login.`).
    pub action: Option<String>,
    /// Events by this actor id or done to this target id (a user, key, client, session…).
    pub subject: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, inclusive.
    pub until: Option<i64>,
    /// Page size, 1 to 1000 (default 100); not used with `format=jsonl`.
    pub limit: Option<i64>,
    /// The `cursor` of the previous page's `link: <…>; rel="next"`.
    pub cursor: Option<String>,
    /// `json` (default: one page) or `jsonl` (every matching event, one per line).
    pub format: Option<String>,
}

/// What the query asks for, checked against what the actor may read.
fn filter(actor: &Actor, q: &AuditQuery) -> Result<Filter, ApiError> {
    let org = if actor.is_platform_admin() {
        q.org.clone()
    } else {
        match q.org.as_deref() {
            None => Some(actor.org.clone()),
            Some(o) if o == actor.org => Some(o.to_string()),
            Some(_) => return Err(ApiError::forbidden("insufficient_role", "only platform admins read other organisations' events")),
        }
    };
    if let Some(a) = q.action.as_deref() {
        if !audit::valid_action_filter(a) {
            return Err(ApiError::bad_request("invalid_action", "action: an action code (login.failed) or a family (login.)"));
        }
    }
    if q.subject.as_deref().is_some_and(|s| s.is_empty() || s.len() > 100)
        || q.org.as_deref().is_some_and(|s| s.is_empty() || s.len() > 100)
    {
        return Err(ApiError::bad_request("invalid_request", "org and subject: 1 to 100 characters"));
    }
    let before = match q.cursor.as_deref() {
        Some(c) if audit::valid_event_id(c) => Some(c.to_string()),
        Some(_) => return Err(ApiError::bad_request("invalid_cursor", "cursor: not one this server gave")),
        None => None,
    };
    Ok(Filter { org, action: q.action.clone(), subject: q.subject.clone(), since: q.since, until: q.until, before })
}

#[utoipa::path(get, path = "/v1/audit", tag = "admin", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>, description = "newest first; `link: <…>; rel=\"next\"` when there is more. \
                With `format=jsonl`: `application/x-ndjson`, every matching event, newest first",
                headers(("link" = String, description = "RFC 8288 link to the next page"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    let actor = Actor::load(&app, &caller).await?;
    actor.require_admin()?;
    let mut f = filter(&actor, &q)?;
    match q.format.as_deref() {
        None | Some("json") => {}
        Some("jsonl") => return Ok(export(app, f)),
        Some(_) => return Err(ApiError::bad_request("invalid_format", "format: json or jsonl")),
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit: 1 to 1000"));
    }
    let mut events = audit::read(&app.db, &f, limit + 1).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next = events.last().filter(|_| more).map(|e| e.id.clone());
    let mut resp = axum::Json(events).into_response();
    if let Some(cursor) = next {
        f.before = Some(cursor);
        let link = format!("<{}/v1/audit?{}>; rel=\"next\"", app.cfg.public_path(), next_query(&q, limit, f.before.as_deref()));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

fn next_query(q: &AuditQuery, limit: i64, cursor: Option<&str>) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("limit", limit.to_string())];
    for (k, v) in [("org", &q.org), ("action", &q.action), ("subject", &q.subject)] {
        if let Some(v) = v {
            pairs.push((k, v.clone()));
        }
    }
    for (k, v) in [("since", q.since), ("until", q.until)] {
        if let Some(v) = v {
            pairs.push((k, v.to_string()));
        }
    }
    if let Some(c) = cursor {
        pairs.push(("cursor", c.to_string()));
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// Every matching event as JSON lines, read a page at a time while the body streams (a large
/// log is never held in memory).
fn export(app: AppState, f: Filter) -> Response {
    const PAGE: i64 = 1000;
    let pages = futures_util::stream::unfold(Some(f), move |state| {
        let app = app.clone();
        async move {
            let mut f = state?;
            match audit::read(&app.db, &f, PAGE).await {
                Ok(events) => {
                    let mut chunk = Vec::with_capacity(events.len() * 256);
                    for e in &events {
                        serde_json::to_writer(&mut chunk, e).expect("events serialize");
                        chunk.push(b'\n');
                    }
                    let next = (events.len() as i64 == PAGE).then(|| {
                        f.before = events.last().map(|e| e.id.clone());
                        f
                    });
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                // The status is sent already: the body ends short, and the log says why.
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    let mut resp = Body::from_stream(pages).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}
