//! The Workers shell: the `fetch` and `scheduled` handlers and the isolate's state. Glue only:
//! auth-core decides, schedules and says what happened to material; [`crate::cache`] says what
//! goes into the Cache API and what may come out of it.
//!
//! One [`Isolate`] per isolate lives in module scope (a `thread_local`; an isolate is one
//! thread) and outlives requests: the settings with the gateway (keys, feed, token cache, fetch
//! schedule), the request-id sequence, whether the Cache API was read. It is re-parsed only when
//! the environment changes. No borrow of it is ever held across an `.await`.
//!
//! Material (see docs/edge-worker.md, "Caching design"):
//! * what is due (`poll_fetch`) runs in `ctx.wait_until`, so the request that noticed it does
//!   not wait for it; auth-core hands out one fetch per source at a time, the feed after its keys;
//! * what auth-core reports applied or confirmed is sealed into the Cache API for new isolates,
//!   for as long as auth-core says it is worth keeping; a new isolate reads those copies before
//!   its first decision;
//! * a request denied for want of material that is still on its way (`Deny::hold_until`, the
//!   one cold-start rule of every gateway, `fetch.cold_start_wait_ms`) waits for it, then is
//!   decided again;
//! * the cron trigger runs the same schedule, so the cached copies stay fresh without traffic.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use auth_core::request_id::{self, RequestIds};
use auth_core::{
    host_error, ConfigError, Decision, Deny, ErrorCode, FetchRequest, FetchResponse, HostCrypto, OutageLog, Severity, Step,
    SuspendedDecision, UnixTime,
};
use futures_util::future::{select, Either};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{
    console_error, console_log, console_warn, event, js_sys, web_sys, AbortController, Cache, Context, Delay, Env, Fetch, Headers, Method,
    Request, RequestInit, Response, ScheduleContext, ScheduledEvent,
};

use crate::cache;
use crate::settings::{self, EnvValues, Origin, Settings, ENV_NAMES};
use authgate_webcrypto as webcrypto;

/// How often a held request looks whether the material it waits for has arrived.
const HOLD_POLL: Duration = Duration::from_millis(5);

struct Isolate {
    settings: Settings,
    ids: RequestIds,
    outages: OutageLog,
    /// The Cache API has been read (or there is nothing to read it with).
    warmed: bool,
}

struct Loaded {
    /// The environment object these settings were read from: the same object again (the
    /// runtime hands an isolate one `env`) needs no second look.
    env: JsValue,
    /// The environment as JS strings, compared (`===`) to notice a change under a new `env`.
    raw: Vec<JsValue>,
    origin_service: bool,
    isolate: Result<Isolate, Rc<ConfigError>>,
}

thread_local! {
    static STATE: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

fn now() -> UnixTime {
    UnixTime::from_millis(js_sys::Date::now() as i64)
}

fn with_isolate<R>(f: impl FnOnce(&mut Isolate) -> R) -> Option<R> {
    STATE.with(|s| s.borrow_mut().as_mut().and_then(|l| l.isolate.as_mut().ok()).map(f))
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
    let env_object: &JsValue = env.as_ref();
    if STATE.with(|s| s.borrow().as_ref().is_some_and(|l| js_sys::Object::is(&l.env, env_object))) {
        return;
    }
    let raw: Vec<JsValue> = ENV_NAMES.iter().map(|n| env_string(env, n)).collect();
    let service = origin_service(env);
    let unchanged =
        STATE.with(|s| s.borrow().as_ref().is_some_and(|l| l.origin_service == service && l.raw.iter().zip(&raw).all(|(a, b)| a == b)));
    if unchanged {
        STATE.with(|s| {
            if let Some(l) = s.borrow_mut().as_mut() {
                l.env = env_object.clone();
            }
        });
        return;
    }
    let values = EnvValues::from_names(std::array::from_fn(|i| raw[i].as_string()), service);
    let isolate = match settings::parse(&values) {
        Ok(settings) => {
            let config = settings.gateway.config();
            console_log!(
                "authgate: configured: {} provider(s), {} route(s), {} fetched source(s), origin {}{}",
                config.providers.len(),
                config.routes.len(),
                settings.gateway.sources().len(),
                match &settings.origin {
                    Origin::Url(u) => u.as_str(),
                    Origin::Service => "the ORIGIN service binding",
                },
                if settings.cache_key.is_none() && !settings.gateway.sources().is_empty() {
                    "; no secret to seal Cache API copies with, so new isolates start cold (set AUTHGATE_CACHE_KEY)"
                } else {
                    ""
                }
            );
            let tag = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
            let warmed = settings.cache_key.is_none();
            Ok(Isolate { settings, ids: RequestIds::new(tag), outages: OutageLog::default(), warmed })
        }
        Err(e) => {
            console_error!("authgate: invalid configuration: {e}");
            Err(Rc::new(e))
        }
    };
    STATE.with(|s| *s.borrow_mut() = Some(Loaded { env: env_object.clone(), raw, origin_service: service, isolate }));
}

fn config_error() -> Option<Rc<ConfigError>> {
    STATE.with(|s| s.borrow().as_ref().and_then(|l| l.isolate.as_ref().err().cloned()))
}

fn request_id(headers: &[(&str, &str)]) -> String {
    let header = with_isolate(|i| i.settings.request_id_header.clone()).unwrap_or_else(|| "x-request-id".to_string());
    let sent = [header.as_str(), "cf-ray"].iter().find_map(|name| {
        let value = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1;
        request_id::from_client(Some(value))
    });
    sent.or_else(|| with_isolate(|i| i.ids.next_id())).unwrap_or_else(|| "authgate".to_string())
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "export function header_text(headers) {
    const out = [];
    headers.forEach((value, name) => { out.push(name, value); });
    for (const item of out) if (item.includes('\\u0000')) return undefined;
    return out.join('\\u0000');
}")]
extern "C" {
    /// The request's headers as `name NUL value NUL …` (combined as `Headers` combines repeated
    /// fields, names lowercase): one crossing into JavaScript and one string, where iterating
    /// the `Headers` from Rust costs several crossings and two strings per header. `None` if a
    /// name or value holds a NUL (the runtime refuses them; checked all the same, because one
    /// would shift every name and value after it: a header read as another).
    fn header_text(headers: &web_sys::Headers) -> Option<String>;
}

/// `(name, value)` pairs of [`header_text`]'s output; `None` for an odd count.
fn header_pairs(text: &str) -> Option<Vec<(&str, &str)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let items: Vec<&str> = text.split('\0').collect();
    items.len().is_multiple_of(2).then(|| items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

// ----- request path ---------------------------------------------------------------------------

// The request and the origin's response stay the runtime's own objects: workers-rs' `Request`
// reads the `cf` object on every conversion (measured: a quarter of a cache hit's CPU), and
// nothing here needs it.
//
// The handler is synchronous: it answers with a `Response`, the origin's promised one, or a
// promise that WebCrypto's verdict continues in JavaScript (`after`) — no Rust future and no
// closures made per request on the common paths (measured: docs/benchmarks.md, "The Worker's
// request path without a Rust future"). What must wait in Rust (the Cache API on an isolate's
// first request, a key's first import, material a cold start holds for) runs the loop in
// [`decide_waiting`] instead.

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "let answer;
export function answer_with(f) { answer = f; }
export function after(verdict, handle) {
    return verdict.then((v) => answer(handle, v), (e) => answer(handle, e));
}
export function or_500(response) { return response.catch(unreachable); }
function unreachable(e) {
    console.error(`authgate: the origin did not answer: ${e}`);
    return new Response('INTERNAL SERVER ERROR', { status: 500 });
}")]
extern "C" {
    /// Where `after` sends WebCrypto's verdicts: [`answer`], registered once per instance.
    fn answer_with(f: &js_sys::Function);
    /// `verdict.then(v => answer(handle, v), e => answer(handle, e))`: what the decision waiting
    /// under `handle` answers once WebCrypto has.
    fn after(verdict: &js_sys::Promise, handle: u32) -> js_sys::Promise;
    /// The origin's response, or the 500 a worker answers when it throws (logged).
    fn or_500(response: &js_sys::Promise) -> js_sys::Promise;
}

/// A request whose decision goes on later, and what it needs to be decided again from the start
/// (a pass after waiting for material, or after the settings changed meanwhile) and forwarded.
struct Incoming {
    req: web_sys::Request,
    env: Env,
    ctx: Context,
    /// [`header_text`]'s output, checked by [`header_pairs`] already.
    headers: String,
    request_id: String,
    method: String,
    url: String,
}

impl Incoming {
    /// The 500 `config_invalid` for this request: the isolate has no settings, or an identity
    /// header could not be written.
    fn config_invalid(&self) -> JsValue {
        deny_value(&host_error(ErrorCode::ConfigInvalid, &self.request_id, None))
    }

    /// A pass from the start; `None` when the isolate has no settings.
    fn decide(&self, now: UnixTime, asks_left: u8) -> Option<Step> {
        let headers = header_pairs(&self.headers).unwrap_or_default();
        let request = auth_core::Request { method: &self.method, path: path_and_query(&self.url), headers: &headers };
        first_pass(&request, &self.request_id, now, asks_left)
    }

    /// Goes on from `suspended` with WebCrypto's verdict (`None`: the core checks it), or decides
    /// afresh when the settings changed while it waited.
    fn resume(&self, suspended: SuspendedDecision, verdict: Option<bool>, now: UnixTime, asks_left: u8) -> Option<Step> {
        let resumed = with_isolate(|i| {
            let algs = webcrypto::algs(i.settings.webcrypto, asks_left);
            let gateway = &mut i.settings.gateway;
            gateway.made(&suspended).then(|| gateway.resume(suspended, verdict, now, algs))
        })?;
        resumed.or_else(|| self.decide(now, asks_left))
    }
}

fn first_pass(request: &auth_core::Request<'_>, request_id: &str, now: UnixTime, asks_left: u8) -> Option<Step> {
    with_isolate(|i| {
        let algs = webcrypto::algs(i.settings.webcrypto, asks_left);
        i.settings.gateway.decide_with(request, now, request_id, HostCrypto { algs, answer: None })
    })
}

/// A decision waiting for WebCrypto's verdict, under the handle `after` carries.
struct Waiting {
    incoming: Incoming,
    suspended: SuspendedDecision,
    asks_left: u8,
}

thread_local! {
    static WAITING: RefCell<webcrypto::Handles<Waiting>> = RefCell::new(webcrypto::Handles::default());
    /// [`answer`] as a JavaScript function, made once and kept for the instance's life.
    static ANSWER: std::cell::OnceCell<Closure<dyn FnMut(u32, JsValue) -> JsValue>> = const { std::cell::OnceCell::new() };
}

/// The Worker's `fetch` handler (worker-build's entry calls this export with the request, `env`
/// and `ctx`): a `Response`, or a promise of one.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    load(&env);
    let text = header_text(&req.headers());
    let Some(headers) = text.as_deref().and_then(header_pairs) else {
        console_error!("authgate: the runtime handed over headers that cannot be read; refusing the request");
        return deny_value(&host_error(ErrorCode::ConfigInvalid, "authgate", None));
    };
    let request_id = request_id(&headers);
    if let Some(e) = config_error() {
        console_error!("authgate: request {request_id} refused: invalid configuration: {e}");
        return deny_value(&host_error(ErrorCode::ConfigInvalid, &request_id, Some(&e.to_string())));
    }
    let (method, url) = (req.method(), req.url());
    let now = now();
    // An isolate's first request reads the Cache API first (in the loop).
    let warmed = with_isolate(|i| i.warmed).unwrap_or(true);
    let step = warmed.then(|| {
        let request = auth_core::Request { method: &method, path: path_and_query(&url), headers: &headers };
        first_pass(&request, &request_id, now, webcrypto::ASKS_PER_REQUEST)
    });
    drop(headers);
    let incoming = Incoming { req, env, ctx: Context::new(ctx), headers: text.unwrap_or_default(), request_id, method, url };
    match step {
        None => decide_waiting(incoming, None, webcrypto::ASKS_PER_REQUEST),
        Some(None) => incoming.config_invalid(),
        Some(Some(step)) => go_on(incoming, step, webcrypto::ASKS_PER_REQUEST, now),
    }
}

/// Acts on a pass without waiting where it can: the answer, or WebCrypto's verdict awaited in
/// JavaScript ([`after`]); what must wait otherwise goes to [`decide_waiting`].
fn go_on(incoming: Incoming, step: Step, asks_left: u8, now: UnixTime) -> JsValue {
    match step {
        Step::CheckSignature(suspended) => match webcrypto::verify_started(suspended.check()) {
            Some(Ok(verdict)) => {
                ANSWER.with(|a| {
                    a.get_or_init(|| {
                        let f = Closure::<dyn FnMut(u32, JsValue) -> JsValue>::new(answer);
                        answer_with(f.as_ref().unchecked_ref());
                        f
                    });
                });
                let handle = WAITING.with(|w| w.borrow_mut().insert(Waiting { incoming, suspended, asks_left }));
                after(&verdict, handle).into()
            }
            // The key is not imported yet, or WebCrypto failed to start: the loop sees to it.
            _ => decide_waiting(incoming, Some(Step::CheckSignature(suspended)), asks_left),
        },
        Step::Decided(decision) => {
            // Whatever the decision made due (a cold start, an unknown kid, a refresh) runs in
            // the background of this invocation.
            start_fetches(&incoming.ctx, now);
            match &decision {
                Decision::Deny(Deny { hold_until: Some(until), .. }) if now < *until => {
                    decide_waiting(incoming, Some(Step::Decided(decision)), asks_left)
                }
                _ => respond(&incoming, decision),
            }
        }
    }
}

/// WebCrypto's verdict (a boolean, or why it could not answer) for the decision under `handle`.
fn answer(handle: u32, verdict: JsValue) -> JsValue {
    let waiting = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let waiting = w.take(handle);
        w.release(handle);
        waiting
    });
    let Some(Waiting { incoming, suspended, asks_left }) = waiting else {
        return internal_error("a WebCrypto verdict for no waiting request");
    };
    let asks_left = asks_left.saturating_sub(1);
    let verdict = runtime_verdict(verdict.as_bool().ok_or_else(|| webcrypto::js_message(verdict)), suspended.check().alg);
    let now = now();
    match incoming.resume(suspended, verdict, now, asks_left) {
        Some(step) => go_on(incoming, step, asks_left, now),
        None => incoming.config_invalid(),
    }
}

/// What the core goes on with: WebCrypto's verdict, or `None` when it could not answer (then
/// this isolate checks signatures itself from now on).
fn runtime_verdict(answer: Result<bool, String>, alg: auth_core::Alg) -> Option<bool> {
    match answer {
        Ok(valid) => {
            if webcrypto::first_answer() {
                console_log!("authgate: EdDSA, ES256 and RS256 signatures are checked by the runtime's WebCrypto");
            }
            Some(valid)
        }
        Err(e) => {
            console_warn!(
                "authgate: WebCrypto could not check a {} signature ({e}); this isolate checks signatures itself from now on",
                alg.as_str()
            );
            with_isolate(|i| i.settings.webcrypto = false);
            None
        }
    }
}

/// The loop for whatever must wait in Rust: the Cache API on an isolate's first request, a key
/// imported into WebCrypto, material a cold start holds for. Starts from `next` (or a pass from
/// the start); a promise of the answer.
fn decide_waiting(incoming: Incoming, next: Option<Step>, asks_left: u8) -> JsValue {
    future_to_promise(async move { Ok(decide_waiting_loop(incoming, next, asks_left).await) }).into()
}

async fn decide_waiting_loop(incoming: Incoming, mut next: Option<Step>, mut asks_left: u8) -> JsValue {
    warm_from_cache().await;
    let decision = loop {
        let Some(step) = next.take().or_else(|| incoming.decide(now(), asks_left)) else {
            return incoming.config_invalid();
        };
        match step {
            Step::CheckSignature(suspended) => {
                // Keys can change while a check is awaited (another request applied a
                // refetch): then the decision asks about the new key. A few asks per request,
                // then this one stays in the core.
                asks_left = asks_left.saturating_sub(1);
                let verdict = runtime_verdict(webcrypto::verify(suspended.check()).await, suspended.check().alg);
                next = incoming.resume(suspended, verdict, now(), asks_left);
                if next.is_none() {
                    return incoming.config_invalid();
                }
            }
            Step::Decided(decision) => {
                let now = now();
                start_fetches(&incoming.ctx, now);
                match &decision {
                    Decision::Deny(Deny { hold_until: Some(until), .. }) if now < *until => Delay::from(HOLD_POLL).await,
                    _ => break decision,
                }
            }
        }
    };
    respond(&incoming, decision)
}

/// The decision carried out: the request forwarded (the origin's promised response), or the
/// denial.
fn respond(incoming: &Incoming, decision: Decision) -> JsValue {
    match decision {
        Decision::Allow(allow) => {
            let set = allow.headers_to_set();
            match forward(incoming, &allow.remove_headers, &set) {
                Ok(response) => or_500(&response).into(),
                Err(Refusal::Headers(e)) => {
                    // Never forward a request whose identity headers could not be written.
                    console_error!("authgate: request {}: cannot set identity headers ({e}); refusing it", incoming.request_id);
                    incoming.config_invalid()
                }
                Err(Refusal::Upstream(e)) => internal_error(&format!("request {}: cannot forward it: {e}", incoming.request_id)),
            }
        }
        Decision::Deny(d) => {
            // An outage is one line a second, with a count of the rest (as the plugin logs it).
            if let Some(Some(more)) = (d.status() >= 500).then(|| with_isolate(|i| i.outages.note(now())).flatten()) {
                let tail = if more > 0 { format!(" (and {more} more since the last such line)") } else { String::new() };
                console_warn!("authgate: request {} denied: {}{tail}", d.error_id, d.code.as_str());
            }
            deny_value(&d)
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
    Upstream(String),
}

/// Rebuilds the request for the origin: same method, headers minus the client-sent identity
/// headers plus the verified ones, the body stream handed over untouched, redirects returned to
/// the client rather than followed. The origin's response goes back as it is.
fn forward(
    incoming: &Incoming,
    remove: &[std::borrow::Cow<'static, str>],
    set: &[(&str, std::borrow::Cow<'_, str>)],
) -> Result<js_sys::Promise, Refusal> {
    let req = &incoming.req;
    let headers = web_sys::Headers::new_with_headers(&req.headers()).map_err(|e| Refusal::Headers(webcrypto::js_message(e)))?;
    for name in remove {
        headers.delete(name).map_err(|e| Refusal::Headers(webcrypto::js_message(e)))?;
    }
    for (name, value) in set {
        headers.set(name, value).map_err(|e| Refusal::Headers(webcrypto::js_message(e)))?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(&incoming.method);
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(body) = req.body() {
        init.set_body(&body);
    }
    let origin = with_isolate(|i| i.settings.origin.clone()).unwrap_or(Origin::Service);
    let target = match &origin {
        Origin::Url(base) => format!("{base}{}", path_and_query(&incoming.url)),
        Origin::Service => incoming.url.clone(),
    };
    let upstream = |e: JsValue| Refusal::Upstream(webcrypto::js_message(e));
    let outgoing = web_sys::Request::new_with_str_and_init(&target, &init).map_err(upstream)?;
    let sent = match origin {
        Origin::Url(_) => {
            let fetch: js_sys::Function =
                js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("fetch")).map_err(upstream)?.dyn_into().map_err(upstream)?;
            fetch.call1(&JsValue::UNDEFINED, &outgoing).map_err(upstream)?
        }
        Origin::Service => {
            let binding = js_sys::Reflect::get(&incoming.env, &JsValue::from_str(settings::ORIGIN_SERVICE)).map_err(upstream)?;
            binding.unchecked_into::<worker::worker_sys::Fetcher>().fetch(&outgoing).map_err(upstream)?.into()
        }
    };
    sent.dyn_into().map_err(upstream)
}

/// The plugin's denial, byte for byte: status, headers in order, JSON body.
fn deny_response(d: &Deny) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in d.response_headers() {
        headers.set(name, &value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(d.status());
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(Some(&d.body()), &init)
}

fn deny_value(d: &Deny) -> JsValue {
    deny_response(d).map(JsValue::from).unwrap_or_else(|e| internal_error(&format!("cannot build a denial: {}", webcrypto::js_message(e))))
}

/// The 500 a worker answers when it fails (logged); a rejected promise if even that cannot be made.
fn internal_error(why: &str) -> JsValue {
    console_error!("authgate: {why}");
    let init = web_sys::ResponseInit::new();
    init.set_status(500);
    web_sys::Response::new_with_opt_str_and_init(Some("INTERNAL SERVER ERROR"), &init)
        .map(JsValue::from)
        .unwrap_or_else(|e| js_sys::Promise::reject(&e).into())
}

// ----- material -------------------------------------------------------------------------------

/// Once per isolate: applies the sealed Cache API copies of every source, so a new isolate
/// starts with what another one fetched (and auth-core's stale bounds count from that fetch).
async fn warm_from_cache() {
    let Some(Some((key, wanted))) = with_isolate(|i| {
        if i.warmed {
            return None;
        }
        i.warmed = true;
        let key = i.settings.cache_key?;
        Some((key, i.settings.gateway.sources().iter().map(|s| (s.source, s.key.clone())).collect::<Vec<_>>()))
    }) else {
        return;
    };
    let cache = Cache::default();
    for (source, source_key) in wanted {
        let mut resp = match cache.get(cache::cache_url(&source_key), false).await {
            Ok(Some(resp)) => resp,
            Ok(None) => continue,
            Err(e) => {
                console_warn!("authgate: {}: cache read failed: {e}", source.key());
                continue;
            }
        };
        let Ok(sealed) = resp.bytes().await else { continue };
        let authentic = with_isolate(|i| cache::apply_read(&mut i.settings.gateway, &key, source, &sealed, now())).unwrap_or(false);
        if !authentic {
            console_warn!("authgate: {}: the Cache API copy is not sealed with this worker's key; ignored", source.key());
        }
        drain_events().await;
    }
}

/// Starts every due fetch in the background of this invocation.
fn start_fetches(ctx: &Context, now: UnixTime) {
    for f in due_fetches(now) {
        ctx.wait_until(run_fetches(f));
    }
}

fn due_fetches(now: UnixTime) -> Vec<FetchRequest> {
    with_isolate(|i| std::iter::from_fn(|| i.settings.gateway.poll_fetch(now)).collect()).unwrap_or_default()
}

/// Runs one fetch, then whatever it made due (the feed after its keys, a JWKS the feed asks for).
async fn run_fetches(first: FetchRequest) {
    let mut queue = vec![first];
    while let Some(f) = queue.pop() {
        let outcome = fetch_material(&f).await;
        with_isolate(|i| match &outcome {
            Ok((status, body, etag)) => {
                i.settings.gateway.handle_fetch(f.id, FetchResponse { status: *status, body, etag: etag.as_deref() }, now())
            }
            Err(e) => {
                console_warn!("authgate: {} fetch failed: {e}", f.source.key());
                i.settings.gateway.fetch_failed(f.id, now());
            }
        });
        drain_events().await;
        queue.extend(due_fetches(now()));
    }
}

/// Logs what happened to material and keeps fetched copies in the Cache API.
async fn drain_events() {
    let writes = with_isolate(|i| {
        let mut writes = Vec::new();
        while let Some(event) = i.settings.gateway.poll_event() {
            match event.severity() {
                Severity::Warn => console_warn!("authgate: {event}"),
                Severity::Info => console_log!("authgate: {event}"),
                Severity::Debug => {}
            }
            writes.extend(cache::write_for(&i.settings.gateway, i.settings.cache_key.as_ref(), &event));
        }
        writes
    })
    .unwrap_or_default();
    for w in writes {
        if let Err(e) = put_cache(&w).await {
            console_warn!("authgate: {}: cache write failed: {e}", w.url);
        }
    }
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

async fn put_cache(w: &cache::CacheWrite) -> worker::Result<()> {
    let headers = Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("cache-control", &format!("public, max-age={}", w.max_age_s))?;
    let resp = Response::from_bytes(w.sealed.clone())?.with_headers(headers);
    Cache::default().put(&w.url, resp).await
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
    warm_from_cache().await;
    for f in due_fetches(now()) {
        run_fetches(f).await;
    }
}
