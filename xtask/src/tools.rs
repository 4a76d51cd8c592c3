//! Machine set-up: every external tool and its pinned version, in one place.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, run};

pub const WASM_TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The edge worker's build tools (installed under `<target>/tools`). `wasm-bindgen-cli` must be
/// exactly the `wasm-bindgen` of Cargo.lock (set-up checks); it is installed without `--locked`.
pub const WASM_BINDGEN_CLI_VERSION: &str = "0.2.130";
pub const WORKER_BUILD_VERSION: &str = "0.8.7";
/// Builds the npm package (auth-js) with the same `wasm-bindgen-cli`; installed under the same
/// root as the worker's tools.
pub const WASM_PACK_VERSION: &str = "0.15.1";
/// Mutation testing (`cargo xtask mutants`); installed on first use, not by `setup`.
pub const CARGO_MUTANTS_VERSION: &str = "27.1.0";

/// The browser of the hosted-pages suite: Debian's Chromium (apt), which Playwright (PyPI)
/// drives as the system browser, so nothing is downloaded from outside a package registry.
/// Pinned to a lowest major version, not an exact build: Debian's security archive keeps only
/// its latest Chromium, so an exact pin stops installing the day a fix replaces it (156.0.8078.114
/// did, on 2026-12-06). Set-up installs the distribution's current build, and refuses one older
/// than this.
pub const CHROMIUM_APT_MIN_MAJOR: u32 = 156;

/// Idempotent: installs only what is missing or at the wrong version.
pub fn setup(root: &Path) -> Result<(), String> {
    apt_packages()?;
    rust_targets()?;
    python_venv(root)?;
    npm_tools(root)?;
    worker_tools(root)?;
    if !fuzz_targets(root).is_empty() {
        nightly()?;
        cargo_fuzz()?;
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rust_targets() -> Result<(), String> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    let missing: Vec<&str> = WASM_TARGETS.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add"]).args(&missing))
}

/// Debian packages: the browser (pinned), the C libraries webauthn-rs and samael link (OpenSSL;
/// libxmlsec1 and libxml2 for SAML's XML signatures, found with pkg-config, their bindings made
/// with libclang; the distribution's security updates decide their versions).
fn apt_packages() -> Result<(), String> {
    let installed = |name: &str| output(Command::new("dpkg-query").args(["-W", "-f=${Status} ${Version}", name]));
    let mut wanted = Vec::new();
    let browser = installed("chromium").and_then(|s| s.strip_prefix("install ok installed ").map(str::to_string));
    if !browser.as_deref().is_some_and(chromium_recent) {
        wanted.push("chromium".to_string());
    }
    for lib in ["libssl-dev", "pkg-config", "libxmlsec1-dev", "libxml2-dev", "libclang-dev"] {
        if !installed(lib).is_some_and(|s| s.starts_with("install ok installed")) {
            wanted.push(lib.to_string());
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let install = || {
        if wanted.iter().any(|w| w == "chromium") {
            let candidate = output(Command::new("apt-cache").args(["policy", "chromium"])).and_then(|p| apt_candidate(&p));
            match candidate {
                Some(v) if chromium_recent(&v) => {}
                other => {
                    return Err(format!(
                        "apt offers chromium {}, older than the lowest supported major {CHROMIUM_APT_MIN_MAJOR} (xtask/src/tools.rs)",
                        other.as_deref().unwrap_or("(none)")
                    ))
                }
            }
        }
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&wanted)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    // A fresh machine may not have read its package lists yet.
    install().or_else(|_| run(Command::new("apt-get").args(["update", "-q"])).and_then(|_| install()))
}

/// A Chromium version (Debian's form, `156.0.8078.129-1~deb12u1`) of at least the lowest
/// supported major.
fn chromium_recent(version: &str) -> bool {
    version.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|major| major >= CHROMIUM_APT_MIN_MAJOR)
}

/// The `Candidate:` of `apt-cache policy` output, if there is one.
fn apt_candidate(policy: &str) -> Option<String> {
    let v = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (v != "(none)").then(|| v.to_string())
}

fn nightly() -> Result<(), String> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        return Ok(());
    }
    run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

/// `cargo` through the rustup proxy with a toolchain override; the variables cargo sets for
/// xtask would otherwise pin the child to xtask's own toolchain.
fn rustup_cargo(toolchain: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}"));
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO", "RUSTC_WRAPPER", "CARGO_MANIFEST_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

fn cargo_fuzz() -> Result<(), String> {
    let version = output(rustup_cargo("nightly").args(["fuzz", "--version"])).unwrap_or_default();
    if version.contains(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    run(cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))
}

/// tools/node_modules from tools/package-lock.json (binaryen's wasm-opt, pinned); re-installed
/// when the lock file changes.
fn npm_tools(root: &Path) -> Result<(), String> {
    let tools = root.join("tools");
    let lock = std::fs::read_to_string(tools.join("package-lock.json")).map_err(|e| format!("tools/package-lock.json: {e}"))?;
    let stamp = tools.join("node_modules/.authgate-lock");
    if tools.join("node_modules/.bin/wasm-opt").exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return Ok(());
    }
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&tools))?;
    std::fs::write(&stamp, lock).map_err(|e| e.to_string())
}

/// Where `cargo install` puts a pinned tool: `<target>/tools/<crate>-<version>/bin/<bin>`.
/// Where a pinned cargo-installed tool lives: `$CARGO_HOME/authgate-tools/<crate>-<version>`,
/// per user rather than per checkout, so a fresh clone does not compile it again.
pub fn cargo_tool(_root: &Path, krate: &str, version: &str, bin: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"));
    cargo_home.join("authgate-tools").join(format!("{krate}-{version}")).join("bin").join(bin)
}

/// `wasm-bindgen-cli` (matching Cargo.lock) and `worker-build`, for the edge worker; `wasm-pack`
/// for the npm package.
fn worker_tools(root: &Path) -> Result<(), String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let locked = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasm-bindgen\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"')));
    if locked != Some(WASM_BINDGEN_CLI_VERSION) {
        return Err(format!(
            "Cargo.lock has wasm-bindgen {locked:?} but xtask pins wasm-bindgen-cli {WASM_BINDGEN_CLI_VERSION}: they must be equal"
        ));
    }
    for (krate, version, bin, locked) in [
        ("wasm-bindgen-cli", WASM_BINDGEN_CLI_VERSION, "wasm-bindgen", false),
        ("worker-build", WORKER_BUILD_VERSION, "worker-build", true),
        ("wasm-pack", WASM_PACK_VERSION, "wasm-pack", true),
    ] {
        let path = cargo_tool(root, krate, version, bin);
        if path.exists() {
            continue;
        }
        let install_root = path.parent().and_then(Path::parent).expect("<root>/bin/<bin>");
        let mut cmd = cargo();
        cmd.args(["install", krate, "--version", version, "--root"]).arg(install_root);
        if locked {
            cmd.arg("--locked");
        }
        run(&mut cmd)?;
    }
    Ok(())
}

pub fn venv_python(root: &Path) -> PathBuf {
    root.join(".venv/bin/python")
}

/// `.venv` with tests/requirements.txt installed; re-installs when the requirements change.
fn python_venv(root: &Path) -> Result<(), String> {
    let python = venv_python(root);
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(root.join(".venv")))?;
    }
    let mut wanted = String::new();
    collect_requirements(&root.join("tests/requirements.txt"), &mut wanted)?;
    let stamp = root.join(".venv/.authgate-requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(root.join("tests/requirements.txt")))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())
}

fn collect_requirements(file: &Path, out: &mut String) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    for line in text.lines() {
        if let Some(nested) = line.trim().strip_prefix("-r ") {
            collect_requirements(&file.parent().unwrap().join(nested.trim()), out)?;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

/// The cargo-fuzz projects: auth-core's parsers and decisions, the auth-server's parsers of what
/// identity providers and browsers send.
pub const FUZZ_DIRS: &[&str] = &["fuzz", "auth-server/fuzz"];

/// Every fuzz target as (its project, its name), in a stable order.
pub fn fuzz_targets(root: &Path) -> Vec<(&'static str, String)> {
    let mut targets = Vec::new();
    for dir in FUZZ_DIRS {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir).join("fuzz_targets"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".rs")).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        targets.extend(names.into_iter().map(|n| (*dir, n)));
    }
    targets
}

/// One target of the project `dir` for `seconds`, from its corpus and its committed seeds.
pub fn fuzz(root: &Path, dir: &str, target: &str, seconds: u32) -> Result<(), String> {
    let project = root.join(dir);
    let corpus = project.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
    let seeds = project.join("seeds").join(target);
    let mut cmd = rustup_cargo("nightly");
    cmd.current_dir(&project).args(["fuzz", "run", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"]);
    run(&mut cmd)
}

/// Test directories holding pytest suites (a `conftest.py`), in a stable order.
pub fn pytest_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("conftest.py").exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// `cargo mutants` at the pinned version (installed on first use) over auth-core, or the package
/// `args` name with `-p`, with `args` passed on (`--file auth-core/src/path.rs`, `--in-diff
/// changes.diff`, …). Property tests run with 16 cases per mutant: they catch what they catch at
/// 16, and a run stays within reach.
pub fn mutants(root: &Path, args: &[String]) -> Result<(), String> {
    let bin = cargo_tool(root, "cargo-mutants", CARGO_MUTANTS_VERSION, "cargo-mutants");
    if !bin.exists() {
        let install_root = bin.parent().and_then(Path::parent).expect("<root>/bin/<bin>");
        run(cargo().args(["install", "cargo-mutants", "--locked", "--version", CARGO_MUTANTS_VERSION, "--root"]).arg(install_root))?;
    }
    run(Command::new(&bin)
        .arg("mutants")
        .args(if args.iter().any(|a| a == "-p" || a == "--package") { &[][..] } else { &["-p", "auth-core"][..] })
        // Not the fuzz projects' build directories and growing corpora (.gitignore'd).
        .args(["--gitignore", "true", "--timeout", "120", "--output"])
        .arg(root.join("target/mutants"))
        .args(args)
        .env("PROPTEST_CASES", "16")
        .current_dir(root))
}
