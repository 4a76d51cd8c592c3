//! `authgate`: the gateway decision engine on the command line. Same config, same code as the
//! Envoy plugin and the edge worker; the CLI is just another host that reads files and the clock.
//!
//! Exit codes: 0 allow / ok, 1 deny, 2 usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Read;

use auth_core::{Decision, Gateway, MaterialEvent, Request, Source, UnixTime};
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Parser)]
#[command(name = "authgate", version, about = "Check gateway configs, decide requests, inspect credentials")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one request against a gateway config; prints the decision as JSON.
    Verify {
        /// The gateway config (JSON): the document the plugin and the worker read.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Unix time to decide at (default: now).
        #[arg(long)]
        now: Option<i64>,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// A request header, `name: value`; repeatable. As with curl, `@FILE` reads one header per
        /// line from a file and `@-` from standard input (for values longer than a command line).
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE | @FILE | @-")]
        headers: Vec<String>,
        /// A JWKS for providers[N] with a jwks_uri, as `N=FILE`; repeatable.
        #[arg(long = "jwks", value_name = "N=FILE")]
        jwks: Vec<String>,
        /// A revocation feed (compact JWS) to apply first.
        #[arg(long)]
        feed: Option<PathBuf>,
        /// Request id reported as x-error-id.
        #[arg(long, default_value = "authgate-cli")]
        request_id: String,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Decode a JWT or API key id WITHOUT verifying it.
    Inspect { credential: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a gateway config with the gateways' own code; errors name the field.
    Check {
        file: PathBuf,
        /// The file is the proxy-wasm plugin's configuration (the gateway document plus its
        /// `host` block), checked exactly as the plugin checks it in Envoy or Kong.
        #[arg(long)]
        plugin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("authgate: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &PathBuf) -> Result<Gateway, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Gateway::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Config { command: ConfigCommand::Check { file, plugin } } => {
            let gw = if plugin {
                let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                // Environment variables the plugin would read (host.feed_credential_env) are read here too.
                let env = |name: &str| std::env::var(name).ok();
                authgate_plugin::settings::parse(&bytes, &env).map_err(|e| format!("{}: {e}", file.display()))?.gateway
            } else {
                load(&file)?
            };
            let cfg = gw.config();
            println!(
                "{}: ok ({} providers, {} HMAC keys, {} routes, revocation feed {})",
                file.display(),
                cfg.providers.len(),
                cfg.api_keys.as_ref().map_or(0, |k| k.hmac_keys.len()),
                cfg.routes.len(),
                if cfg.revocations.is_some() { "on" } else { "off" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { credential } => {
            let decoded = auth_core::inspect::decode_unverified(&credential)?;
            eprintln!("authgate: decoded only; the signature and claims were NOT verified");
            println!("{}", serde_json::to_string_pretty(&decoded).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { config, now, method, path, headers, jwks, feed, request_id } => {
            let now = UnixTime::from_secs(now.unwrap_or_else(unix_now));
            let mut gw = load(&config)?;
            let parsed = read_headers(&headers)?;
            for spec in &jwks {
                let (index, file) = spec.split_once('=').ok_or_else(|| format!("--jwks {spec}: expected N=FILE"))?;
                let index: usize = index.parse().map_err(|_| format!("--jwks {spec}: N must be a provider index"))?;
                let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
                apply(&mut gw, Source::Jwks(index), &body, now).map_err(|e| format!("{file}: {e}"))?;
            }
            if let Some(file) = &feed {
                let body = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
                apply(&mut gw, Source::Revocations, &body, now).map_err(|e| format!("{}: {e}", file.display()))?;
            }
            let header_refs: Vec<(&str, &str)> = parsed.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let decision = gw.decide(&Request { method: &method, path: &path, headers: &header_refs }, now, &request_id);
            println!("{}", serde_json::to_string_pretty(&decision_json(&decision)).unwrap_or_default());
            Ok(if decision.is_allow() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// Hands material to the gateway as a host does; an error says why it was not applied.
fn apply(gw: &mut Gateway, source: Source, body: &[u8], now: UnixTime) -> Result<(), String> {
    gw.apply_material(source, body, now, now);
    let mut outcome = Err(format!("{} was not applied", source.key()));
    while let Some(event) = gw.poll_event() {
        match event {
            MaterialEvent::Applied { source: s, .. } | MaterialEvent::Confirmed { source: s, .. } if s == source => outcome = Ok(()),
            MaterialEvent::KeptPending { source: s, .. } | MaterialEvent::Rejected { source: s, .. } if s == source => {
                outcome = Err(event.to_string())
            }
            _ => {}
        }
    }
    outcome
}

/// `-H` values: `name: value`, or `@FILE` / `@-` with one header per line.
fn read_headers(specs: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let text = match spec.strip_prefix('@') {
            None => {
                out.push(parse_header(spec)?);
                continue;
            }
            Some("-") => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| format!("-H @-: {e}"))?;
                text
            }
            Some(file) => std::fs::read_to_string(file).map_err(|e| format!("-H @{file}: {e}"))?,
        };
        for line in text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty()) {
            out.push(parse_header(line)?);
        }
    }
    Ok(out)
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    let shown: String = raw.chars().take(60).collect();
    let (name, value) = raw.split_once(':').ok_or_else(|| format!("-H {shown:?}: expected 'name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("-H {shown:?}: bad header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn decision_json(decision: &Decision) -> Value {
    let removed: Vec<&str> = decision.headers_to_remove().iter().map(|h| h.as_ref()).collect();
    match decision {
        Decision::Allow(allow) => {
            let headers: Map<String, Value> =
                allow.headers_to_set().into_iter().map(|(k, v)| (k.to_string(), Value::from(v.into_owned()))).collect();
            let identity = allow.identity.as_deref().map(|id| {
                json!({
                    "method": id.kind.as_str(),
                    "subject": id.subject,
                    "org": id.org,
                    "email": id.email,
                    "roles": id.roles().collect::<Vec<_>>(),
                    "scopes": id.scopes().collect::<Vec<_>>(),
                    "session_id": id.session_id,
                    "key_id": id.key_id,
                    "issuer": id.issuer,
                    "client_id": id.client_id,
                    "expires_at": id.expires_at,
                    "issued_at": id.issued_at,
                })
            });
            json!({"allow": true, "status": 200, "code": null, "route": allow.route, "identity": identity,
                   "headers": headers, "remove_headers": removed})
        }
        Decision::Deny(deny) => {
            let headers: Map<String, Value> = deny.response_headers().into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect();
            json!({"allow": false, "status": deny.status(), "code": deny.code.as_str(), "identity": null,
                   "headers": headers, "remove_headers": removed,
                   "body": serde_json::from_str::<Value>(&deny.body()).unwrap_or(Value::Null)})
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
