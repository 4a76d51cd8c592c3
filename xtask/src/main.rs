//! `cargo xtask` — the project's two commands and what they need.
//!
//! * `cargo xtask up`    — set up this machine (idempotent) and run authgate locally.
//! * `cargo xtask test`  — set up this machine and run every test suite, ending with a summary.
//! * `cargo xtask setup` — only the set-up part.
//! * `cargo xtask build-plugin` — build and optimise the proxy-wasm plugin (target/authgate_plugin.wasm).
//! * `cargo xtask build-worker` — build the Cloudflare Worker (edge-worker/build).
//! * `cargo xtask build-js` — build the npm package (target/npm/package and its tarball).
//! * `cargo xtask mutants [args]` — mutation testing of auth-core, or `-p auth-server` (docs/testing.md); not part of `test`.
//!
//! Every tool version is pinned in `tools.rs`; everything comes from crates.io, PyPI, npm or
//! Debian's packages, never from a download URL.

mod build;
mod tools;
mod up;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root).expect("cd to the project root");
    let result = match args.first().map(String::as_str) {
        Some("setup") => tools::setup(&root),
        Some("test") => test(&root, &args[1..]),
        Some("up") => up::up(&root),
        Some("build-plugin") => tools::setup(&root).and_then(|()| build::plugin(&root)).map(|_| ()),
        Some("build-worker") => tools::setup(&root).and_then(|()| build::worker(&root)).map(|_| ()),
        Some("build-js") => tools::setup(&root).and_then(|()| build::npm_package(&root)).map(|_| ()),
        Some("mutants") => tools::mutants(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup|up|test|build-plugin|build-worker|build-js|mutants> [--quick]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs a command, inheriting stdio; `Err` names it when it fails.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} exited with {status}"))
    }
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

struct Suite {
    results: Vec<(String, Result<(), String>, f64)>,
}

impl Suite {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        let secs = start.elapsed().as_secs_f64();
        match &result {
            Ok(()) => println!("<== {name}: ok ({secs:.1}s)"),
            Err(e) => println!("<== {name}: FAILED ({secs:.1}s): {e}"),
        }
        self.results.push((name.to_string(), result, secs));
    }
}

fn test(root: &Path, args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    tools::setup(root)?;
    let mut suite = Suite { results: Vec::new() };

    suite.step("cargo test --workspace", || run(cargo().args(["test", "--workspace"])));

    // Both signature backends: RustCrypto (what WebAssembly hosts fall back to) and `ring`
    // (native builds); each also through the host-crypto step (tests/conformance.rs).
    suite.step("conformance vectors minted now by the independent Python minter, RustCrypto and ring", || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let out = root.join("target/conformance-fresh.json");
        run(Command::new(tools::venv_python(root))
            .arg("tests/conformance/mint.py")
            .args(["--now", &now.to_string(), "--jwks-mode", "inline", "--out"])
            .arg(&out))?;
        run(cargo().args(["test", "-p", "auth-core", "--test", "conformance"]).env("AUTHGATE_VECTORS", &out))?;
        run(cargo().args(["test", "-p", "auth-core", "--features", "ring", "--test", "conformance"]).env("AUTHGATE_VECTORS", &out))
    });

    for target in tools::WASM_TARGETS {
        suite.step(&format!("auth-core builds for {target}"), || {
            run(cargo().args(["build", "--release", "-p", "auth-core", "--target", target]))
        });
    }
    suite.step("auth-core has no wasm-bindgen / js-sys / getrandom in its tree", || {
        let out = cargo()
            .args(["tree", "-p", "auth-core", "--target", "wasm32-unknown-unknown", "-e", "normal,build", "--prefix", "none"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let banned: Vec<&str> =
            tree.lines().filter(|l| ["wasm-bindgen", "js-sys", "getrandom", "web-sys"].iter().any(|b| l.starts_with(b))).collect();
        if banned.is_empty() {
            println!("{} crates in the wasm32-unknown-unknown tree, none of them banned", tree.lines().count());
            Ok(())
        } else {
            Err(format!("banned crates in auth-core's wasm tree: {banned:?}"))
        }
    });

    let fuzz_secs = if quick { 5 } else { 20 };
    for (dir, target) in tools::fuzz_targets(root) {
        suite.step(&format!("fuzz {dir}/{target} for {fuzz_secs}s"), || tools::fuzz(root, dir, &target, fuzz_secs));
    }

    suite.step("plugin: build and optimise target/authgate_plugin.wasm", || build::plugin(root).map(|_| ()));
    suite.step("edge-worker: build edge-worker/build with worker-build", || build::worker(root).map(|_| ()));

    suite.step("npm package: build with wasm-pack, test on Node", || {
        let pkg = build::npm_package(root)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("auth-js/tests"))
            .map_err(|e| format!("auth-js/tests: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
            .collect();
        files.sort();
        run(Command::new("node").arg("--test").args(&files).env("AUTHGATE_JS_PKG", &pkg))
    });

    let pytest_dirs = tools::pytest_dirs(root);
    if !pytest_dirs.is_empty() {
        suite.step("end-to-end suites (pytest)", || {
            run(Command::new(tools::venv_python(root)).args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]).args(&pytest_dirs))
        });
    }

    let failed: Vec<&str> = suite.results.iter().filter(|r| r.1.is_err()).map(|r| r.0.as_str()).collect();
    println!("\n==> summary");
    for (name, result, secs) in &suite.results {
        println!("  {:<6} {name} ({secs:.1}s)", if result.is_ok() { "ok" } else { "FAILED" });
    }
    println!(
        "test result: {}. {} passed; {} failed; finished in {:.0}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        suite.results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}
