//! `cargo xtask up`: authgate running locally on 127.0.0.1 with embedded defaults.
//!
//! * auth-server on :8080 (SQLite and an email outbox under ./data),
//! * a demo upstream on :8001 that echoes the request it got (so you see the x-auth-* headers),
//! * Envoy on :8000 (admin :9901) with the authgate filter from docs/envoy/, configured from
//!   `auth-server gateway-config`,
//! * the edge worker in workerd on :8787 (Miniflare, tests/worker/driver.mjs) in front of the
//!   same upstream, configured from the same document,
//! * a demo OpenID Connect provider on :9400 (PyPI `oidc-provider-mock`, from the tests'
//!   requirements) connected to a "Demo SSO" organisation that holds `sso-demo.test`: sign in as
//!   `alice@sso-demo.test` through it,
//!
//! Ctrl-C stops everything: the children share this process group.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{build, cargo, run, tools};

const SERVER: &str = "http://127.0.0.1:8080";
const UPSTREAM_PORT: u16 = 8001;
const ENVOY: &str = "http://127.0.0.1:8000";
const WORKER: &str = "http://127.0.0.1:8787";
const DEMO_IDP: &str = "http://127.0.0.1:9400";
const DEMO_DOMAIN: &str = "sso-demo.test";

struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn up(root: &Path) -> Result<(), String> {
    tools::setup(root)?;
    // What users deploy: release builds (the first run takes a few minutes longer).
    run(cargo().args(["build", "--release", "-p", "auth-server", "-p", "authgate"]))?;
    let wasm = build::plugin(root)?;
    let worker_build = build::worker(root)?;
    let target = build::target_dir(root);
    let server_bin = target.join("release/auth-server");
    let state = root.join("data/up");
    std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;

    let mut children = Children(Vec::new());
    std::thread::spawn(|| echo_upstream(UPSTREAM_PORT));

    let server_log = std::fs::File::create(state.join("auth-server.log")).map_err(|e| e.to_string())?;
    let server = Command::new(&server_bin)
        .current_dir(root)
        // The demo identity provider is plain http on this machine: allowed here, never by default.
        .envs(DEMO_IDP_ENV)
        .stdout(server_log.try_clone().map_err(|e| e.to_string())?)
        .stderr(server_log)
        .spawn()
        .map_err(|e| format!("{}: {e}", server_bin.display()))?;
    children.0.push(("auth-server".into(), server));
    wait_http(&format!("{SERVER}/readyz"), Duration::from_secs(60), &mut children)?;

    let idp = start_demo_idp(root, &state)?;
    children.0.push(("demo identity provider".into(), idp));
    wait_http(&format!("{DEMO_IDP}/.well-known/openid-configuration"), Duration::from_secs(30), &mut children)?;
    connect_demo_idp(root, &server_bin, &state)?;

    // The gateway config comes from the running server: issuer, JWKS URI, HMAC ring, feed and
    // a gateway credential.
    let out = Command::new(&server_bin)
        .current_dir(root)
        .args(["gateway-config", "--name", "local-envoy"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("auth-server gateway-config: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let gateway = String::from_utf8(out.stdout).map_err(|e| e.to_string())?;
    std::fs::write(state.join("gateway.json"), &gateway).map_err(|e| e.to_string())?;

    let envoy = start_envoy(root, &state, &wasm, &gateway)?;
    children.0.push(("envoy".into(), envoy));
    wait_http("http://127.0.0.1:9901/ready", Duration::from_secs(60), &mut children)?;
    wait_http(&format!("{ENVOY}/healthz"), Duration::from_secs(30), &mut children)?;

    let worker = start_worker(root, &state, &worker_build, &gateway)?;
    children.0.push(("edge-worker".into(), worker));
    wait_http(&format!("{WORKER}/healthz"), Duration::from_secs(60), &mut children)?;

    print_walkthrough(root, &state, Some(WORKER));
    loop {
        std::thread::sleep(Duration::from_millis(500));
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status}); its log is in {}", state.display()));
            }
        }
    }
}

const DEMO_IDP_ENV: [(&str, &str); 2] =
    [("AUTHGATE_FEDERATION__ALLOW_HTTP", "true"), ("AUTHGATE_FEDERATION__ALLOW_PRIVATE_ADDRESSES", "true")];

/// `oidc-provider-mock` with one person ready to sign in with a click.
fn start_demo_idp(root: &Path, state: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(state.join("demo-idp.log")).map_err(|e| e.to_string())?;
    let alice = format!(r#"{{"sub": "alice", "email": "alice@{DEMO_DOMAIN}", "email_verified": true, "name": "Alice Demo"}}"#);
    Command::new(root.join(".venv/bin/python"))
        .args(["-m", "oidc_provider_mock", "--port", "9400", "--user-claims", &alice])
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("demo identity provider: {e}"))
}

/// Once per data directory: the "Demo SSO" organisation, holding the demo domain, with the demo
/// provider connected (its members get the `reader` role).
fn connect_demo_idp(root: &Path, server_bin: &Path, state: &Path) -> Result<(), String> {
    let marker = state.join("demo-sso.json");
    if marker.exists() {
        return Ok(());
    }
    let cli = |args: &[&str]| -> Result<String, String> {
        // The demo provider takes any client secret (it has no public clients).
        let out = Command::new(server_bin)
            .current_dir(root)
            .envs(DEMO_IDP_ENV)
            .env("AUTHGATE_CLIENT_SECRET", "demo-secret")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("auth-server {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8(out.stdout).map_err(|e| e.to_string())
    };
    let org = cli(&["admin", "create-org", "--name", "Demo SSO"])?;
    let org_id = org.split("\"org_id\":\"").nth(1).and_then(|r| r.split('"').next()).ok_or_else(|| format!("create-org printed {org}"))?;
    cli(&["orgs", "verify-domain", "--org", org_id, "--domain", DEMO_DOMAIN])?;
    let conn = cli(&[
        "orgs",
        "add-connection",
        "--org",
        org_id,
        "--name",
        "Demo SSO",
        "--issuer",
        DEMO_IDP,
        "--client-id",
        "authgate-demo",
        "--role",
        "reader",
    ])?;
    std::fs::write(&marker, conn).map_err(|e| e.to_string())
}

fn start_envoy(root: &Path, state: &Path, wasm: &Path, gateway: &str) -> Result<Child, String> {
    let docs = root.join("docs/envoy");
    let mut config: serde_like::Object = serde_like::parse_object(gateway)?;
    config.insert_first("host", &format!(r#"{{"upstreams": {{"{SERVER}": "authgate_issuer"}}, "request_id_header": "x-request-id"}}"#));
    let filter = std::fs::read_to_string(docs.join("authgate-filter.yaml")).map_err(|e| e.to_string())?;
    let filter = replace_once(&filter, "/etc/authgate/authgate_plugin.wasm", &wasm.display().to_string())?;
    let (head, _) = filter.split_once("        value: |\n").ok_or("authgate-filter.yaml: no configuration value block")?;
    let body: String = config.render().lines().map(|l| format!("          {l}\n")).collect();
    let filter_path = state.join("authgate-filter.yaml");
    std::fs::write(&filter_path, format!("{head}        value: |\n{body}")).map_err(|e| e.to_string())?;

    let envoy = std::fs::read_to_string(docs.join("envoy.yaml")).map_err(|e| e.to_string())?;
    let envoy = replace_once(&envoy, "path: /etc/authgate/authgate-filter.yaml", &format!("path: {}", filter_path.display()))?;
    let envoy =
        replace_once(&envoy, "watched_directory: { path: /etc/authgate }", &format!("watched_directory: {{ path: {} }}", state.display()))?;
    let envoy = envoy.replace("address: 0.0.0.0", "address: 127.0.0.1");
    let config_path = state.join("envoy.yaml");
    std::fs::write(&config_path, envoy).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(state.join("envoy-access.log")).map_err(|e| e.to_string())?;
    Command::new(root.join(".venv/bin/envoy"))
        .arg("-c")
        .arg(&config_path)
        .args(["--concurrency", "2", "--disable-hot-restart", "-l", "warning", "--log-path"])
        .arg(state.join("envoy.log"))
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("envoy: {e}"))
}

/// workerd through Miniflare (the driver the worker tests use), with wrangler.toml's
/// compatibility date; the gateway document goes in `AUTHGATE_CONFIG` as in `wrangler dev`.
fn start_worker(root: &Path, state: &Path, build_dir: &Path, gateway: &str) -> Result<Child, String> {
    let wrangler = std::fs::read_to_string(root.join("wrangler.toml")).map_err(|e| e.to_string())?;
    let date = wrangler
        .lines()
        .find_map(|l| l.trim().strip_prefix("compatibility_date = \"")?.strip_suffix('"'))
        .ok_or("wrangler.toml: no compatibility_date")?;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let options = format!(
        r#"{{"scriptPath": "{}", "modulesRoot": "{}", "compatibilityDate": "{date}", "port": 8787,
  "ready": "{}", "cachePersist": "{}",
  "bindings": {{"AUTHGATE_CONFIG": "{}", "AUTHGATE_ORIGIN": "http://127.0.0.1:{UPSTREAM_PORT}"}}}}"#,
        esc(&build_dir.join("index.js").display().to_string()),
        esc(&build_dir.display().to_string()),
        esc(&state.join("worker-ready.json").display().to_string()),
        esc(&state.join("worker-cache").display().to_string()),
        esc(gateway),
    );
    let options_path = state.join("worker-options.json");
    std::fs::write(&options_path, options).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(state.join("edge-worker.log")).map_err(|e| e.to_string())?;
    Command::new("node")
        .arg(root.join("tests/worker/driver.mjs"))
        .arg(&options_path)
        // The driver stops workerd when its stdin closes, i.e. when `up` ends.
        .stdin(std::process::Stdio::piped())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .spawn()
        .map_err(|e| format!("node (edge worker): {e}"))
}

fn replace_once(text: &str, old: &str, new: &str) -> Result<String, String> {
    match text.matches(old).count() {
        1 => Ok(text.replacen(old, new, 1)),
        n => Err(format!("expected exactly one {old:?} in the example config, found {n}")),
    }
}

/// Just enough JSON handling for adding a top-level member without a JSON dependency: the
/// document comes from `gateway-config` and is validated again by the filter when it loads.
mod serde_like {
    pub struct Object(String);

    pub fn parse_object(text: &str) -> Result<Object, String> {
        let t = text.trim();
        if t.starts_with('{') && t.ends_with('}') {
            Ok(Object(t.to_string()))
        } else {
            Err("gateway-config did not print a JSON object".into())
        }
    }

    impl Object {
        pub fn insert_first(&mut self, key: &str, value_json: &str) {
            let rest = self.0[1..].trim_start();
            let sep = if rest.starts_with('}') { "" } else { "," };
            self.0 = format!("{{\n  \"{key}\": {value_json}{sep}\n  {rest}");
        }

        pub fn render(&self) -> String {
            self.0.clone()
        }
    }
}

/// Waits until `url` answers. Any status will do for the gateways (a 401 proves they are
/// up); the auth-server's /readyz must say 200.
fn wait_http(url: &str, timeout: Duration, children: &mut Children) -> Result<(), String> {
    let start = Instant::now();
    let must_be_ok = url.ends_with("/readyz");
    while start.elapsed() < timeout {
        if http_get_status(url).is_some_and(|s| !must_be_ok || s == 200) {
            return Ok(());
        }
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status}) while starting"));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{url} did not answer within {}s", timeout.as_secs()))
}

/// `GET url` (plain http on 127.0.0.1) → status code.
pub fn http_get_status(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The demo upstream: answers every request with what it received, as JSON.
fn echo_upstream(port: u16) {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
        eprintln!("demo upstream: port {port} is taken");
        return;
    };
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = echo_one(stream);
        });
    }
}

fn echo_one(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let header_json: Vec<String> = headers.iter().map(|(k, v)| format!("    \"{}\": \"{}\"", esc(k), esc(v))).collect();
    let json = format!(
        "{{\n  \"upstream\": \"authgate demo upstream\",\n  \"method\": \"{}\",\n  \"path\": \"{}\",\n  \"body_bytes\": {},\n  \"headers\": {{\n{}\n  }}\n}}\n",
        esc(method),
        esc(path),
        body.len(),
        header_json.join(",\n")
    );
    let mut stream = stream;
    write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}", json.len())
}

fn print_walkthrough(root: &Path, state: &Path, worker: Option<&str>) {
    let outbox: PathBuf = root.join("data/outbox");
    let worker_line = match worker {
        Some(url) => format!("  edge worker  {url}   (workerd via Miniflare, same upstream)\n"),
        None => String::new(),
    };
    let through_worker = worker
        .map(|url| format!("curl -s {url}/hello -H \"authorization: Bearer $TOKEN\"   # the same through the edge worker\n"))
        .unwrap_or_default();
    println!(
        r#"
authgate is running on 127.0.0.1 (Ctrl-C stops everything)
  auth-server  {SERVER}   (SQLite in data/, OpenAPI at {SERVER}/openapi.json)
  pages        {SERVER}/signup   (sign up, sign in, API keys, in a browser; codes arrive as emails below)
  Envoy        {ENVOY}   (authgate filter; admin and stats at http://127.0.0.1:9901/stats?filter=authgate)
{worker_line}  upstream     http://127.0.0.1:{UPSTREAM_PORT}   (echoes what it receives)
  demo IdP     {DEMO_IDP}   (OpenID Connect provider for the "Demo SSO" organisation)
  emails       {outbox}/*.eml
  logs, configs {state}

Single sign-on: open {SERVER}/login, enter alice@{DEMO_DOMAIN}, choose "Sign in with Demo SSO",
then "alice" at the demo provider ({DEMO_IDP}): the account is created in the "Demo SSO"
organisation on first sight.

In a browser: open {SERVER}/signup, sign up with the code from the newest email in
{outbox}, sign in, create an API key on the account page, then (a new key passes the
gateways once their next revocation feed has it, within seconds; until then 401 api_key_pending):
curl -s {ENVOY}/hello -H "authorization: ApiKey <the key shown once>"

Walk-through with curl (copy-paste):

EMAIL=you@example.com PASSWORD='correct horse battery staple'
curl -s -XPOST {SERVER}/v1/users -H 'content-type: application/json' \
  -d "{{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}}" | tee /tmp/signup.json
CODE=$(grep -ho '[0-9]\{{6,8\}}' $(ls -t {outbox}/*.eml | head -1) | head -1)
curl -s -XPOST {SERVER}/v1/users/verify -H 'content-type: application/json' \
  -d "{{\"verification_id\":\"$(python3 -c 'import json;print(json.load(open("/tmp/signup.json"))["verification_id"])')\",\"code\":\"$CODE\"}}"
curl -s -XPOST {SERVER}/v1/sessions -H 'content-type: application/json' \
  -d "{{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}}" | tee /tmp/login.json
CODE=$(grep -ho '[0-9]\{{6,8\}}' $(ls -t {outbox}/*.eml | head -1) | head -1)
TOKEN=$(curl -s -XPOST {SERVER}/v1/sessions/verify -H 'content-type: application/json' \
  -d "{{\"verification_id\":\"$(python3 -c 'import json;print(json.load(open("/tmp/login.json"))["verification_id"])')\",\"code\":\"$CODE\"}}" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
curl -s {ENVOY}/hello -H "authorization: Bearer $TOKEN"    # 200: the upstream shows x-auth-subject, x-auth-roles ...
curl -si {ENVOY}/hello | head -8                          # 401 with x-error, x-error-id, x-error-code
{through_worker}"#,
        outbox = outbox.display(),
        state = state.display(),
    );
}
