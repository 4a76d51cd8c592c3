//! The proxy-wasm contexts: one root context per filter configuration and worker VM (config,
//! ticks, fetch answers) and one small HTTP context per request (one `decide`).

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

use auth_core::{host_error, Decision, Deny, ErrorCode, Request};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::abi::{self, Level, BUFFER_PLUGIN_CONFIGURATION, MAP_REQUEST_HEADERS};
use crate::config;
use crate::engine::{log, Engine};

type Shared = Rc<RefCell<Engine>>;

pub struct Root {
    engine: Option<Shared>,
}

impl Root {
    pub fn new() -> Root {
        Root { engine: None }
    }
}

/// A random id for this VM (WASI `random_get` seeds std's hasher keys).
fn vm_identity() -> u64 {
    RandomState::new().hash_one(abi::now_ms())
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                e.on_fetch_response(token_id, body_size);
            }
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                e.release_lease();
            }
        }
        true
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match abi::get_buffer(BUFFER_PLUGIN_CONFIGURATION, usize::MAX) {
            Ok(b) => b,
            Err(status) => {
                log(Level::Error, &format!("cannot read the plugin configuration (status {status})"));
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        let parsed = match config::parse(&bytes, &env) {
            Ok(p) => p,
            Err(e) => {
                // The line names the field: `providers[0].jwks_uri: must be an http:// ...`.
                log(Level::Error, &format!("invalid configuration: {e}"));
                return false;
            }
        };
        let tick_ms = parsed.host.tick_ms;
        let needs_ticks = !parsed.targets.is_empty();
        let summary = format!(
            "configured: {} provider(s), {} route(s), {} fetched source(s), tick {} ms",
            parsed.gateway.config().providers.len(),
            parsed.gateway.config().routes.len(),
            parsed.targets.len(),
            tick_ms
        );
        let engine = Engine::new(parsed, vm_identity(), abi::now_ms());
        if !engine.metrics.available() {
            log(Level::Info, "the host does not support metrics; counters are off");
        }
        if let Some(old) = self.engine.replace(Rc::new(RefCell::new(engine))) {
            if let Ok(mut e) = old.try_borrow_mut() {
                e.release_lease();
            }
        }
        if needs_ticks {
            if let Err(status) = abi::set_tick_period_ms(tick_ms as u32) {
                log(Level::Error, &format!("cannot set the tick period (status {status})"));
                return false;
            }
        }
        log(Level::Info, &summary);
        true
    }

    fn on_tick(&mut self) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                e.tick(abi::now_ms());
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { engine: self.engine.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    engine: Option<Shared>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = self.engine.as_ref() else {
            // Only reachable on a host that runs a filter whose configuration was refused.
            return deny(&host_error(ErrorCode::ConfigInvalid, "unconfigured"));
        };
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return deny(&host_error(ErrorCode::ConfigInvalid, "busy"));
        };
        let raw = match abi::get_header_pairs(MAP_REQUEST_HEADERS) {
            Ok(h) => h,
            Err(status) => {
                log(Level::Error, &format!("cannot read request headers (status {status})"));
                return deny(&host_error(ErrorCode::ConfigInvalid, &engine.make_request_id()));
            }
        };
        // Values are octets; a credential that is not UTF-8 is malformed either way, and the
        // replacement character keeps it so.
        let owned: Vec<(std::borrow::Cow<str>, std::borrow::Cow<str>)> =
            raw.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))).collect();
        let mut method = "";
        let mut path = "";
        let mut request_id = None;
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(owned.len());
        for (name, value) in &owned {
            match name.as_ref() {
                ":method" => method = value,
                ":path" => path = value,
                n if n.starts_with(':') => {}
                n => {
                    if n.eq_ignore_ascii_case(&engine.host.request_id_header) {
                        request_id = Some(value.as_ref());
                    }
                    // `decide` splits merged credential fields itself (auth_core::coalesce).
                    headers.push((n, value.as_ref()));
                }
            }
        }
        let usable = |id: &&str| id.bytes().any(|b| b.is_ascii_alphanumeric());
        let request_id = match request_id.filter(usable) {
            Some(id) => id.to_string(),
            None => engine.make_request_id(),
        };
        let now_ms = abi::now_ms();
        engine.before_request(now_ms);
        let decision = engine.gateway.decide(&Request { method, path, headers: &headers }, (now_ms / 1000) as i64, &request_id);
        let action = match &decision {
            Decision::Allow(allow) => {
                engine.metrics.allowed(allow.cache_hit);
                let mut ok = true;
                for name in &allow.remove_headers {
                    ok &= abi::remove_header(MAP_REQUEST_HEADERS, name).is_ok();
                }
                for (name, value) in allow.headers_to_set() {
                    ok &= abi::replace_header(MAP_REQUEST_HEADERS, name, value).is_ok();
                }
                if ok {
                    Action::Continue
                } else {
                    // Never forward a request whose identity headers could not be written.
                    log(Level::Error, "cannot rewrite request headers; refusing the request");
                    engine.metrics.denied(ErrorCode::ConfigInvalid);
                    deny(&host_error(ErrorCode::ConfigInvalid, &request_id))
                }
            }
            Decision::Deny(d) => {
                engine.metrics.denied(d.code);
                if d.status() >= 500 {
                    engine.log_unavailable(now_ms, &d.error_id, d.code.as_str());
                } else {
                    log(Level::Debug, &format!("request {} denied: {}", d.error_id, d.code));
                }
                deny(d)
            }
        };
        engine.after_request(now_ms);
        action
    }
}

/// Answers the request with the denial; the request goes no further.
fn deny(d: &Deny) -> Action {
    let headers = d.response_headers();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let details = format!("authgate_{}", d.code.as_str());
    if abi::send_local_response(d.status(), &details, &pairs, d.body().as_bytes()).is_err() {
        log(Level::Error, "cannot send the denial response");
    }
    Action::Pause
}
