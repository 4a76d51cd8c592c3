// What `npm pack` ships: exactly the package's files, ESM with types, a module within its size
// budget, and a version tied to the workspace (auth-js/Cargo.toml).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PKG, ROOT } from "./helpers.mjs";

// The module's budget: what a browser or an edge runtime downloads (gzip shrinks it ~2.5x).
const WASM_BUDGET = 900 * 1024;
const TARBALL_BUDGET = 450 * 1024;

test("npm pack: the files, the types, the size, the version", () => {
  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PKG, encoding: "utf8" }));
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, [
    "README.md", "authgate.js", "authgate_bg.wasm", "index.d.ts", "index.js", "middleware.d.ts", "middleware.js", "package.json",
  ]);
  const wasm = packed.files.find((f) => f.path === "authgate_bg.wasm").size;
  assert.ok(wasm <= WASM_BUDGET, `module ${wasm} bytes, budget ${WASM_BUDGET}`);
  assert.ok(packed.size <= TARBALL_BUDGET, `tarball ${packed.size} bytes, budget ${TARBALL_BUDGET}`);
  console.log(`# @authgate/verifier: tarball ${packed.size} bytes, unpacked ${packed.unpackedSize}, module ${wasm}`);

  const manifest = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
  const crate = readFileSync(join(ROOT, "auth-js/Cargo.toml"), "utf8").match(/^version = "(.+)"$/m)[1];
  assert.equal(manifest.version, crate);
  assert.equal(manifest.type, "module");
  assert.deepEqual(Object.keys(manifest.exports), [".", "./middleware", "./authgate_bg.wasm"]);
  for (const entry of [".", "./middleware"]) {
    const { types, default: js } = manifest.exports[entry];
    assert.ok(files.includes(types.slice(2)) && files.includes(js.slice(2)), entry);
  }
  // Every export of the entry points has a declaration.
  const dts = readFileSync(join(PKG, "index.d.ts"), "utf8") + readFileSync(join(PKG, "middleware.d.ts"), "utf8");
  for (const file of ["index.js", "middleware.js"]) {
    const src = readFileSync(join(PKG, file), "utf8");
    for (const [, name] of src.matchAll(/^export (?:async )?(?:function|class|const) (\w+)/gm)) {
      assert.match(dts, new RegExp(`export (?:declare )?(?:function|class|const) ${name}\\b`), `${file}: ${name} has no declaration`);
    }
  }
});
