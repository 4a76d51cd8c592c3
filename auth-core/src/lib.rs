//! # auth-core
//!
//! The sans-IO heart of authgate: verifies JWTs (EdDSA, ES256, RS256, HS256 from JWKS) and HMAC'd
//! API keys, applies the signed revocation feed, and decides per route. It never reads a clock,
//! a random source, the network, a file or the environment: the host passes the time
//! ([`UnixTime`]) and a request id in, and moves the bytes the core asks for. The same code runs
//! in the proxy-wasm plugin, the Cloudflare Worker, the `authgate` CLI and the auth-server.
//!
//! * [`Gateway`] — the orchestrator hosts drive (its module docs show the host loop): `decide`
//!   per request, the material calls (`poll_fetch`, `handle_fetch`, `apply_material`,
//!   `poll_event`, `poll_timeout`).
//! * [`Verifier`] — credential in, identity or a typed error out, without routes (the
//!   auth-server's checks); [`RevocationList`] — the revocation verdict.
//! * [`credential::extract`] — the one credential of a request's headers.

#![forbid(unsafe_code)]

pub mod apikey;
pub mod b64;
mod cache;
pub mod coalesce;
pub mod config;
pub mod cookie;
pub mod credential;
mod decision;
mod error;
mod fetch;
pub mod formats;
mod gateway;
mod headers;
pub mod host_crypto;
pub mod inspect;
pub mod jwt;
mod keys;
mod mac;
pub mod material;
pub mod objects;
mod outage;
pub mod path;
pub mod request_id;
mod revocation;
mod route;
mod time;
pub mod url;
mod validate;
mod verifier;

pub use cache::TokenCache;
pub use config::{Alg, CookieConfig, CredentialKind, GatewayConfig, StalePolicy, VerifierConfig};
pub use credential::Credential;
pub use decision::{host_error, Allow, Decision, Deny, Identity, Request};
pub use error::{ConfigError, ErrorCode};
pub use fetch::{FetchId, FetchRequest, Source};
pub use gateway::{Gateway, GatewayStatus, SourceStatus, Step, SuspendedDecision, TokenCheck};
pub use headers::forwarded_value;
pub use host_crypto::{HostAlgs, HostCrypto, HostKey, SignatureAnswer, SignatureCheck};
pub use keys::JwksError;
pub use material::{FetchFailure, FetchResponse, MaterialCopy, MaterialEvent, PendingReason, RejectReason, Severity, SourceInfo, Via};
pub use outage::OutageLog;
pub use revocation::RevocationList;
pub use route::{METHOD_OVERRIDE_HEADERS, METHOD_OVERRIDE_PARAM};
pub use time::UnixTime;
pub use verifier::{Interrupt, Rejection, SuspendedToken, Verified, Verifier};
