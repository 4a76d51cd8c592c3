//! The proxy-wasm contexts: one root context per filter configuration and worker VM (config,
//! ticks, fetch answers) and one small HTTP context per request (one decision, through the VM).

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

use auth_core::{host_error, ErrorCode};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::abi::{self, Level, BUFFER_PLUGIN_CONFIGURATION};
use crate::settings;
use crate::vm::{answer, log, now, Outcome, Vm};

type Shared = Rc<RefCell<Vm>>;

pub struct Root {
    vm: Option<Shared>,
}

impl Root {
    pub fn new() -> Root {
        Root { vm: None }
    }

    fn with_vm(&self, f: impl FnOnce(&mut Vm)) {
        if let Some(vm) = &self.vm {
            if let Ok(mut vm) = vm.try_borrow_mut() {
                f(&mut vm);
            }
        }
    }
}

/// A random id for this VM (WASI `random_get` seeds std's hasher keys).
fn vm_identity() -> u64 {
    RandomState::new().hash_one(abi::now_ms())
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        self.with_vm(|vm| vm.on_fetch_response(token_id, body_size));
    }

    fn on_done(&mut self) -> bool {
        self.with_vm(Vm::release);
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
        let parsed = match settings::parse(&bytes, &env) {
            Ok(p) => p,
            Err(e) => {
                // The line names the field: `providers[0].jwks_uri: must be an http:// ...`.
                log(Level::Error, &format!("invalid configuration: {e}"));
                return false;
            }
        };
        let tick_ms = parsed.proxy.tick_ms;
        let fetches = !parsed.upstreams.is_empty();
        let config = parsed.gateway.config();
        let summary = format!(
            "configured: {} provider(s), {} route(s), {} fetched source(s), tick {tick_ms} ms",
            config.providers.len(),
            config.routes.len(),
            parsed.upstreams.len()
        );
        let vm = Vm::new(parsed, vm_identity());
        let vm_has_metrics = vm.metrics.available();
        if !vm_has_metrics {
            log(Level::Info, "the host does not support metrics; counters are off");
        }
        if let Some(old) = self.vm.replace(Rc::new(RefCell::new(vm))) {
            if let Ok(mut old) = old.try_borrow_mut() {
                old.release();
            }
        }
        // Ticks drive fetching and hand the counters to the host.
        if fetches || vm_has_metrics {
            if let Err(status) = abi::set_tick_period_ms(tick_ms as u32) {
                log(Level::Error, &format!("cannot set the tick period (status {status})"));
                return false;
            }
        }
        log(Level::Info, &summary);
        true
    }

    fn on_tick(&mut self) {
        self.with_vm(|vm| vm.tick(now()));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { vm: self.vm.clone(), context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    vm: Option<Shared>,
    context_id: u32,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.as_ref() else {
            // Only reachable on a host that runs a filter whose configuration was refused.
            answer(&host_error(ErrorCode::ConfigInvalid, "unconfigured", None));
            return Action::Pause;
        };
        let Ok(mut vm) = vm.try_borrow_mut() else {
            answer(&host_error(ErrorCode::ConfigInvalid, "busy", None));
            return Action::Pause;
        };
        match vm.on_request(self.context_id) {
            Outcome::Continue => Action::Continue,
            Outcome::Answered | Outcome::Held => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        if let Some(vm) = &self.vm {
            if let Ok(mut vm) = vm.try_borrow_mut() {
                vm.forget(self.context_id);
            }
        }
    }
}
