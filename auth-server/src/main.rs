//! # auth-server
//!
//! Issues everything authgate's gateways verify: accounts with email verification, multi-step
//! login, sessions with rotating refresh tokens, access JWTs, HMAC'd API keys, the signed
//! revocation feed, JWKS; plus the CLI to run and operate it. See docs/auth-server.md.

mod app;
mod cli;
mod codes;
mod config;
mod crypto;
mod db;
mod ephemeral;
mod error;
mod http;
mod keys;
mod mail;
mod openapi;
mod passwords;
mod revocations;
mod sessions;
mod users;

fn main() -> std::process::ExitCode {
    cli::main()
}
