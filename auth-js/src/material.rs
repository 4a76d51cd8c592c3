//! JWKS and the revocation feed, fetched with the runtime's `fetch` (through the JavaScript
//! hook) when auth-core says they are due; auth-core hands out one fetch per source at a time
//! and keeps the backoff and stale bounds. Requests held at a cold start wait here.

use std::rc::Rc;

use auth_core::{FetchRequest, FetchResponse, Severity, UnixTime};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};

use authgate_webcrypto::js_message;

use crate::host::{now, Hooks, Shared};

/// Starts every due fetch in the background; each runs on to whatever it made due.
pub(crate) fn start_due(state: &Shared, hooks: &Rc<Hooks>) {
    for f in due(state, now()) {
        let (state, hooks) = (state.clone(), hooks.clone());
        spawn_local(async move { run_chain(&state, &hooks, f).await });
    }
}

/// Every due fetch, awaited (the timer's and `Gateway.create`'s entry).
pub(crate) async fn run_due(state: &Shared, hooks: &Hooks) {
    for f in due(state, now()) {
        run_chain(state, hooks, f).await;
    }
    let _ = hooks.changed.call0(&JsValue::NULL);
}

fn due(state: &Shared, now: UnixTime) -> Vec<FetchRequest> {
    let mut s = state.borrow_mut();
    std::iter::from_fn(|| s.gateway.poll_fetch(now)).collect()
}

/// One fetch, then what it made due (the feed after its keys, a JWKS the feed asks for).
async fn run_chain(state: &Shared, hooks: &Hooks, first: FetchRequest) {
    let mut queue = vec![first];
    while let Some(f) = queue.pop() {
        let outcome = fetch(hooks, &f).await;
        // Log lines and waiters are handed to JavaScript only once the state is released: a
        // logger may well call back into the gateway.
        let mut lines = Vec::new();
        let waiters = {
            let mut s = state.borrow_mut();
            match &outcome {
                Ok((status, body, etag)) => {
                    s.gateway.handle_fetch(f.id, FetchResponse { status: *status, body, etag: etag.as_deref() }, now())
                }
                Err(e) => {
                    lines.push(("warn", format!("{} fetch failed: {e}", f.source.key())));
                    s.gateway.fetch_failed(f.id, now());
                }
            }
            while let Some(event) = s.gateway.poll_event() {
                let level = match event.severity() {
                    Severity::Warn => "warn",
                    Severity::Info => "info",
                    Severity::Debug => "debug",
                };
                lines.push((level, event.to_string()));
            }
            std::mem::take(&mut s.waiters)
        };
        for (level, line) in lines {
            hooks.log(level, &line);
        }
        for resolve in waiters {
            let _ = resolve.call0(&JsValue::NULL);
        }
        let _ = hooks.changed.call0(&JsValue::NULL);
        queue.extend(due(state, now()));
    }
}

/// Waits until a fetch ends or `until`, whichever comes first.
pub(crate) async fn wait(state: &Shared, hooks: &Hooks, until: UnixTime) {
    let mut register = |resolve: Function, _reject: Function| state.borrow_mut().waiters.push(resolve);
    let arrived = Promise::new(&mut register);
    let ms = (until.millis() - now().millis()).max(0) as f64;
    let timeout = hooks.sleep.call1(&JsValue::NULL, &JsValue::from_f64(ms)).unwrap_or(JsValue::UNDEFINED);
    let race: Array = [JsValue::from(arrived), timeout].into_iter().collect();
    let _ = JsFuture::from(Promise::race(&race)).await;
}

/// `hooks.fetch(url, headers, timeoutMs)`: status, body and `etag`.
async fn fetch(hooks: &Hooks, f: &FetchRequest) -> Result<(u16, Vec<u8>, Option<String>), String> {
    let headers = Object::new();
    for (name, value) in &f.headers {
        Reflect::set(&headers, &JsValue::from_str(name), &JsValue::from_str(value)).map_err(js_message)?;
    }
    let timeout_ms = JsValue::from_f64((f.timeout_s.max(1) * 1000) as f64);
    let promise: Promise = hooks
        .fetch
        .call3(&JsValue::NULL, &JsValue::from_str(&f.url), &headers, &timeout_ms)
        .map_err(js_message)?
        .dyn_into()
        .map_err(|_| "the fetch hook did not return a promise".to_string())?;
    let answer = JsFuture::from(promise).await.map_err(js_message)?;
    let status = Reflect::get(&answer, &JsValue::from_str("status")).ok().and_then(|s| s.as_f64()).ok_or("no status")? as u16;
    let etag = Reflect::get(&answer, &JsValue::from_str("etag")).ok().and_then(|e| e.as_string());
    let body: Uint8Array = Reflect::get(&answer, &JsValue::from_str("body")).map_err(js_message)?.dyn_into().map_err(|_| "no body")?;
    Ok((status, body.to_vec(), etag))
}
