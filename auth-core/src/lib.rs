//! # auth-core
//!
//! The sans-IO heart of authgate: verifies JWTs (EdDSA, ES256, RS256, HS256 from JWKS) and HMAC'd
//! API keys, applies the signed revocation feed, and decides per route. It never reads a clock,
//! a random source, the network, a file or the environment: the host passes `now` (unix seconds)
//! and a request id in, and moves the bytes the core asks for. The same code runs in the
//! proxy-wasm plugin, the Cloudflare Worker and the `authgate` CLI.
//!
//! ```text
//! let mut gw = Gateway::from_json(config_bytes)?;
//! loop {
//!     while let Some(fetch) = gw.poll_fetch(now) { host.start(fetch) }      // JWKS, feed
//!     on fetch done: gw.handle_fetch(id, FetchResponse { status, body, etag }, now)
//!     on request:    match gw.decide(&request, now, request_id) { Allow(a) => .., Deny(d) => .. }
//!     sleep until gw.poll_timeout()
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]
#![allow(missing_debug_implementations)]

pub mod apikey;
pub mod b64;
mod cache;
pub mod coalesce;
pub mod config;
mod cookie;
mod decision;
mod error;
mod fetch;
pub mod formats;
mod gateway;
pub mod inspect;
pub mod jwt;
mod keys;
mod revocation;
mod route;

pub use config::{Alg, CookieConfig, CredentialKind, GatewayConfig, StalePolicy};
pub use decision::{host_error, Allow, Decision, Deny, Identity, Request};
pub use error::{ConfigError, ErrorCode};
pub use fetch::{FetchId, FetchRequest, Source};
pub use gateway::{Applied, FetchResponse, Gateway, GatewayStatus, MaterialError, SourceStatus};
pub use keys::JwksError;
