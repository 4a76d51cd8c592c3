//! Build steps for artefacts other suites load: the proxy-wasm plugin.
//!
//! `target/authgate_plugin.wasm` is the module Envoy and Kong load: `authgate-plugin` built for
//! `wasm32-wasip1` (the `plugin` profile below), then optimised by `wasm-opt -Oz` (npm `binaryen`, pinned in
//! tools/package-lock.json and installed by `cargo xtask setup`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, run};

pub const PLUGIN_TARGET: &str = "wasm32-wasip1";

/// The plugin's cargo profile: `release` (fat LTO, one codegen unit) at `opt-level = "s"`,
/// defined on the command line so it stays out of the shared workspace manifest and does not
/// evict the `release` artefacts other steps build for the same target. Measured with
/// `wasm-opt -Oz`: 584,512 bytes, against 687,043 at `opt-level = 3` with `-O3`; the budget is
/// 600 KB (docs/benchmarks.md).
const PLUGIN_PROFILE: [&str; 6] = [
    "--config",
    "profile.plugin.inherits=\"release\"",
    "--config",
    "profile.plugin.opt-level=\"s\"",
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
        .args(["-Oz", "--strip-debug", "--strip-producers"])
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
