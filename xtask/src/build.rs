//! Build steps for artefacts other suites load: the proxy-wasm plugin and the edge worker.
//!
//! `target/authgate_plugin.wasm` is the module Envoy and Kong load: `authgate-plugin` built for
//! `wasm32-wasip1` (the `plugin` profile below), then optimised by `wasm-opt -O3` (npm `binaryen`, pinned in
//! tools/package-lock.json and installed by `cargo xtask setup`).
//!
//! `edge-worker/build/` is the Cloudflare Worker wrangler.toml and the worker suite load.
//!
//! `target/npm/package/` is the npm package `@authgate/verifier` (auth-js, built by wasm-pack,
//! optimised by the same wasm-opt), and `target/npm/authgate-verifier-<version>.tgz` its tarball.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, run};

pub const PLUGIN_TARGET: &str = "wasm32-wasip1";

/// The plugin's cargo profile: `release` (fat LTO, one codegen unit) at `opt-level = 3`,
/// defined on the command line so it stays out of the shared workspace manifest and does not
/// evict the `release` artefacts other steps build for the same target. Speed over size, as
/// measured (docs/benchmarks.md, 2026-12-02): with `wasm-opt -O3` the module is 761 KB against
/// 640 KB at `opt-level = "s"` with `-Oz`, and the 121 KB buy EdDSA verification in the
/// filter (the algorithm Envoy's `verify_signature` cannot check) about a quarter less CPU.
/// The budget is 800 KB.
const PLUGIN_PROFILE: [&str; 6] =
    ["--config", "profile.plugin.inherits=\"release\"", "--config", "profile.plugin.opt-level=3", "--profile", "plugin"];

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Where the optimised plugin goes; the plugin suite and the docs use this path.
pub fn plugin_wasm(root: &Path) -> PathBuf {
    target_dir(root).join("authgate_plugin.wasm")
}

/// Builds and optimises the plugin; returns the path of the optimised module. The (slow)
/// optimisation is skipped when the module is newer than the compiler's output.
pub fn plugin(root: &Path) -> Result<PathBuf, String> {
    run(cargo().args(["build", "--locked", "-p", "authgate-plugin", "--target", PLUGIN_TARGET]).args(PLUGIN_PROFILE))?;
    let raw = target_dir(root).join(PLUGIN_TARGET).join("plugin/authgate_plugin.wasm");
    let out = plugin_wasm(root);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if matches!((modified(&raw), modified(&out)), (Some(r), Some(o)) if o > r) {
        println!("{} is up to date", out.display());
        return Ok(out);
    }
    let wasm_opt = root.join("tools/node_modules/.bin/wasm-opt");
    if !wasm_opt.exists() {
        return Err(format!("{} is missing: run `cargo xtask setup`", wasm_opt.display()));
    }
    let partial = out.with_extension("wasm.partial");
    run(Command::new(&wasm_opt)
        .args(["-O3", "--strip-debug", "--strip-producers"])
        // The features rustc's wasm32-wasip1 output uses; Envoy's V8 and Kong's runtimes have them.
        .args(["--enable-bulk-memory", "--enable-sign-ext", "--enable-nontrapping-float-to-int", "--enable-mutable-globals"])
        .arg(&raw)
        .arg("-o")
        .arg(&partial))?;
    std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("{}: {} bytes (wasm-opt from {} bytes)", out.display(), size(&out), size(&raw));
    Ok(out)
}

/// The edge worker's build directory (wrangler.toml's `main` points into it).
pub fn worker_dir(root: &Path) -> PathBuf {
    root.join("edge-worker/build")
}

/// Builds the Cloudflare Worker with `worker-build --release` into edge-worker/build
/// (`index.js` + the wasm module). Every tool it would otherwise download is given to it:
/// `wasm-bindgen` (cargo-installed at Cargo.lock's version), `wasm-opt` and `esbuild` (npm).
pub fn worker(root: &Path) -> Result<PathBuf, String> {
    use crate::tools::{cargo_tool, WASM_BINDGEN_CLI_VERSION, WORKER_BUILD_VERSION};
    let worker_build = cargo_tool(root, "worker-build", WORKER_BUILD_VERSION, "worker-build");
    let wasm_bindgen = cargo_tool(root, "wasm-bindgen-cli", WASM_BINDGEN_CLI_VERSION, "wasm-bindgen");
    let bin = root.join("tools/node_modules/.bin");
    for tool in [&worker_build, &wasm_bindgen, &bin.join("wasm-opt"), &bin.join("esbuild")] {
        if !tool.exists() {
            return Err(format!("{} is missing: run `cargo xtask setup`", tool.display()));
        }
    }
    run(Command::new(&worker_build)
        .arg("--release")
        .current_dir(root.join("edge-worker"))
        .env("WASM_BINDGEN_BIN", &wasm_bindgen)
        .env("WASM_OPT_BIN", bin.join("wasm-opt"))
        .env("ESBUILD_BIN", bin.join("esbuild")))?;
    Ok(worker_dir(root))
}

/// Where the npm package is assembled; its tarball goes beside it.
pub fn npm_dir(root: &Path) -> PathBuf {
    target_dir(root).join("npm/package")
}

/// The files of auth-js/js/ that go into the package, besides the generated bindings.
const NPM_SOURCES: [&str; 5] = ["index.js", "index.d.ts", "middleware.js", "middleware.d.ts", "README.md"];

/// Builds the npm package: `wasm-pack build --target web` (no downloads: `wasm-bindgen` from
/// PATH at Cargo.lock's version, wasm-opt off), `wasm-opt -O3`, the package's own JavaScript,
/// a package.json at the crate's version, then `npm pack`.
pub fn npm_package(root: &Path) -> Result<PathBuf, String> {
    use crate::tools::{cargo_tool, WASM_BINDGEN_CLI_VERSION, WASM_PACK_VERSION};
    let wasm_pack = cargo_tool(root, "wasm-pack", WASM_PACK_VERSION, "wasm-pack");
    let wasm_bindgen = cargo_tool(root, "wasm-bindgen-cli", WASM_BINDGEN_CLI_VERSION, "wasm-bindgen");
    let wasm_opt = root.join("tools/node_modules/.bin/wasm-opt");
    for tool in [&wasm_pack, &wasm_bindgen, &wasm_opt] {
        if !tool.exists() {
            return Err(format!("{} is missing: run `cargo xtask setup`", tool.display()));
        }
    }
    let bindings = target_dir(root).join("npm/bindings");
    let path = std::env::join_paths(
        std::iter::once(wasm_bindgen.parent().expect("bin dir").to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .map_err(|e| e.to_string())?;
    run(Command::new(&wasm_pack)
        .args([
            "build",
            "--release",
            "--target",
            "web",
            "--no-pack",
            "--no-typescript",
            "--mode",
            "no-install",
            "--out-name",
            "authgate",
            "--out-dir",
        ])
        .arg(&bindings)
        .arg(root.join("auth-js"))
        .env("PATH", path))?;

    let pkg = npm_dir(root);
    let _ = std::fs::remove_dir_all(&pkg);
    std::fs::create_dir_all(&pkg).map_err(|e| format!("{}: {e}", pkg.display()))?;
    run(Command::new(&wasm_opt)
        .args(["-O3", "--strip-debug", "--strip-producers"])
        .arg(bindings.join("authgate_bg.wasm"))
        .arg("-o")
        .arg(pkg.join("authgate_bg.wasm")))?;
    let copy = |from: PathBuf, name: &str| std::fs::copy(&from, pkg.join(name)).map(|_| ()).map_err(|e| format!("{}: {e}", from.display()));
    copy(bindings.join("authgate.js"), "authgate.js")?;
    for name in NPM_SOURCES {
        copy(root.join("auth-js/js").join(name), name)?;
    }
    let manifest = std::fs::read_to_string(root.join("auth-js/Cargo.toml")).map_err(|e| e.to_string())?;
    let version =
        manifest.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"')).ok_or("auth-js/Cargo.toml has no version")?;
    std::fs::write(pkg.join("package.json"), package_json(version)).map_err(|e| e.to_string())?;
    run(Command::new("npm").args(["pack", "--silent", "--pack-destination", ".."]).current_dir(&pkg))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let tarball = pkg.with_file_name(format!("authgate-verifier-{version}.tgz"));
    println!(
        "{}: module {} bytes (wasm-opt from {}), tarball {} bytes",
        pkg.display(),
        size(&pkg.join("authgate_bg.wasm")),
        size(&bindings.join("authgate_bg.wasm")),
        size(&tarball)
    );
    Ok(pkg)
}

/// package.json of `@authgate/verifier`: ESM only, the middleware as a subpath export, the
/// version of the auth-js crate (the workspace's).
fn package_json(version: &str) -> String {
    let files: Vec<String> = ["authgate.js", "authgate_bg.wasm"].iter().chain(NPM_SOURCES.iter()).map(|f| format!("\"{f}\"")).collect();
    format!(
        r#"{{
  "name": "@authgate/verifier",
  "version": "{version}",
  "description": "authgate's verifier for JavaScript runtimes: JWTs, API keys and the signed revocation feed, decided by the same core as authgate's gateways",
  "license": "Apache-2.0",
  "repository": {{ "type": "git", "url": "https://github.com/authgate/authgate" }},
  "type": "module",
  "main": "./index.js",
  "types": "./index.d.ts",
  "exports": {{
    ".": {{ "types": "./index.d.ts", "default": "./index.js" }},
    "./middleware": {{ "types": "./middleware.d.ts", "default": "./middleware.js" }},
    "./authgate_bg.wasm": "./authgate_bg.wasm"
  }},
  "files": [{files}],
  "sideEffects": false,
  "engines": {{ "node": ">=20" }},
  "keywords": ["jwt", "jwks", "api-key", "authentication", "webassembly", "middleware"]
}}
"#,
        files = files.join(", ")
    )
}
