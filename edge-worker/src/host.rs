//! The Workers shell: the `fetch` and `scheduled` handlers and the isolate's state.
//!
//! One [`Host`] per isolate lives in module scope (a `thread_local`; an isolate is one thread)
//! and outlives requests: the parsed configuration, the gateway with its keys, feed and token
//! cache, and the fetches in flight. It is re-parsed only when the environment changes. No
//! borrow of it is ever held across an `.await`.
//!
//! Material (see docs/edge-worker.md, "Caching design"):
//! * auth-core's schedule says what is due (`poll_fetch`); each due fetch runs in
//!   `ctx.wait_until`, so the request that noticed it does not wait for it. auth-core hands out
//!   at most one fetch per source at a time, so there is never more than one in flight per URL
//!   in an isolate.
//! * Every successful fetch is also written to the Cache API with the time it was fetched; a new
//!   isolate reads those copies before its first decision (`apply_material`), so it starts warm
//!   and auth-core's stale bound still counts from the original fetch.
//! * Only a cold isolate with nothing usable (no module-scope copy, no cached copy) waits for the
//!   fetch, once, bounded by `fetch.timeout_s`; other cold requests arriving meanwhile wait for
//!   the same fetch instead of starting their own.
//! * The cron trigger runs the same schedule, so the cached copies stay fresh without traffic.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use auth_core::{host_error, Applied, ConfigError, Decision, Deny, ErrorCode, FetchRequest, FetchResponse, MaterialError, Source};
use futures_util::future::{select, Either};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_error, console_log, console_warn, event, js_sys, web_sys, AbortController, Cache, Context, Delay, Env, Fetch,
    Headers, Method, Request, RequestInit, Response, ScheduleContext, ScheduledEvent,
};

use crate::settings::{self, EnvValues, Origin, Settings};

/// How often a cold request looks whether the material it waits for has arrived.
const COLD_POLL: Duration = Duration::from_millis(5);
/// Header of a cached copy holding the unix time it was fetched.
const FETCHED_AT: &str = "x-authgate-fetched-at";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Warm {
    NotTried,
    Reading,
    Done,
}

struct Host {
    settings: Settings,
    /// Sources with material in use (fetched here or read from the Cache API).
    have: Vec<Source>,
    /// Sources with a fetch running in this isolate.
    in_flight: Vec<Source>,
    /// The body of each source's last `200`, written back to the cache with a new date on `304`.
    bodies: HashMap<Source, Rc<[u8]>>,
    /// A feed that arrived before the keys that sign it (auth-core keeps it and applies it with
    /// them), and when it was fetched: cached once it is in use.
    pending_feed: Option<(Rc<[u8]>, i64)>,
    warm: Warm,
}

impl Host {
    fn complete(&self) -> bool {
        self.settings.sources.iter().all(|(s, _)| self.have.contains(s))
    }

    /// A cold request waits while something it lacks may still arrive.
    fn worth_waiting(&self) -> bool {
        !self.complete()
            && (self.warm == Warm::Reading
                || self.settings.sources.iter().any(|(s, _)| !self.have.contains(s) && self.in_flight.contains(s)))
    }

    fn mark_applied(&mut self, source: Source) {
        if !self.have.contains(&source) {
            self.have.push(source);
        }
    }

    /// After keys arrived: a feed waiting for them is now in use (auth-core applied it); returns
    /// it, with its fetch time, for the cache.
    fn adopt_pending_feed(&mut self) -> Option<(Rc<[u8]>, i64)> {
        if self.settings.gateway.status().feed_version.is_none() {
            return None;
        }
        let (body, fetched_at) = self.pending_feed.take()?;
        console_log!("authgate: revocations updated ({} bytes, applied once its signing key arrived)", body.len());
        self.mark_applied(Source::Revocations);
        self.bodies.insert(Source::Revocations, body.clone());
        Some((body, fetched_at))
    }

    /// Starts nothing: takes every fetch auth-core says is due now and marks it in flight.
    fn due_fetches(&mut self, now: i64) -> Vec<FetchRequest> {
        let mut out = Vec::new();
        while let Some(f) = self.settings.gateway.poll_fetch(now) {
            if !self.in_flight.contains(&f.source) {
                self.in_flight.push(f.source);
            }
            out.push(f);
        }
        out
    }
}

struct Loaded {
    /// The environment as JS strings, compared (`===`) on every request to notice a change.
    raw: Vec<JsValue>,
    origin_service: bool,
    host: Result<Host, Rc<ConfigError>>,
}

thread_local! {
    static STATE: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    static REQUEST_SEQ: Cell<u64> = const { Cell::new(0) };
    static ISOLATE_TAG: u32 = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
}

fn now_s() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

fn with_host<R>(f: impl FnOnce(&mut Host) -> R) -> Option<R> {
    STATE.with(|s| s.borrow_mut().as_mut().and_then(|l| l.host.as_mut().ok()).map(f))
}

/// An environment value as a JS string: strings as they are, JSON values (a `[vars]` table)
/// stringified, anything else (unset) `undefined`.
fn env_string(env: &Env, name: &str) -> JsValue {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    if value.is_string() || value.is_undefined() || value.is_null() {
        return if value.is_null() { JsValue::UNDEFINED } else { value };
    }
    js_sys::JSON::stringify(&value).map(JsValue::from).unwrap_or(JsValue::UNDEFINED)
}

fn origin_service(env: &Env) -> bool {
    js_sys::Reflect::get(env, &JsValue::from_str(settings::ORIGIN_SERVICE))
        .ok()
        .filter(|v| v.is_object())
        .and_then(|v| js_sys::Reflect::get(&v, &JsValue::from_str("fetch")).ok())
        .is_some_and(|f| f.is_function())
}

/// Parses the environment on the first request of an isolate and whenever it changes.
fn load(env: &Env) {
    let raw: Vec<JsValue> = settings::ENV_NAMES.iter().map(|n| env_string(env, n)).collect();
    let service = origin_service(env);
    let unchanged = STATE.with(|s| {
        s.borrow().as_ref().is_some_and(|l| l.origin_service == service && l.raw.iter().zip(&raw).all(|(a, b)| a == b))
    });
    if unchanged {
        return;
    }
    let text = |i: usize| raw[i].as_string();
    let values = EnvValues {
        config: text(0),
        api_keys: text(1),
        feed_key_id: text(2),
        feed_secret: text(3),
        origin: text(4),
        request_id_header: text(5),
        origin_service: service,
    };
    let host = match settings::parse(&values) {
        Ok(settings) => {
            console_log!(
                "authgate: configured: {} provider(s), {} route(s), {} fetched source(s), origin {}",
                settings.gateway.config().providers.len(),
                settings.gateway.config().routes.len(),
                settings.sources.len(),
                match &settings.origin {
                    Origin::Url(u) => u.as_str(),
                    Origin::Service => "the ORIGIN service binding",
                }
            );
            Ok(Host {
                settings,
                have: Vec::new(),
                in_flight: Vec::new(),
                bodies: HashMap::new(),
                pending_feed: None,
                warm: Warm::NotTried,
            })
        }
        Err(e) => {
            console_error!("authgate: invalid configuration: {e}");
            Err(Rc::new(e))
        }
    };
    STATE.with(|s| *s.borrow_mut() = Some(Loaded { raw, origin_service: service, host }));
}

fn config_error() -> Option<Rc<ConfigError>> {
    STATE.with(|s| s.borrow().as_ref().and_then(|l| l.host.as_ref().err().cloned()))
}

fn request_id(req: &Request) -> String {
    let header = with_host(|h| h.settings.request_id_header.clone()).unwrap_or_else(|| "x-request-id".to_string());
    for name in [header.as_str(), "cf-ray"] {
        if let Ok(Some(id)) = req.headers().get(name) {
            if settings::usable_request_id(&id) {
                return id;
            }
        }
    }
    let seq = REQUEST_SEQ.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    format!("ag-{:08x}-{seq:x}", ISOLATE_TAG.with(|t| *t))
}

// ----- request path ---------------------------------------------------------------------------

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    load(&env);
    let request_id = request_id(&req);
    if let Some(e) = config_error() {
        console_error!("authgate: request {request_id} refused: invalid configuration: {e}");
        return config_error_response(&e, &request_id);
    }
    ensure_material(&ctx).await;

    let now = now_s();
    let method = req.inner().method();
    let url = req.inner().url();
    let path = path_and_query(&url);
    let header_pairs: Vec<(String, String)> = req.headers().entries().collect();
    let headers: Vec<(&str, &str)> = header_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let request = auth_core::Request { method: &method, path, headers: &headers };
    let Some(decision) = with_host(|h| h.settings.gateway.decide(&request, now, &request_id)) else {
        return deny_response(&host_error(ErrorCode::ConfigInvalid, &request_id));
    };
    // Whatever the decision made due (an unknown kid, a refresh) runs after the answer.
    start_fetches(&ctx, now);

    match decision {
        Decision::Allow(allow) => {
            let set = allow.headers_to_set();
            match forward(&req, &env, &url, path, &method, &allow.remove_headers, &set).await {
                Ok(resp) => Ok(resp),
                Err(Refusal::Headers(e)) => {
                    // Never forward a request whose identity headers could not be written.
                    console_error!("authgate: request {request_id}: cannot set identity headers ({e}); refusing it");
                    deny_response(&host_error(ErrorCode::ConfigInvalid, &request_id))
                }
                Err(Refusal::Upstream(e)) => Err(e),
            }
        }
        Decision::Deny(d) => {
            if d.status() >= 500 {
                console_warn!("authgate: request {} denied: {}", d.error_id, d.code.as_str());
            }
            deny_response(&d)
        }
    }
}

/// The request target (path and query) of an absolute URL.
fn path_and_query(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[after_scheme + i..],
        None => "/",
    }
}

enum Refusal {
    Headers(String),
    Upstream(worker::Error),
}

fn js_error(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{e:?}"))
}

/// Rebuilds the request for the origin: same method, headers minus the client-sent identity
/// headers plus the verified ones, the body stream handed over untouched, redirects returned to
/// the client rather than followed. The origin's response goes back as it is.
#[allow(clippy::too_many_arguments)]
async fn forward(
    req: &Request,
    env: &Env,
    url: &str,
    path: &str,
    method: &str,
    remove: &[std::borrow::Cow<'static, str>],
    set: &[(&str, &str)],
) -> Result<Response, Refusal> {
    let headers = web_sys::Headers::new_with_headers(&req.inner().headers()).map_err(|e| Refusal::Headers(js_error(e)))?;
    for name in remove {
        headers.delete(name).map_err(|e| Refusal::Headers(js_error(e)))?;
    }
    for (name, value) in set {
        headers.set(name, value).map_err(|e| Refusal::Headers(js_error(e)))?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(body) = req.inner().body() {
        init.set_body(&body);
    }
    let origin = with_host(|h| h.settings.origin.clone()).unwrap_or(Origin::Service);
    let target = match &origin {
        Origin::Url(base) => format!("{base}{path}"),
        Origin::Service => url.to_string(),
    };
    let outgoing = web_sys::Request::new_with_str_and_init(&target, &init)
        .map_err(|e| Refusal::Upstream(worker::Error::JsError(js_error(e))))?;
    let outgoing = Request::from(outgoing);
    match origin {
        Origin::Url(_) => Fetch::Request(outgoing).send().await.map_err(Refusal::Upstream),
        Origin::Service => {
            let service = env.service(settings::ORIGIN_SERVICE).map_err(Refusal::Upstream)?;
            service.fetch_request(outgoing).await.map_err(Refusal::Upstream)
        }
    }
}

/// The plugin's denial, byte for byte: status, headers in order, JSON body.
fn deny_response(d: &Deny) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in d.response_headers() {
        headers.set(name, &value)?;
    }
    Ok(Response::from_bytes(d.body().into_bytes())?.with_status(d.status()).with_headers(headers))
}

/// 500 `config_invalid` whose `x-error` (and `error_description`) names the field.
fn config_error_response(e: &ConfigError, request_id: &str) -> worker::Result<Response> {
    let d = host_error(ErrorCode::ConfigInvalid, request_id);
    // A header value must be visible ASCII; serde's messages are, but a path may quote input.
    let description: String = format!("{}: {e}", d.description())
        .chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' })
        .collect();
    let headers = Headers::new();
    for (name, value) in d.response_headers() {
        headers.set(name, if name == "x-error" { &description } else { &value })?;
    }
    let body = serde_json::json!({
        "error": d.code.as_str(),
        "error_description": description,
        "error_id": d.error_id,
    })
    .to_string();
    Ok(Response::from_bytes(body.into_bytes())?.with_status(d.status()).with_headers(headers))
}

// ----- material -------------------------------------------------------------------------------

/// Before a decision: a warm isolate returns at once. A cold one reads the Cache API once, then,
/// for what is still missing, starts the fetch (or joins the one in flight) and waits for it,
/// at most `fetch.timeout_s`.
async fn ensure_material(ctx: &Context) {
    let Some((complete, warm, timeout_s)) =
        with_host(|h| (h.complete(), h.warm, h.settings.gateway.config().fetch.timeout_s))
    else {
        return;
    };
    if complete {
        return;
    }
    if warm == Warm::NotTried {
        with_host(|h| h.warm = Warm::Reading);
        warm_from_cache().await;
        with_host(|h| h.warm = Warm::Done);
    }
    start_fetches(ctx, now_s());
    let deadline = js_sys::Date::now() + timeout_s as f64 * 1000.0;
    while with_host(|h| h.worth_waiting()).unwrap_or(false) && js_sys::Date::now() < deadline {
        Delay::from(COLD_POLL).await;
    }
}

/// Applies the Cache API copies of every source this isolate lacks.
async fn warm_from_cache() {
    let Some(wanted) = with_host(|h| {
        h.settings.sources.iter().filter(|(s, _)| !h.have.contains(s)).cloned().collect::<Vec<(Source, String)>>()
    }) else {
        return;
    };
    let cache = Cache::default();
    for (source, url) in wanted {
        let mut resp = match cache.get(settings::cache_key(&url), false).await {
            Ok(Some(resp)) => resp,
            Ok(None) => continue,
            Err(e) => {
                console_warn!("authgate: {}: cache read failed: {e}", source.key());
                continue;
            }
        };
        let fetched_at = resp.headers().get(FETCHED_AT).ok().flatten().and_then(|v| v.parse::<i64>().ok());
        let Ok(body) = resp.bytes().await else { continue };
        let Some(fetched_at) = fetched_at else { continue };
        let now = now_s();
        with_host(|h| match h.settings.gateway.apply_material(source, &body, fetched_at, now) {
            Ok(_) => {
                console_log!("authgate: {} read from the cache ({} bytes, fetched {}s ago)", source.key(), body.len(), now - fetched_at);
                h.mark_applied(source);
                h.bodies.insert(source, Rc::from(body.as_slice()));
                if matches!(source, Source::Jwks(_)) {
                    // A cached feed read before these keys is in use now (it is in the cache already).
                    let _ = h.adopt_pending_feed();
                }
            }
            Err(MaterialError::FeedKeysUnavailable) => {
                // Applied by auth-core once the keys arrive; kept for the cache like a fetch.
                h.pending_feed = Some((Rc::from(body.as_slice()), fetched_at));
            }
            Err(e) => console_warn!("authgate: {}: cached copy not applied: {e}", source.key()),
        });
    }
}

/// Starts every due fetch in the background of this invocation.
fn start_fetches(ctx: &Context, now: i64) {
    for f in with_host(|h| h.due_fetches(now)).unwrap_or_default() {
        ctx.wait_until(run_fetches(f));
    }
}

/// Runs one fetch, then whatever it made due (a feed signed by a new key asks for the JWKS).
async fn run_fetches(first: FetchRequest) {
    let mut queue = vec![first];
    while let Some(f) = queue.pop() {
        let outcome = fetch_material(&f).await;
        let now = now_s();
        for (url, body, fetched_at, ttl) in with_host(|h| settle(h, &f, outcome, now)).unwrap_or_default() {
            if let Err(e) = put_cache(&url, &body, fetched_at, ttl).await {
                console_warn!("authgate: {url}: cache write failed: {e}");
            }
        }
        queue.extend(with_host(|h| h.due_fetches(now_s())).unwrap_or_default());
    }
}

/// A copy to write to the Cache API: (source URL, body, fetched at, max-age).
type CacheWrite = (String, Rc<[u8]>, i64, u64);

/// Hands a fetch's outcome to auth-core. Returns the copies to write to the cache.
fn settle(h: &mut Host, f: &FetchRequest, outcome: Result<(u16, Vec<u8>, Option<String>), String>, now: i64) -> Vec<CacheWrite> {
    h.in_flight.retain(|s| *s != f.source);
    let ttl = h.settings.cache_ttl_s;
    let mut writes = Vec::new();
    match outcome {
        Err(e) => {
            console_warn!("authgate: {} fetch failed: {e}", f.source.key());
            h.settings.gateway.fetch_failed(f.id, now);
        }
        Ok((status, body, etag)) => {
            let response = FetchResponse { status, body: &body, etag: etag.as_deref() };
            match h.settings.gateway.handle_fetch(f.id, response, now) {
                Ok(applied) => {
                    h.mark_applied(f.source);
                    if applied == Applied::Updated {
                        console_log!("authgate: {} updated ({} bytes)", f.source.key(), body.len());
                    }
                    let copy = if applied == Applied::NotModified {
                        h.bodies.get(&f.source).cloned()
                    } else {
                        let body: Rc<[u8]> = Rc::from(body.as_slice());
                        h.bodies.insert(f.source, body.clone());
                        Some(body)
                    };
                    if let Some(body) = copy {
                        writes.push((f.url.clone(), body, now, ttl));
                    }
                    if matches!(f.source, Source::Jwks(_)) {
                        if let Some((body, at)) = h.adopt_pending_feed() {
                            let url = h.settings.sources.iter().find(|(s, _)| *s == Source::Revocations).map(|(_, u)| u.clone());
                            writes.extend(url.map(|u| (u, body, at, ttl)));
                        }
                    }
                }
                Err(MaterialError::FeedKeysUnavailable) => {
                    console_log!("authgate: revocations wait for their signing key (JWKS refetch due)");
                    h.pending_feed = Some((Rc::from(body.as_slice()), now));
                }
                Err(e) => console_warn!("authgate: {} not applied: {e}", f.source.key()),
            }
        }
    }
    writes
}

/// `GET url` with auth-core's headers, given up (and aborted) after `timeout_s`.
async fn fetch_material(f: &FetchRequest) -> Result<(u16, Vec<u8>, Option<String>), String> {
    let headers = Headers::new();
    for (name, value) in &f.headers {
        headers.set(name, value).map_err(|e| e.to_string())?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&f.url, &init).map_err(|e| e.to_string())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let work = async move {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let status = resp.status_code();
        let etag = resp.headers().get("etag")?;
        let body = resp.bytes().await?;
        Ok::<_, worker::Error>((status, body, etag))
    };
    let timeout = Delay::from(Duration::from_secs(f.timeout_s.max(1)));
    match select(Box::pin(work), Box::pin(timeout)).await {
        Either::Left((result, _)) => result.map_err(|e| e.to_string()),
        Either::Right(_) => {
            controller.abort();
            Err(format!("no answer within {}s", f.timeout_s))
        }
    }
}

/// Keeps a copy for new isolates, stamped with when it was fetched.
async fn put_cache(url: &str, body: &[u8], fetched_at: i64, ttl_s: u64) -> worker::Result<()> {
    let headers = Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("cache-control", &format!("public, max-age={ttl_s}"))?;
    headers.set(FETCHED_AT, &fetched_at.to_string())?;
    let resp = Response::from_bytes(body.to_vec())?.with_headers(headers);
    Cache::default().put(settings::cache_key(url), resp).await
}

// ----- cron -----------------------------------------------------------------------------------

/// The cron trigger: reads the cached copies if this isolate has none, then fetches whatever
/// auth-core says is due, so the copies new isolates read stay fresh without traffic.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    load(&env);
    if let Some(e) = config_error() {
        console_error!("authgate: scheduled refresh skipped: invalid configuration: {e}");
        return;
    }
    if with_host(|h| h.warm == Warm::NotTried).unwrap_or(false) {
        with_host(|h| h.warm = Warm::Reading);
        warm_from_cache().await;
        with_host(|h| h.warm = Warm::Done);
    }
    let due = with_host(|h| h.due_fetches(now_s())).unwrap_or_default();
    for f in due {
        run_fetches(f).await;
    }
}
