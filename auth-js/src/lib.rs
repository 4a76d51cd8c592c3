//! # authgate-js
//!
//! authgate's verifier for JavaScript runtimes, as the npm package `@authgate/verifier`
//! (wasm-bindgen, built by `cargo xtask build-js` with wasm-pack): the gateways' config schema
//! and decisions, API keys and the signed revocation feed, for Node, Deno, Bun, browsers and
//! edge runtimes. A thin host around [`auth_core`], like the plugin and the worker:
//!
//! * [`host`]: the exported `Core` — one [`auth_core::Gateway`] and its host loop: decide (or
//!   check a token), hand signatures to the runtime's WebCrypto (`authgate-webcrypto`), hold a
//!   cold-start request until its material arrives;
//! * [`material`]: JWKS and feed fetched with the runtime's `fetch` when auth-core says they are
//!   due (single flight and backoff are auth-core's), the events logged;
//! * [`convert`]: the request in, decisions and identities out, as text ([`flat`]: the hot
//!   answers as NUL-separated fields);
//!
//! Decisions waiting for WebCrypto are kept in `authgate_webcrypto::Handles` slots.
//!
//! The JavaScript around it (`auth-js/js/`: loading the module, `Gateway`, timers, the Express
//! and Fetch-style middleware) is the package's public face; docs/npm-package.md describes it.

#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod flat;
#[cfg(target_arch = "wasm32")]
pub mod host;
#[cfg(target_arch = "wasm32")]
mod material;
