//! Build steps for artefacts other suites load: the proxy-wasm plugin and the edge worker.
//!
//! `target/authgate_plugin.wasm` is the module Envoy and Kong load: `authgate-plugin` built for
//! `wasm32-wasip1` (the `plugin` profile below), then optimised by `wasm-opt -O3` (npm `binaryen`, pinned in
//! tools/package-lock.json and installed by `cargo xtask setup`).
//!
//! `edge-worker/build/` is the Cloudflare Worker wrangler.toml and the worker suite load.

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
const PLUGIN_PROFILE: [&str; 6] = [
    "--config",
    "profile.plugin.inherits=\"release\"",
    "--config",
    "profile.plugin.opt-level=3",
    "--profile",
    "plugin",
];

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
