//! The HTTP API: router, middleware (request log, metrics, error headers, rate limits) and the
//! extractors every handler shares.

pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod connections;
pub mod email;
pub mod identities;
pub mod invitations;
pub mod login;
pub mod me;
pub mod oauth;
pub mod ops;
pub mod org_auth;
pub mod orgs;
pub mod passkeys;
pub mod sessions;
pub mod signup;
pub mod users;
pub mod webhooks;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::{App, AppState};
use crate::error::{set_error_headers, ApiError, LoggedErrorId};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The whole HTTP surface: the JSON API and, when enabled, the hosted pages, which call the
/// API in-process through a router of their own (the same routes and layers).
pub fn router(app: AppState) -> anyhow::Result<Router> {
    let mut routes = api_routes(app.clone());
    if app.cfg.pages.enabled {
        let api = with_layers(api_routes(app.clone()), app.clone());
        routes = routes.merge(crate::pages::routes(app.clone(), api).map_err(|e| anyhow::anyhow!("pages: {e}"))?);
    }
    Ok(with_layers(routes, app))
}

fn api_routes(app: AppState) -> Router<AppState> {
    // Endpoints that take credentials or send email: rate-limited per client address.
    let limited = Router::new()
        .route("/v1/users", post(signup::sign_up).get(users::list))
        .route("/v1/users/verify", post(signup::verify_email))
        .route("/v1/users/verify/resend", post(signup::resend))
        .route("/v1/password/forgot", post(signup::forgot_password))
        .route("/v1/password/reset", post(signup::reset_password))
        .route("/v1/auth/init", post(login::init))
        .route("/v1/auth/authenticate", post(login::authenticate))
        .route("/v1/sessions", post(login::short_form))
        .route("/v1/sessions/verify", post(login::short_form_verify))
        .route("/v1/api-keys", post(apikeys::create).get(apikeys::list))
        .route("/v1/api-keys/verify", post(apikeys::verify))
        .route("/v1/invitations/lookup", post(invitations::lookup))
        .route("/v1/invitations/accept", post(invitations::accept))
        .route("/v1/invitations/join", post(invitations::join))
        .route("/v1/me/email", post(email::request))
        .route("/v1/me/email/verify", post(email::verify))
        .route_layer(middleware::from_fn_with_state(app.clone(), ip_rate_limit));

    Router::new()
        .merge(limited)
        // Servers (an app's backend, Envoy's OAuth2 filter) exchange and refresh for every
        // person from one address: limited by failed client authentications, not by requests.
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/oauth2/userinfo", get(oauth::userinfo).post(oauth::userinfo))
        .route("/v1/me", get(me::me).delete(me::delete_me).patch(me::update_me))
        .route("/v1/me/password", put(me::change_password))
        .route("/v1/me/mfa", put(me::set_mfa))
        .route("/v1/me/totp", post(me::totp_enrol).delete(me::totp_disable))
        .route("/v1/me/totp/confirm", post(me::totp_confirm))
        .route("/v1/me/passkeys", get(passkeys::list).post(passkeys::register))
        .route("/v1/me/passkeys/challenge", post(passkeys::challenge))
        .route("/v1/me/passkeys/{id}", delete(passkeys::remove))
        .route("/v1/me/consents", get(me::consents))
        .route("/v1/me/consents/{client_id}", delete(me::revoke_consent))
        .route("/v1/me/providers", get(identities::providers))
        .route("/v1/me/identities", get(identities::list).post(identities::link))
        .route("/v1/me/identities/{connection_id}", delete(identities::unlink))
        .route("/v1/users/{id}/roles", put(users::set_roles))
        .route("/v1/users/{id}/disable", post(users::disable))
        .route("/v1/users/{id}/enable", post(users::enable))
        .route("/v1/users/{id}", delete(users::delete).patch(users::update))
        .route("/v1/invitations", post(invitations::invite).get(invitations::list))
        .route("/v1/invitations/{id}", delete(invitations::cancel))
        .route("/v1/orgs/current", get(users::current_org))
        .route("/v1/audit", get(audit::list))
        .route("/v1/orgs", get(orgs::list).post(orgs::create))
        .route("/v1/orgs/{id}/suspend", post(orgs::suspend))
        .route("/v1/orgs/{id}/reinstate", post(orgs::reinstate))
        .route("/v1/orgs/{id}/auth", get(org_auth::get).put(org_auth::put))
        .route("/v1/orgs/{id}/connections", get(connections::list).post(connections::create))
        .route("/v1/orgs/{id}/connections/{connection}", delete(connections::delete))
        .route("/v1/orgs/{id}/connections/{connection}/saml", put(connections::update_saml))
        .route("/v1/orgs/{id}/domains", post(org_auth::add_domain))
        .route("/v1/orgs/{id}/domains/{domain}", delete(org_auth::remove_domain))
        .route("/v1/orgs/{id}/domains/{domain}/verify", post(org_auth::verify_domain))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", delete(webhooks::delete))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/sessions", get(sessions::list).delete(sessions::revoke_all))
        .route("/v1/sessions/{id}", delete(sessions::revoke_one))
        .route("/v1/sessions/logout", post(sessions::logout))
        // Not rate-limited: refresh tokens are 256-bit secrets, guessing is hopeless.
        .route("/v1/sessions/refresh", post(sessions::refresh))
        .route("/v1/sessions/validate", get(sessions::validate))
        .route("/v1/sessions/introspect", post(sessions::introspect))
        .route("/v1/api-keys/{id}", delete(apikeys::revoke))
        .route("/v1/clients", post(clients::create).get(clients::list))
        .route("/v1/clients/{id}", delete(clients::revoke))
        .route("/v1/revocations", get(ops::revocations))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/.well-known/openid-configuration", get(ops::discovery))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
}

fn with_layers(routes: Router<AppState>, app: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(app.clone(), audit_client_ip))
        // Outermost: sees every response, including those the layers above make.
        .layer(middleware::from_fn(error_headers_and_log))
        .with_state(app)
}

/// The router of the `metrics.listen` listener: `/metrics` only.
pub fn metrics_router(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics_listener))
        .fallback(not_found)
        .layer(middleware::from_fn(error_headers_and_log))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
}

/// Logs one line per request (method, route, status, latency, error id; never headers, query
/// strings or bodies), counts it, and gives framework-made errors (JSON rejections, timeouts,
/// body limits) the same `x-error*` headers as our own.
async fn error_headers_and_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // Read the whole (small) body first: a handler that refuses early (401, 403) would otherwise
    // leave it unread, and the connection could not be reused by the client.
    let (parts, body) = req.into_parts();
    let mut resp = match tokio::time::timeout(Duration::from_secs(30), axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    let status = resp.status();
    let mut error_id = resp.extensions().get::<LoggedErrorId>().map(|e| e.0.clone());
    if status.as_u16() >= 400 && !resp.headers().contains_key("x-error-code") {
        let id = crate::error::error_id();
        let (code, message) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body is too large"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send Content-Type: application/json"),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                ("invalid_request", "the request body is not valid for this endpoint")
            }
            s if s.is_server_error() => ("internal_error", "internal server error"),
            _ => ("error", "request failed"),
        };
        tracing::info!(error_id = %id, error_code = code, status = status.as_u16(), "request refused by the framework");
        let body = crate::error::ErrorBody {
            error: code.into(),
            message: message.into(),
            error_description: message.into(),
            error_id: id.clone(),
        };
        let extensions = std::mem::take(resp.extensions_mut());
        resp = (status, axum::Json(body)).into_response();
        *resp.extensions_mut() = extensions;
        set_error_headers(resp.headers_mut(), code, message, &id);
        error_id = Some(id);
    }
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!("authgate_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!("authgate_http_request_duration_seconds", "route" => route.clone()).record(secs);
    tracing::info!(method = %method, route = %route, status = status.as_u16(), latency_ms = (secs * 1000.0) as u64, error_id = error_id.as_deref().unwrap_or(""), "request");
    resp
}

/// The client address: the socket peer, or the last `x-forwarded-for` hop when configured.
#[derive(Clone, Debug)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, app)))
    }
}

fn client_ip(parts: &Parts, app: &AppState) -> IpAddr {
    client_ip_of(app, &parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// The client address of a request with these headers from this peer.
pub(crate) fn client_ip_of(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    if app.cfg.trust_forwarded_for {
        if let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return ip;
        }
    }
    peer.map(|p| p.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The key a client address is counted under: an IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually holds a whole /64, so counting single IPv6 addresses would give each
/// client 2^64 budgets). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn rate_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("v4:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("v4:{v4}"),
            None => {
                let s = v6.segments();
                format!("v6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Every audit event a request causes carries its client address.
async fn audit_client_ip(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&parts, &app);
    crate::audit::with_client_ip(ip, next.run(Request::from_parts(parts, body))).await
}

async fn ip_rate_limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&parts, &app);
    let req = Request::from_parts(parts, body);
    match count_ip(&app, ip).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Counts a request of `ip` against `rate_limits.auth_per_ip`: 429 past it.
pub(crate) async fn count_ip(app: &App, ip: IpAddr) -> Result<(), ApiError> {
    let (n, ttl) = app
        .eph
        .incr(&format!("rl:ip:{}", rate_key(ip)), app.cfg.rate_limits.window_s)
        .await
        .map_err(|e| ApiError::internal(format!("rate limiter: {e}")))?;
    if n > app.cfg.rate_limits.auth_per_ip {
        metrics::counter!("authgate_rate_limited_total", "scope" => "ip").increment(1);
        return Err(ApiError::too_many("rate_limited", "too many requests from this address", ttl));
    }
    Ok(())
}

/// Per-account limit on credential endpoints (keyed by the normalised email, known or not).
pub async fn account_rate_limit(app: &AppState, email: &str) -> Result<(), ApiError> {
    let (n, ttl) = app.eph.incr(&format!("rl:acct:{}", crate::crypto::sha256_hex(email.as_bytes())), app.cfg.rate_limits.window_s).await?;
    if n > app.cfg.rate_limits.auth_per_account {
        metrics::counter!("authgate_rate_limited_total", "scope" => "account").increment(1);
        return Err(ApiError::too_many("rate_limited", "too many requests for this account", ttl));
    }
    Ok(())
}

pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// JSON body extractor whose rejections are `ApiError`s (400 `invalid_request`). A body is a
/// JSON object: serde would also read the body's struct from an array of its fields in order
/// (`["a@b.c", "pw"]` as a login), so it is read through auth-core's `ObjectOnly`.
pub struct Json<T>(pub T);

/// `T`, read from a JSON object only.
struct ObjectBody<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(auth_core::objects::ObjectOnly(deserializer)).map(ObjectBody)
    }
}

/// A JSON object read into `T`, for handlers that take the body's bytes themselves.
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<ObjectBody<T>>(body).map(|ObjectBody(v)| v)
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<ObjectBody<T>>::from_request(req, state).await {
            Ok(axum::Json(ObjectBody(v))) => Ok(Json(v)),
            Err(rejection) => {
                let msg = match rejection {
                    axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => "send Content-Type: application/json".to_string(),
                    other => {
                        // serde's message names the field; it never echoes values for these types.
                        let text = auth_core::objects::json_words(&other.body_text());
                        text.chars().filter(|c| !c.is_control()).take(200).collect()
                    }
                };
                Err(ApiError::bad_request("invalid_request", msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rate_key;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let k = |s: &str| rate_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
    }
}
