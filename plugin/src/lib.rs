//! # authgate-plugin
//!
//! authgate as a proxy-wasm filter (Envoy, Kong's ngx_wasm_module): a thin shell over
//! [`auth_core`]. Config in (the auth-core gateway document plus a `host` block), request
//! headers in, `decide` once, the decision out (identity headers or the error response); JWKS
//! and the revocation feed fetched with `dispatch_http_call` when auth-core says they are due.
//! All policy and timing is auth-core's.
//!
//! Envoy runs one VM per worker thread. One of them holds a lease in shared data and fetches for
//! all; the others apply what it publishes there ([`fleet`], [`shared`] and docs/plugin.md).
//!
//! The host-independent parts ([`settings`], [`fleet`], [`shared`], [`proxy_crypto`]) build and are tested
//! natively; the proxy-wasm glue ([`abi`] wrappers, `vm`, `filter`, `metrics`) only exists in
//! the `wasm32` build.

pub mod fleet;
pub mod proxy_crypto;
pub mod settings;
pub mod shared;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod vm;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(filter::Root::new()) });
}}
