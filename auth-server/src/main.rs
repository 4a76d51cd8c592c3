//! # auth-server
//!
//! Issues everything authgate's gateways verify: accounts with email verification, multi-step
//! login, sessions with rotating refresh tokens, access JWTs, HMAC'd API keys, the signed
//! revocation feed, JWKS; plus the CLI to run and operate it. See docs/auth-server.md.

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

fn main() -> std::process::ExitCode {
    limit_retained_memory();
    cli::main()
}

/// argon2id allocates `argon2_memory_kib` (19 MiB by default) per hash on the blocking pool.
/// glibc's dynamic mmap threshold would soon serve such blocks from per-thread arenas and keep
/// them after they are freed (hundreds of MB after a burst of logins). A fixed threshold makes
/// every large block a fresh mapping that goes back to the OS when freed.
fn limit_retained_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
