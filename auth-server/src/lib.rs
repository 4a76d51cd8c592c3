//! # auth-server
//!
//! Issues everything authgate's gateways verify: accounts with email verification, multi-step
//! login, sessions with rotating refresh tokens, access JWTs, HMAC'd API keys, the signed
//! revocation feed, JWKS; plus the CLI to run and operate it. See docs/auth-server.md.
//!
//! A library for its binary (`src/main.rs`) and, built with `--cfg fuzzing`, for the fuzz targets
//! in `auth-server/fuzz` ([`fuzz`]); nothing else is public.

mod app;
mod audit;
mod authority;
mod cli;
mod codes;
mod config;
mod crypto;
mod db;
mod dns;
mod egress;
mod ephemeral;
mod error;
mod federation;
mod files;
mod http;
mod keys;
mod lockout;
mod mail;
mod mail_html;
mod members;
mod notify;
mod oidc;
mod openapi;
mod org_auth;
mod pages;
mod passkeys;
mod passwords;
mod revocations;
mod sessions;
mod users;
mod webhooks;

#[cfg(test)]
mod tests;

/// The entry points the fuzz targets drive: the parsers of what identity providers and
/// browsers send, on the paths the server takes. Built by `cargo fuzz` (`--cfg fuzzing`) and
/// by the tests that check the targets reach acceptance from their seeds.
#[cfg(any(test, fuzzing))]
pub mod fuzz;

/// The `auth-server` command: parses the command line and runs it.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
