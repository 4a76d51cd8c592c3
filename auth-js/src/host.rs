//! `Core`, what the package's `Gateway` class wraps: one auth-core gateway and the host loop
//! around it — decide, hand signatures to WebCrypto, hold a cold-start request until its
//! material arrives, start whatever fetch the decision made due.

use std::cell::RefCell;
use std::rc::Rc;

use auth_core::request_id::RequestIds;
use auth_core::{
    Decision, Deny, Gateway, HostAlgs, HostCrypto, Request, SignatureCheck, Step, SuspendedDecision, SuspendedToken, TokenCheck, UnixTime,
};
use authgate_webcrypto::{self as webcrypto, Handles};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{convert, material};

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
    /// Decisions and token checks a `*_now` call could not finish, under the handle it
    /// returned; JavaScript continues each with `ask` + `answer_now`, or `resume`.
    pending: Handles<Pending>,
}

/// A decision or token check waiting on the host: what it judges (kept, so the request is not
/// sent twice: a hold decides it afresh), where it stopped, and how many more signatures may go
/// to WebCrypto.
struct Pending {
    subject: Subject,
    step: Pass,
    asks_left: u8,
}

enum Subject {
    Request { parts: convert::RequestParts, request_id: String },
    Token(String),
}

impl Subject {
    /// A pass from the start (the first, or after waiting for material).
    fn pass(&self, gateway: &mut Gateway, now: UnixTime, algs: HostAlgs) -> Pass {
        let host = HostCrypto { algs, answer: None };
        match self {
            Subject::Request { parts, request_id } => {
                let headers = parts.headers();
                let request = Request { method: parts.method(), path: parts.path(), headers: &headers };
                decision_pass(gateway.decide_with(&request, now, request_id, host), now)
            }
            Subject::Token(token) => token_pass(gateway.check_token_with(token, now, host), now),
        }
    }
}

/// Where a decision or token check stopped for WebCrypto: it goes on from there.
enum Suspended {
    Decision(SuspendedDecision),
    Token(Box<SuspendedToken>),
}

impl Suspended {
    fn check(&self) -> &SignatureCheck {
        match self {
            Suspended::Decision(s) => s.check(),
            Suspended::Token(s) => s.check(),
        }
    }

    /// Goes on with WebCrypto's verdict (`None`: the core checks the signature itself).
    fn resume(self, gateway: &mut Gateway, verdict: Option<bool>, now: UnixTime, algs: HostAlgs) -> Pass {
        match self {
            Suspended::Decision(s) => decision_pass(gateway.resume(s, verdict, now, algs), now),
            Suspended::Token(s) => token_pass(gateway.resume_token(s, verdict, now, algs), now),
        }
    }
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
            pending: Handles::default(),
        };
        Ok(Core { state: Rc::new(RefCell::new(state)), hooks: Rc::new(hooks) })
    }

    /// Decides a request (`input`: `method NUL target NUL name NUL value …` as UTF-8 bytes,
    /// `items` of them, repeated names kept — `TextEncoder` in native code, not the bindings'
    /// character loop over a string): the decision as JSON text when that needs no waiting (the verified-token cache,
    /// API keys, HS256, every denial before a signature answer), else a handle (a number) to
    /// continue with `ask` + `answer_now`, or `resume`.
    pub fn decide_now(&self, input: Vec<u8>, items: u32) -> Result<JsValue, JsValue> {
        let parts = convert::request(input, items)?;
        let request_id = self.state.borrow_mut().request_id(parts.header_pairs());
        Ok(self.first_pass(Subject::Request { parts, request_id }))
    }

    /// Judges a bearer token outside any route (signature, claims, cache, feed): `{valid: true,
    /// identity}` or `{valid: false, status, code, description}` as JSON text when that needs
    /// no waiting, else a handle as `decide_now` returns it. `token` as UTF-8 bytes.
    pub fn check_now(&self, token: Vec<u8>) -> JsValue {
        // `TextEncoder` writes only UTF-8; anything else could not be a token anyway.
        let token = String::from_utf8(token).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.first_pass(Subject::Token(token))
    }

    /// The signature the pending `handle` waits for, handed to WebCrypto: a promise of a
    /// boolean, for `answer_now`. `undefined` when WebCrypto cannot take it straight away (its
    /// key is not imported yet, material is on its way, signatures stay in WebAssembly): then
    /// `resume`.
    pub fn ask(&self, handle: u32) -> Result<Option<Promise>, JsValue> {
        let s = self.state.borrow();
        let pending = s.pending.get(handle).ok_or_else(unknown_handle)?;
        match &pending.step {
            Pass::Ask(suspended) if s.webcrypto => Ok(webcrypto::verify_started(suspended.check()).and_then(Result::ok)),
            _ => Ok(None),
        }
    }

    /// Continues the pending `handle` with WebCrypto's `verdict` on what `ask` handed it (a
    /// boolean; anything else — the promise's rejection — means WebCrypto could not check it,
    /// and signatures stay in WebAssembly from then on): the answer as JSON text, or the handle
    /// again when the core needs more (`ask` again, or `resume`).
    pub fn answer_now(&self, handle: u32, verdict: JsValue) -> Result<JsValue, JsValue> {
        let mut pending = self.state.borrow_mut().pending.take(handle).ok_or_else(unknown_handle)?;
        let suspended = match std::mem::replace(&mut pending.step, Pass::Done(String::new())) {
            Pass::Ask(suspended) => suspended,
            step => {
                pending.step = step;
                self.state.borrow_mut().pending.put(handle, pending);
                return Err(js_sys::Error::new("authgate: answer_now() for a check that asked nothing").into());
            }
        };
        let verdict = match verdict.as_bool() {
            Some(valid) => {
                answered(&self.state, &self.hooks);
                Some(valid)
            }
            None => {
                runtime_failed(&self.state, &self.hooks, suspended.check(), &webcrypto::js_message(verdict));
                None
            }
        };
        pending.asks_left = pending.asks_left.saturating_sub(1);
        let step = {
            let mut s = self.state.borrow_mut();
            let algs = s.host_algs(pending.asks_left);
            suspended.resume(&mut s.gateway, verdict, now(), algs)
        };
        if let Pass::Done(json) = step {
            self.state.borrow_mut().pending.release(handle);
            material::start_due(&self.state, &self.hooks);
            return Ok(JsValue::from(json));
        }
        pending.step = step;
        self.state.borrow_mut().pending.put(handle, pending);
        Ok(JsValue::from(handle))
    }

    /// Finishes the pending `handle` whatever it needs (material, WebCrypto, several answers):
    /// resolves to the decision or token check as JSON text.
    pub fn resume(&self, handle: u32) -> Promise {
        let (state, hooks) = (self.state.clone(), self.hooks.clone());
        // Taken now, and the handle released: the loop owns what it finishes.
        let pending = {
            let mut s = self.state.borrow_mut();
            let pending = s.pending.take(handle).ok_or_else(unknown_handle);
            s.pending.release(handle);
            pending
        };
        future_to_promise(async move {
            let Pending { subject, step, asks_left } = pending?;
            let json = host_loop(&state, &hooks, &subject, step, asks_left).await;
            Ok(JsValue::from(json))
        })
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

impl Core {
    /// The first pass over `subject`: its answer, or a handle to what it waits for.
    fn first_pass(&self, subject: Subject) -> JsValue {
        let step = {
            let mut s = self.state.borrow_mut();
            let algs = s.host_algs(webcrypto::ASKS_PER_REQUEST);
            subject.pass(&mut s.gateway, now(), algs)
        };
        if let Pass::Done(json) = step {
            material::start_due(&self.state, &self.hooks);
            return JsValue::from(json);
        }
        let handle = self.state.borrow_mut().pending.insert(Pending { subject, step, asks_left: webcrypto::ASKS_PER_REQUEST });
        JsValue::from(handle)
    }
}

fn unknown_handle() -> JsValue {
    js_sys::Error::new("authgate: no pending decision under this handle").into()
}

impl State {
    /// The caller's request id when usable, else a new one.
    fn request_id<'h>(&mut self, mut headers: impl Iterator<Item = (&'h str, &'h str)>) -> String {
        let sent = headers.find(|(k, _)| k.eq_ignore_ascii_case(&self.request_id_header)).map(|(_, v)| v);
        self.ids.for_request(sent)
    }

    /// What a pass may hand to WebCrypto (this gateway's WebCrypto may have failed).
    fn host_algs(&self, asks_left: u8) -> HostAlgs {
        webcrypto::algs(self.webcrypto, asks_left)
    }
}

/// What one pass of the core said, in the terms the host loop acts on.
enum Pass {
    /// A signature for WebCrypto; the pass goes on from there with the verdict.
    Ask(Suspended),
    /// Material is on its way: wait for it (until then at most), then pass again from the start.
    Hold(UnixTime),
    /// The answer, as JSON text.
    Done(String),
}

fn decision_pass(step: Step, now: UnixTime) -> Pass {
    match step {
        Step::CheckSignature(s) => Pass::Ask(Suspended::Decision(s)),
        Step::Decided(Decision::Deny(Deny { hold_until: Some(until), .. })) if now < until => Pass::Hold(until),
        Step::Decided(decision) => Pass::Done(convert::decision(&decision)),
    }
}

fn token_pass(check: TokenCheck, now: UnixTime) -> Pass {
    match check {
        TokenCheck::CheckSignature(s) => Pass::Ask(Suspended::Token(s)),
        TokenCheck::Invalid { hold_until: Some(until), .. } if now < until => Pass::Hold(until),
        other => Pass::Done(convert::token_check(&other)),
    }
}

/// The host loop of decisions and token checks alike: what the core asks goes to WebCrypto (a
/// few asks at most, then the core checks the rest) and the pass resumes with the verdict, a
/// hold waits for material and passes again from the start, and whatever the core made due is
/// fetched in the background. `first` is where the last pass stopped.
async fn host_loop(state: &Shared, hooks: &Rc<Hooks>, subject: &Subject, first: Pass, mut asks_left: u8) -> String {
    let mut next = Some(first);
    loop {
        let step = match next.take() {
            Some(step) => step,
            None => {
                let mut s = state.borrow_mut();
                let algs = s.host_algs(asks_left);
                subject.pass(&mut s.gateway, now(), algs)
            }
        };
        match step {
            Pass::Ask(suspended) => {
                // WebCrypto failed since this check was asked for: the core checks it itself.
                let verdict = if state.borrow().webcrypto {
                    asks_left = asks_left.saturating_sub(1);
                    ask_runtime(state, hooks, suspended.check()).await
                } else {
                    None
                };
                let mut s = state.borrow_mut();
                let algs = s.host_algs(asks_left);
                next = Some(suspended.resume(&mut s.gateway, verdict, now(), algs));
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

/// WebCrypto's verdict on `check`; `None` (the core then checks it) if WebCrypto cannot
/// answer, and from then on every signature stays in the core.
async fn ask_runtime(state: &Shared, hooks: &Hooks, check: &SignatureCheck) -> Option<bool> {
    match webcrypto::verify(check).await {
        Ok(valid) => {
            answered(state, hooks);
            Some(valid)
        }
        Err(e) => {
            runtime_failed(state, hooks, check, &e);
            None
        }
    }
}

/// Counts a WebCrypto answer (logged the first time).
fn answered(state: &Shared, hooks: &Hooks) {
    state.borrow_mut().runtime_checks += 1;
    if webcrypto::first_answer() {
        hooks.log("info", "EdDSA, ES256 and RS256 signatures are checked by the runtime's WebCrypto");
    }
}

/// WebCrypto could not check `check`: every signature stays in WebAssembly from now on.
fn runtime_failed(state: &Shared, hooks: &Hooks, check: &SignatureCheck, why: &str) {
    state.borrow_mut().webcrypto = false;
    hooks.log(
        "warn",
        &format!("WebCrypto could not check a {} signature ({why}); signatures are checked in WebAssembly from now on", check.alg.as_str()),
    );
}
