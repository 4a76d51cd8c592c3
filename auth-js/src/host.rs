//! `Core`, what the package's `Gateway` class wraps: one auth-core gateway and the host loop
//! around it — decide, hand signatures to WebCrypto, hold a cold-start request until its
//! material arrives, start whatever fetch the decision made due.

use std::cell::RefCell;
use std::rc::Rc;

use auth_core::request_id::RequestIds;
use auth_core::{Decision, Deny, Gateway, HostAlgs, HostCrypto, Request, SignatureAnswer, SignatureCheck, Step, TokenCheck, UnixTime};
use authgate_webcrypto as webcrypto;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{convert, material};

/// How many signatures one request may hand to WebCrypto. Keys can change while a check is
/// awaited (a refetch applied meanwhile): then the core asks about the new key; past this
/// many asks the core checks the rest itself.
const ASKS_PER_REQUEST: u8 = 3;

/// What the JavaScript side provides: `fetch(url, headers, timeoutMs)` →
/// `Promise<{status, etag, body: Uint8Array}>`, `sleep(ms)` → `Promise`, `log(level, message)`,
/// `changed()` (the schedule moved: re-arm the timer).
pub(crate) struct Hooks {
    pub fetch: Function,
    pub sleep: Function,
    pub log: Function,
    pub changed: Function,
}

impl Hooks {
    fn from_js(hooks: &JsValue) -> Result<Hooks, JsValue> {
        let get = |name: &str| -> Result<Function, JsValue> {
            Reflect::get(hooks, &JsValue::from_str(name))?
                .dyn_into()
                .map_err(|_| JsError::new(&format!("hooks.{name} is not a function")).into())
        };
        Ok(Hooks { fetch: get("fetch")?, sleep: get("sleep")?, log: get("log")?, changed: get("changed")? })
    }

    pub fn log(&self, level: &str, message: &str) {
        let _ = self.log.call2(&JsValue::NULL, &JsValue::from_str(level), &JsValue::from_str(message));
    }
}

pub(crate) struct State {
    pub gateway: Gateway,
    ids: RequestIds,
    request_id_header: String,
    /// Signatures go to WebCrypto (until it fails once).
    webcrypto: bool,
    /// Signatures WebCrypto answered (the package's `status()` shows it).
    pub runtime_checks: u64,
    /// Resolvers of requests waiting for material (resolved when a fetch ends).
    pub waiters: Vec<Function>,
    /// What a `*_now` call that could not answer found, for the `resume` that follows it at
    /// once: the request (not sent twice), its request id and the signature to ask about, so
    /// the async loop starts there instead of deciding the request a second time.
    handoff: Option<Handoff>,
}

enum Handoff {
    Request { parts: convert::RequestParts, request_id: String, first: Pass },
    Token { token: String, first: Pass },
}

pub(crate) type Shared = Rc<RefCell<State>>;

pub(crate) fn now() -> UnixTime {
    UnixTime::from_millis(js_sys::Date::now() as i64)
}

/// One gateway: its configuration, material, verified-token cache and request ids.
#[wasm_bindgen]
pub struct Core {
    state: Shared,
    hooks: Rc<Hooks>,
}

#[wasm_bindgen]
impl Core {
    /// `config`: the gateways' JSON configuration; `signatures`: `"webcrypto"` or `"wasm"`;
    /// `request_id_header`: where a caller's request id is read. Throws an `Error` named
    /// `AuthgateConfigError` with `code` and `field` when the configuration is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(config: &str, signatures: &str, request_id_header: &str, hooks: &JsValue) -> Result<Core, JsValue> {
        let hooks = Hooks::from_js(hooks)?;
        let webcrypto = match signatures {
            "webcrypto" => true,
            "wasm" => false,
            other => {
                return Err(convert::config_error("options.signatures", &format!("\"{other}\" is neither \"webcrypto\" nor \"wasm\"")))
            }
        };
        let gateway = Gateway::from_json(config.as_bytes()).map_err(|e| convert::config_error(&e.path, &e.message))?;
        let tag = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        let state = State {
            gateway,
            ids: RequestIds::new(tag),
            request_id_header: request_id_header.to_ascii_lowercase(),
            webcrypto,
            runtime_checks: 0,
            waiters: Vec::new(),
            handoff: None,
        };
        Ok(Core { state: Rc::new(RefCell::new(state)), hooks: Rc::new(hooks) })
    }

    /// Decides a request (`input`: JSON `[method, target, name, value, …]`, repeated names
    /// kept) when that needs no waiting: the decision as JSON text, or `undefined` when it needs
    /// WebCrypto or material on its way (then call `resume`). The verified-token cache, API keys,
    /// HS256 and every denial before a signature answer here, without a promise.
    pub fn decide_now(&self, input: &str) -> Result<Option<String>, JsValue> {
        let parts = convert::request(input)?;
        let headers: Vec<(&str, &str)> = parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let request = Request { method: &parts.method, path: &parts.path, headers: &headers };
        let mut s = self.state.borrow_mut();
        let request_id = s.request_id(&headers);
        let algs = if s.webcrypto { webcrypto::ALGS } else { HostAlgs::NONE };
        let first = decide_pass(&mut s.gateway, &request, &request_id, now(), HostCrypto { algs, answer: None });
        if let Pass::Done(json) = first {
            drop(s);
            material::start_due(&self.state, &self.hooks);
            return Ok(Some(json));
        }
        s.handoff = Some(Handoff::Request { parts, request_id, first });
        Ok(None)
    }

    /// Finishes what the last `decide_now` or `check_now` could not answer (it returned
    /// `undefined`; call this at once): resolves to the decision or token check as JSON text.
    pub fn resume(&self) -> Promise {
        let (state, hooks) = (self.state.clone(), self.hooks.clone());
        // Taken now, not when the future first runs: by then another request's `decide_now`
        // may have left its own handoff.
        let handoff = state.borrow_mut().handoff.take();
        future_to_promise(async move {
            match handoff {
                Some(Handoff::Request { parts, request_id, first }) => {
                    let headers: Vec<(&str, &str)> = parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let request = Request { method: &parts.method, path: &parts.path, headers: &headers };
                    let json = host_loop(&state, &hooks, first, |gw, now, host| decide_pass(gw, &request, &request_id, now, host)).await;
                    Ok(JsValue::from(json))
                }
                Some(Handoff::Token { token, first }) => {
                    Ok(JsValue::from(host_loop(&state, &hooks, first, |gw, now, host| token_pass(gw, &token, now, host)).await))
                }
                None => Err(js_sys::Error::new("authgate: resume() without a pending decide_now or check_now").into()),
            }
        })
    }

    /// Judges a bearer token outside any route (signature, claims, cache, feed) when that needs
    /// no waiting: `{valid: true, identity}` or `{valid: false, status, code, description}` as
    /// JSON text, or `undefined` (then call `resume`).
    pub fn check_now(&self, token: &str) -> Option<String> {
        let mut s = self.state.borrow_mut();
        let algs = if s.webcrypto { webcrypto::ALGS } else { HostAlgs::NONE };
        let first = token_pass(&mut s.gateway, token, now(), HostCrypto { algs, answer: None });
        if let Pass::Done(json) = first {
            drop(s);
            material::start_due(&self.state, &self.hooks);
            return Some(json);
        }
        s.handoff = Some(Handoff::Token { token: token.to_string(), first });
        None
    }

    /// Starts every fetch that is due (in the background: the promise resolves when they end).
    pub fn run_due(&self) -> Promise {
        let (state, hooks) = (self.state.clone(), self.hooks.clone());
        future_to_promise(async move {
            material::run_due(&state, &hooks).await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Milliseconds until auth-core next wants to be polled, or -1 when nothing is scheduled.
    pub fn next_wake_ms(&self) -> f64 {
        let next = self.state.borrow().gateway.poll_timeout();
        next.map_or(-1.0, |t| (t.millis() - now().millis()).max(0) as f64)
    }

    /// Every source has material.
    pub fn is_ready(&self) -> bool {
        self.state.borrow().gateway.is_ready()
    }

    /// Material and cache state as JSON text, for health endpoints and tests.
    pub fn status(&self) -> String {
        let s = self.state.borrow();
        convert::status(&s.gateway.status(), s.runtime_checks)
    }
}

impl State {
    /// The caller's request id when usable, else a new one.
    fn request_id(&mut self, headers: &[(&str, &str)]) -> String {
        let sent = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(&self.request_id_header)).map(|(_, v)| *v);
        self.ids.for_request(sent)
    }
}

/// What one pass of the core said, in the terms the host loop acts on.
enum Pass {
    /// A signature for WebCrypto.
    Ask(SignatureCheck),
    /// Material is on its way: wait for it (until then at most), then pass again.
    Hold(UnixTime),
    /// The answer, as JSON text.
    Done(String),
}

fn decide_pass(gateway: &mut Gateway, request: &Request<'_>, request_id: &str, now: UnixTime, host: HostCrypto<'_>) -> Pass {
    match gateway.decide_with(request, now, request_id, host) {
        Step::CheckSignature(check) => Pass::Ask(check),
        Step::Decided(Decision::Deny(Deny { hold_until: Some(until), .. })) if now < until => Pass::Hold(until),
        Step::Decided(decision) => Pass::Done(convert::decision(&decision)),
    }
}

fn token_pass(gateway: &mut Gateway, token: &str, now: UnixTime, host: HostCrypto<'_>) -> Pass {
    match gateway.check_token_with(token, now, host) {
        TokenCheck::CheckSignature(check) => Pass::Ask(check),
        TokenCheck::Invalid { hold_until: Some(until), .. } if now < until => Pass::Hold(until),
        other => Pass::Done(convert::token_check(&other)),
    }
}

/// The host loop of decisions and token checks alike: what the core asks goes to WebCrypto (a
/// few asks at most, then the core checks the rest), a hold waits for material, and whatever
/// the core made due is fetched in the background. `first` is the pass `*_now` already made.
async fn host_loop(
    state: &Shared,
    hooks: &Rc<Hooks>,
    first: Pass,
    mut pass: impl FnMut(&mut Gateway, UnixTime, HostCrypto<'_>) -> Pass,
) -> String {
    let mut asks_left = ASKS_PER_REQUEST;
    let mut answer: Option<SignatureAnswer> = None;
    let mut next = Some(first);
    loop {
        let step = match next.take() {
            Some(step) => step,
            None => {
                let mut s = state.borrow_mut();
                let algs = if s.webcrypto && asks_left > 0 { webcrypto::ALGS } else { HostAlgs::NONE };
                pass(&mut s.gateway, now(), HostCrypto { algs, answer: answer.as_ref() })
            }
        };
        match step {
            Pass::Ask(check) => {
                asks_left = asks_left.saturating_sub(1);
                answer = ask_runtime(state, hooks, check).await;
            }
            Pass::Hold(until) => {
                material::start_due(state, hooks);
                material::wait(state, hooks, until).await;
            }
            Pass::Done(json) => {
                material::start_due(state, hooks);
                return json;
            }
        }
    }
}

/// WebCrypto's answer to `check`; `None` (the core then checks it) if WebCrypto cannot answer,
/// and from then on every signature stays in the core.
async fn ask_runtime(state: &Shared, hooks: &Hooks, check: SignatureCheck) -> Option<SignatureAnswer> {
    match webcrypto::verify(&check).await {
        Ok(valid) => {
            state.borrow_mut().runtime_checks += 1;
            if webcrypto::first_answer() {
                hooks.log("info", "EdDSA, ES256 and RS256 signatures are checked by the runtime's WebCrypto");
            }
            Some(check.answer(valid))
        }
        Err(e) => {
            hooks.log(
                "warn",
                &format!(
                    "WebCrypto could not check a {} signature ({e}); signatures are checked in WebAssembly from now on",
                    check.alg.as_str()
                ),
            );
            state.borrow_mut().webcrypto = false;
            None
        }
    }
}
