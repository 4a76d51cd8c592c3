//! # authgate-edge-worker
//!
//! authgate as a Cloudflare Worker: an edge gateway in front of an origin, a thin workers-rs
//! shell over [`auth_core`]. Configuration from the environment ([`settings`]), request headers
//! in, `decide` once, then either the request forwarded to the origin with identity headers set
//! and client-sent `x-auth-*` removed (body streamed through untouched), or the same denial the
//! proxy-wasm plugin answers. JWKS and the revocation feed are fetched with `fetch` when
//! auth-core says they are due, kept in module scope across requests and in the Cache API so a
//! new isolate starts warm; a cron trigger keeps them fresh. All policy and timing is auth-core's.
//!
//! The host-independent parts ([`settings`], [`cache`]: what is kept in the Cache API and what
//! may come out of it) build and are tested natively; the Workers glue only exists in the
//! `wasm32` build (see docs/edge-worker.md).

pub mod cache;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod host;
