//! Command line: `serve` (default), `migrate`, `admin` (create-user, create-org, grant-role,
//! revoke-role: the operator's own authority, docs/authority.md), `clients`, `keys rotate`,
//! `gateway-config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use auth_core::config::{
    ApiKeysConfig, CacheConfig, FeedCredential, FetchPolicy, GatewayConfig, HeaderNames, HmacKeyConfig, Limits, ProviderConfig,
    Requirement, RevocationsConfig, RouteConfig,
};
use auth_core::{Alg, CookieConfig, StalePolicy};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::audit::{Action, Event, Who};
use crate::config::Config;
use crate::crypto::{self, SigAlg};
use crate::db::now;

#[derive(Parser)]
#[command(name = "auth-server", version, about = "authgate auth-server")]
struct Cli {
    /// TOML config file (environment variables override it).
    #[arg(long, global = true, env = "AUTHGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Registered clients (machine clients, and apps of the OpenID Connect provider) of any
    /// organisation: the operator's side of `/v1/clients`.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Organisations: list, suspend (every credential of the organisation refused, through the
    /// revocation feed), reinstate. `admin create-org` creates one.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a ready gateway config (auth-core schema) for the plugin, the worker and the CLI.
    /// Mints a gateway API key (role `gateway`) for the revocation feed unless --no-credential.
    GatewayConfig {
        /// Name of the gateway's feed credential (shown in key listings).
        #[arg(long, default_value = "gateway")]
        name: String,
        /// Leave the credential out (inject it from a secret store instead).
        #[arg(long)]
        no_credential: bool,
        /// Feed poll interval in seconds.
        #[arg(long, default_value_t = 5)]
        refresh_s: u64,
    },
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Every organisation as JSON lines (id, name, created_at, suspended_at, members).
    List,
    /// Suspend an organisation (not the operator organisation).
    Suspend {
        #[arg(long)]
        org: String,
    },
    /// Reinstate a suspended organisation.
    Reinstate {
        #[arg(long)]
        org: String,
    },
    /// Set an organisation's sign-in rules: the methods allowed (repeatable: password,
    /// email_otp, totp, passkey, sso) and whether two factors are required; prints them.
    SetAuth {
        #[arg(long)]
        org: String,
        #[arg(long = "method", required = true)]
        methods: Vec<String>,
        #[arg(long)]
        mfa_required: bool,
    },
    /// Mark an organisation's claim on an email domain verified (the operator vouches): its
    /// rules then govern every address of the domain.
    VerifyDomain {
        #[arg(long)]
        org: String,
        #[arg(long)]
        domain: String,
    },
    /// Connect an identity provider to an organisation (as `POST /v1/orgs/{id}/connections`);
    /// the client secret, if any, from AUTHGATE_CLIENT_SECRET. Prints the connection.
    AddConnection {
        #[arg(long)]
        org: String,
        /// oidc, google, microsoft, entra, github or saml.
        #[arg(long, default_value = "oidc")]
        kind: String,
        #[arg(long)]
        name: String,
        /// Required for oidc; the presets know theirs (saml: the IdP's entity id, default its
        /// metadata's).
        #[arg(long)]
        issuer: Option<String>,
        /// Required but for saml.
        #[arg(long, default_value = "")]
        client_id: String,
        /// saml: a file holding the IdP's metadata (its entity id, sign-on URL, certificates).
        #[arg(long)]
        saml_metadata: Option<std::path::PathBuf>,
        /// Entra ID: a tenant whose people it signs in (repeatable).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// A role the members it adds get (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Sign in only people who have an account.
        #[arg(long)]
        no_create_accounts: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print events as JSON lines, newest first: every organisation's and the platform's, or
    /// those of one organisation.
    Export {
        #[arg(long)]
        org: Option<String>,
        /// An action (`login.failed`) or a family of them (`login.`).
        #[arg(long)]
        action: Option<String>,
        /// Only events at or after this unix time.
        #[arg(long)]
        since: Option<i64>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a verified user (admin by default). The password is read from
    /// AUTHGATE_NEW_PASSWORD or the first line of standard input. Roles: tenant roles
    /// (`roles.tenant`), and platform roles for members of the operator organisation.
    CreateUser {
        #[arg(long)]
        email: String,
        /// Roles to grant (repeatable); default: admin.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Organisation id; default: the default organisation (`--org` with the operator
        /// organisation's id, `platform.operator_org`, for platform roles).
        #[arg(long)]
        org: Option<String>,
    },
    /// Create an organisation (tenant); prints its id.
    CreateOrg {
        #[arg(long)]
        name: String,
    },
    /// Add an existing account to an organisation, with roles (none by default); they pick it
    /// at their next login.
    AddMember {
        #[arg(long)]
        email: String,
        #[arg(long)]
        org: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Grant roles to a member (tenant roles; platform roles only in the operator organisation).
    GrantRole {
        #[arg(long)]
        email: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The organisation; needed when the account belongs to several.
        #[arg(long)]
        org: Option<String>,
    },
    /// Take roles from a member; their API keys for that organisation carrying one are revoked.
    RevokeRole {
        #[arg(long)]
        email: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The organisation; needed when the account belongs to several.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client; prints it with its secret (shown once). With --redirect-uri: an app
    /// of the authorization-code flow; without: a machine client (`client_credentials`).
    Create {
        /// Organisation id.
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may return to (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (single-page or native app): no secret, PKCE always.
        #[arg(long)]
        public: bool,
        /// The organisation's own app: its members are not asked for consent.
        #[arg(long)]
        first_party: bool,
        /// The client's own scopes (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Roles of a machine client's tokens (repeatable; tenant roles, platform roles only
        /// in the operator organisation).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// EdDSA, ES256 or RS256 (one of the server's ID-token algorithms).
        #[arg(long)]
        id_token_alg: Option<String>,
    },
    /// List an organisation's clients (never their secrets).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a client: its tokens and every session it holds end.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key: published in the JWKS now, signing after --activate-in seconds;
    /// older keys leave the JWKS once tokens they signed have expired.
    Rotate {
        /// EdDSA, ES256, RS256 or HS256; default: tokens.alg.
        #[arg(long)]
        alg: Option<String>,
        /// Seconds until the new key signs (let gateways fetch the JWKS first).
        #[arg(long, default_value_t = 600)]
        activate_in: i64,
    },
    /// Import a signing key made elsewhere (migrating from another issuer): published in the
    /// JWKS at once, signing after --activate-in seconds; nothing is retired.
    Import {
        /// EdDSA, ES256, RS256 or HS256.
        #[arg(long)]
        alg: String,
        /// The key id its tokens carry.
        #[arg(long)]
        kid: String,
        /// PKCS#8 PEM private key (EdDSA, ES256, RS256), or the base64url secret (HS256); `-`
        /// reads standard input.
        #[arg(long, value_name = "FILE")]
        private_key: PathBuf,
        /// Seconds until it signs (let gateways fetch the JWKS first).
        #[arg(long, default_value_t = 600)]
        activate_in: i64,
    },
    /// List the signing keys.
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("auth-server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cfg).await,
            Command::Migrate => {
                let db = crate::db::connect(&cfg).await?;
                crate::db::migrate(&db, &cfg).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Admin { command: AdminCommand::CreateUser { email, roles, org } } => create_user(cfg, email, roles, org).await,
            Command::Admin { command: AdminCommand::CreateOrg { name } } => create_org(cfg, name).await,
            Command::Admin { command: AdminCommand::AddMember { email, org, roles } } => add_member(cfg, email, org, roles).await,
            Command::Admin { command: AdminCommand::GrantRole { email, roles, org } } => change_roles(cfg, email, roles, org, true).await,
            Command::Admin { command: AdminCommand::RevokeRole { email, roles, org } } => change_roles(cfg, email, roles, org, false).await,
            Command::Keys { command } => keys(cfg, command).await,
            Command::Clients { command } => clients(cfg, command).await,
            Command::Orgs { command } => orgs(cfg, command).await,
            Command::Audit { command: AuditCommand::Export { org, action, since } } => audit_export(cfg, org, action, since).await,
            Command::GatewayConfig { name, no_credential, refresh_s } => gateway_config(cfg, name, no_credential, refresh_s).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "auth-server failed");
            eprintln!("auth-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AUTHGATE_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])?
        .install_recorder()?;
    let listen: SocketAddr = cfg.listen.parse()?;
    let app = App::build(cfg, Some(recorder)).await?;
    app.spawn_upkeep();
    crate::webhooks::spawn(app.clone());
    let router = crate::http::router(app.clone())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    if let Some(addr) = &app.cfg.metrics.listen {
        let metrics =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("metrics.listen: cannot listen on {addr}: {e}"))?;
        tracing::info!(listen = %metrics.local_addr()?, "metrics listener");
        let router = crate::http::metrics_router(app.clone());
        // Ends with the process (after the main listener drained).
        tokio::spawn(async move { axum::serve(metrics, router).await });
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        issuer = %app.cfg.public_url,
        database = if app.cfg.is_postgres() { "postgres" } else { "sqlite" },
        ephemeral = app.eph.backend(),
        email = if app.cfg.email.smtp_url.is_some() { "smtp" } else { "outbox" },
        "auth-server listening"
    );
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("auth-server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested: draining in-flight requests");
}

async fn create_user(cfg: Config, email: String, roles: Vec<String>, org: Option<String>) -> anyhow::Result<()> {
    let email = crate::users::normalize_email(&email).ok_or_else(|| anyhow::anyhow!("--email: not a valid email address"))?;
    let password = match std::env::var("AUTHGATE_NEW_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let app = App::build(cfg, None).await?;
    app.hasher.check_policy(&password, &email).map_err(|e| anyhow::anyhow!("password: {}", e.message()))?;
    let roles = if roles.is_empty() { vec![crate::authority::TENANT_ADMIN.to_string()] } else { roles };
    let org = org.unwrap_or_else(|| crate::db::DEFAULT_ORG.to_string());
    for r in &roles {
        crate::authority::operator_may_grant(&app.cfg, &org, r).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    }
    let hash = app.hasher.hash(&password).await?;
    let id = crypto::new_id("usr");
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    known_org(&mut *tx, &org).await?;
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(&email).fetch_optional(&mut *tx).await?;
    if taken.is_some() {
        anyhow::bail!("--email: an account with this address exists");
    }
    sqlx::query(
        "INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, verified_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, 'active', 'none', $5, $5, $5)",
    )
    .bind(&id)
    .bind(&email)
    .bind(&org)
    .bind(&hash)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    crate::members::add(&mut tx, &id, &org, &roles, t).await?;
    Event::new(Action::UserCreated, Some(&org), Who::Operator)
        .target("user", &id)
        .data(serde_json::json!({ "via": "operator", "roles": roles }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    println!("{}", serde_json::json!({"user_id": id, "email": email, "org_id": org, "roles": roles}));
    Ok(())
}

/// `--org` names an organisation that exists.
async fn known_org<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, org: &str) -> anyhow::Result<()> {
    if !crate::http::orgs::exists(db, org).await? {
        anyhow::bail!("--org {org}: no such organisation");
    }
    Ok(())
}

async fn create_org(cfg: Config, name: String) -> anyhow::Result<()> {
    let name = name.trim().to_string();
    if !crate::users::valid_name(&name) {
        anyhow::bail!("--name: 1 to 100 characters, no control characters");
    }
    let app = App::build(cfg, None).await?;
    let org = crate::http::orgs::create_org(&app, &name, Who::Operator).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::json!({"org_id": org.id, "name": org.name}));
    Ok(())
}

async fn orgs(cfg: Config, command: OrgsCommand) -> anyhow::Result<()> {
    use crate::http::orgs::{list_orgs, reinstate_org, suspend_org};
    let app = App::build(cfg, None).await?;
    let api = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    match command {
        OrgsCommand::List => {
            let mut after: Option<String> = None;
            loop {
                let page = list_orgs(&app, after.as_deref(), 500).await.map_err(api)?;
                for o in &page {
                    println!("{}", serde_json::to_string(o)?);
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        OrgsCommand::Suspend { org } => {
            suspend_org(&app, &org, Who::Operator).await.map_err(|e| anyhow::anyhow!("--org {org}: {e}"))?;
            println!("{}", serde_json::json!({"org_id": org, "suspended": true}));
        }
        OrgsCommand::Reinstate { org } => {
            reinstate_org(&app, &org, Who::Operator).await.map_err(|e| anyhow::anyhow!("--org {org}: {e}"))?;
            println!("{}", serde_json::json!({"org_id": org, "suspended": false}));
        }
        OrgsCommand::SetAuth { org, methods, mfa_required } => {
            known_org(&app.db, &org).await?;
            let rules = crate::org_auth::Rules { methods, mfa_required };
            let rules = crate::org_auth::set_rules(&app, &org, rules, Who::Operator).await.map_err(|e| anyhow::anyhow!("--method: {e}"))?;
            println!("{}", serde_json::json!({"org_id": org, "methods": rules.methods, "mfa_required": rules.mfa_required}));
        }
        OrgsCommand::VerifyDomain { org, domain } => {
            let d = crate::org_auth::verify_domain(&app, &org, &domain, Who::Operator)
                .await
                .map_err(|e| anyhow::anyhow!("--domain {domain}: {e}"))?;
            println!("{}", serde_json::json!({"org_id": org, "domain": d.domain, "verified_at": d.verified_at}));
        }
        OrgsCommand::AddConnection { org, kind, name, issuer, client_id, saml_metadata, tenants, roles, no_create_accounts } => {
            known_org(&app.db, &org).await?;
            for r in &roles {
                crate::authority::operator_may_grant(&app.cfg, &org, r).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            }
            let kind = serde_json::from_value(serde_json::json!(kind))
                .map_err(|_| anyhow::anyhow!("--kind: one of oidc, google, microsoft, entra, github, saml"))?;
            let saml = match saml_metadata {
                Some(path) => {
                    let metadata =
                        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("--saml-metadata {}: {e}", path.display()))?;
                    Some(crate::federation::NewSaml { metadata: Some(metadata), ..Default::default() })
                }
                None => None,
            };
            let req = crate::federation::NewConnection {
                kind,
                name,
                issuer,
                client_id,
                client_secret: std::env::var("AUTHGATE_CLIENT_SECRET").ok(),
                scopes: None,
                tenants,
                create_accounts: !no_create_accounts,
                roles,
                saml,
            };
            let c = crate::federation::create(&app, &org, req, Who::Operator).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string(&c)?);
        }
    }
    Ok(())
}

async fn add_member(cfg: Config, email: String, org: String, roles: Vec<String>) -> anyhow::Result<()> {
    let email = crate::users::normalize_email(&email).ok_or_else(|| anyhow::anyhow!("--email: not a valid email address"))?;
    let app = App::build(cfg, None).await?;
    let user = crate::users::by_email(&app.db, &email).await?.ok_or_else(|| anyhow::anyhow!("--email: no such account"))?;
    for r in &roles {
        crate::authority::operator_may_grant(&app.cfg, &org, r).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    }
    let t = now();
    let mut tx = crate::db::begin_write(&app.db).await?;
    known_org(&mut *tx, &org).await?;
    if crate::members::belongs(&mut *tx, &user.id, &org).await? {
        anyhow::bail!("--org {org}: the account already belongs to it (grant-role changes its roles)");
    }
    crate::members::add(&mut tx, &user.id, &org, &roles, t).await?;
    Event::new(Action::MemberAdded, Some(&org), Who::Operator)
        .target("user", &user.id)
        .data(serde_json::json!({ "via": "operator", "roles": roles }))
        .write(&mut tx)
        .await?;
    tx.commit().await?;
    println!("{}", serde_json::json!({"user_id": user.id, "email": user.email, "org_id": org, "roles": roles}));
    Ok(())
}

/// The organisation an operator command means: `--org`, or the account's only one.
async fn member_org(app: &App, user: &crate::users::User, org: Option<String>) -> anyhow::Result<String> {
    let all = crate::members::of_user(&app.db, &user.id).await?;
    match org {
        Some(o) if all.iter().any(|m| m.org_id == o) => Ok(o),
        Some(o) => anyhow::bail!("--org {o}: the account does not belong to it"),
        None if all.len() == 1 => Ok(all[0].org_id.clone()),
        None if all.is_empty() => anyhow::bail!("--email: the account belongs to no organisation"),
        None => anyhow::bail!(
            "--org: the account belongs to several organisations ({})",
            all.iter().map(|m| m.org_id.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

async fn change_roles(cfg: Config, email: String, roles: Vec<String>, org: Option<String>, grant: bool) -> anyhow::Result<()> {
    let email = crate::users::normalize_email(&email).ok_or_else(|| anyhow::anyhow!("--email: not a valid email address"))?;
    let app = App::build(cfg, None).await?;
    let user = crate::users::by_email(&app.db, &email).await?.ok_or_else(|| anyhow::anyhow!("--email: no such account"))?;
    let org = member_org(&app, &user, org).await?;
    if grant {
        for r in &roles {
            crate::authority::operator_may_grant(&app.cfg, &org, r).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
        }
    }
    let mut now_held: std::collections::BTreeSet<String> = crate::members::roles(&app.db, &user.id, &org).await?.into_iter().collect();
    for r in roles {
        if grant {
            now_held.insert(r);
        } else {
            now_held.remove(&r);
        }
    }
    // The operator may make any change its own rules allow (checked above for grants).
    crate::http::users::replace_roles(&app, &user.id, &org, &now_held, |_| Ok(()), Who::Operator)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::json!({"user_id": user.id, "email": user.email, "org_id": org, "roles": now_held}));
    Ok(())
}

async fn clients(cfg: Config, command: ClientsCommand) -> anyhow::Result<()> {
    use crate::http::clients::{list_org, register, revoke_client, CreateClientRequest};
    let app = App::build(cfg, None).await?;
    let api = |e: crate::error::ApiError| anyhow::anyhow!("{}: {}", e.code, e.message);
    match command {
        ClientsCommand::Create {
            org,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            first_party,
            scopes,
            roles,
            id_token_alg,
        } => {
            known_org(&app.db, &org).await?;
            for r in &roles {
                crate::authority::operator_may_grant(&app.cfg, &org, r).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            }
            let req = CreateClientRequest {
                name,
                roles,
                scopes,
                grant_types: None,
                redirect_uris,
                post_logout_redirect_uris,
                public,
                first_party,
                require_pkce: None,
                id_token_alg,
                access_ttl_s: None,
                refresh_ttl_s: None,
            };
            let created = register(&app, &org, None, req).await.map_err(api)?;
            println!("{}", serde_json::to_string(&created)?);
        }
        ClientsCommand::List { org } => println!("{}", serde_json::to_string(&list_org(&app, &org).await.map_err(api)?)?),
        ClientsCommand::Revoke { id } => {
            revoke_client(&app, &id, None, crate::audit::Who::Operator).await.map_err(api)?;
            println!("{}", serde_json::json!({"client_id": id, "revoked": true}));
        }
    }
    Ok(())
}

async fn audit_export(cfg: Config, org: Option<String>, action: Option<String>, since: Option<i64>) -> anyhow::Result<()> {
    use std::io::Write;
    if action.as_deref().is_some_and(|a| !crate::audit::valid_action_filter(a)) {
        anyhow::bail!("--action: an action code (login.failed) or a family (login.)");
    }
    let app = App::build(cfg, None).await?;
    let mut f = crate::audit::Filter { org, action, since, ..Default::default() };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let page = crate::audit::read(&app.db, &f, 1000).await?;
        for e in &page {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        match page.last() {
            Some(last) if page.len() == 1000 => f.before = Some(last.id.clone()),
            _ => break,
        }
    }
    out.flush()?;
    Ok(())
}

async fn keys(cfg: Config, command: KeysCommand) -> anyhow::Result<()> {
    let app = App::build(cfg, None).await?;
    match command {
        KeysCommand::Rotate { alg, activate_in } => {
            let alg = match alg {
                Some(a) => SigAlg::parse(&a).ok_or_else(|| anyhow::anyhow!("--alg: one of EdDSA, ES256, RS256, HS256"))?,
                None => app.keys.alg(),
            };
            // Old keys stay published while tokens and feeds they signed can still be in use.
            let retire_after = app.cfg.tokens.access_ttl_s.max(app.cfg.feed.ttl_s) + 60;
            let (kid, activates, retires) = app.keys.rotate(alg, activate_in, retire_after).await?;
            Event::new(Action::SigningKeysRotated, None, Who::Operator)
                .target("signing_key", &kid)
                .data(serde_json::json!({ "alg": alg.as_str(), "activates_at": activates, "previous_keys_retire_at": retires }))
                .write_alone(&app.db)
                .await?;
            println!(
                "{}",
                serde_json::json!({"kid": kid, "alg": alg.as_str(), "activates_at": activates, "previous_keys_retire_at": retires})
            );
        }
        KeysCommand::Import { alg, kid, private_key, activate_in } => {
            let alg = SigAlg::parse(&alg).ok_or_else(|| anyhow::anyhow!("--alg: one of EdDSA, ES256, RS256, HS256"))?;
            let text = if private_key.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(&private_key).map_err(|e| anyhow::anyhow!("--private-key {}: {e}", private_key.display()))?
            };
            let key = crypto::SigningKey::import(&kid, alg, &text).map_err(|e| anyhow::anyhow!("--private-key: {e}"))?;
            let (kid, activates) = app.keys.import(key, activate_in).await?;
            Event::new(Action::SigningKeysRotated, None, Who::Operator)
                .target("signing_key", &kid)
                .data(serde_json::json!({ "alg": alg.as_str(), "activates_at": activates, "imported": true }))
                .write_alone(&app.db)
                .await?;
            println!("{}", serde_json::json!({"kid": kid, "alg": alg.as_str(), "activates_at": activates}));
        }
        KeysCommand::List => {
            let rows: Vec<(String, String, i64, i64, Option<i64>)> =
                sqlx::query_as("SELECT kid, alg, created_at, activates_at, retires_at FROM signing_keys ORDER BY activates_at")
                    .fetch_all(&app.db)
                    .await?;
            for (kid, alg, created, activates, retires) in rows {
                println!(
                    "{}",
                    serde_json::json!({"kid": kid, "alg": alg, "created_at": created, "activates_at": activates, "retires_at": retires})
                );
            }
        }
    }
    Ok(())
}

async fn gateway_config(cfg: Config, name: String, no_credential: bool, refresh_s: u64) -> anyhow::Result<()> {
    let app = App::build(cfg, None).await?;
    let base = app.cfg.public_url.clone();
    let set = app.keys.get();
    let mut algs: Vec<Alg> = set.keys.iter().map(|k| k.key.alg.core()).collect();
    algs.sort_by_key(|a| a.as_str());
    algs.dedup();
    let symmetric: Vec<serde_json::Value> = set.keys.iter().filter_map(|k| k.key.secret_jwk()).collect();
    let has_public = set.keys.iter().any(|k| k.key.public_jwk().is_some());
    let provider = ProviderConfig {
        issuer: base.clone(),
        audiences: vec![app.cfg.tokens.audience.clone()],
        // HS256 keys are secrets: they can only be handed over inline.
        jwks: (!symmetric.is_empty()).then(|| serde_json::json!({"keys": symmetric})),
        jwks_uri: has_public.then(|| format!("{base}/.well-known/jwks.json")),
        algorithms: algs,
        clock_skew_s: 30,
        typ: Some(vec!["at+jwt".into()]),
        // The server signs ES256 with low s (crypto::SigningKey::sign_bytes).
        es256_accept_high_s: false,
    };
    let credential = if no_credential {
        None
    } else {
        let (_, key_id, secret) =
            crate::http::apikeys::insert_key(&app, &format!("gateway:{name}"), None, None, &name, vec!["gateway".into()], None).await?;
        Some(FeedCredential { key_id, secret })
    };
    let config = GatewayConfig {
        providers: vec![provider],
        api_keys: Some(ApiKeysConfig {
            hmac_keys: app
                .hmac_keys
                .iter()
                .map(|(kid, secret)| HmacKeyConfig { kid: kid.clone(), secret: auth_core::b64::encode(secret) })
                .collect(),
        }),
        revocations: Some(RevocationsConfig { uri: format!("{base}/v1/revocations"), refresh_s, issuer: Some(base.clone()), credential }),
        routes: vec![RouteConfig {
            prefix: Some("/".into()),
            path: None,
            methods: None,
            require: Requirement::Authenticated,
            credentials: None,
            on_stale: StalePolicy::FailClosed,
            strip_credential: false,
        }],
        headers: HeaderNames::default(),
        fetch: FetchPolicy::default(),
        cache: CacheConfig::default(),
        limits: Limits::default(),
        // Cookie-mode logins are only useful if the gateways in front of the web app read the
        // same cookies and hold their requests to the same CSRF rule.
        cookie: app.cfg.cookies.enabled.then(|| {
            let names = crate::http::auth::cookie_names(&app);
            let mut allowed_origins = vec![app.cfg.public_origin()];
            allowed_origins.extend(app.cfg.cookies.allowed_origins.iter().cloned());
            CookieConfig { name: names.access, csrf_cookie: names.csrf, csrf_header: "x-csrf-token".into(), allowed_origins }
        }),
    };
    // What we print must load in the gateways: validate with the same code they run.
    auth_core::Gateway::new(config.clone()).map_err(|e| anyhow::anyhow!("generated gateway config does not validate: {e}"))?;
    println!("{}", config.to_json_pretty());
    Ok(())
}
