// The package on Deno and Bun (npm `deno` and `bun`, pinned in tools/package-lock.json): the
// conformance vectors decided in each runtime give Node's answers, case for case, and the
// vectors' expectations; WebCrypto answers in every runtime.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PKG, ROOT, vectors } from "./helpers.mjs";

const SCRIPT = join(ROOT, "auth-js/tests/runtimes/decide-vectors.mjs");
const VECTORS = process.env.AUTHGATE_VECTORS ?? join(ROOT, "tests/conformance/vectors.json");
const BIN = join(ROOT, "tools/node_modules/.bin");
const RUNTIMES = {
  node: [process.execPath, SCRIPT],
  deno: [join(BIN, "deno"), "run", "--quiet", "--no-prompt", "--allow-read", "--allow-env", SCRIPT],
  bun: [join(BIN, "bun"), "run", SCRIPT],
};

function run(runtime, signatures) {
  const [cmd, ...args] = RUNTIMES[runtime];
  assert.ok(existsSync(cmd), `${cmd} is missing: run \`cargo xtask setup\``);
  const out = execFileSync(cmd, [...args, PKG, VECTORS, signatures], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" }, timeout: 120_000 });
  const lines = out.trim().split("\n").map((l) => JSON.parse(l));
  return { cases: lines.slice(0, -1), runtimeChecks: lines.at(-1).runtimeChecks };
}

const v = vectors(VECTORS);
const node = run("node", "webcrypto");

test("Node: the decisions are the vectors' expectations", () => {
  assert.equal(node.cases.length, v.cases.length);
  for (const [i, c] of v.cases.entries()) {
    const got = node.cases[i];
    assert.deepEqual([got.name, got.status, got.code], [c.name, c.expect.status, c.expect.code], c.name);
    for (const [k, want] of Object.entries(c.expect.headers ?? {})) assert.equal(got.identity?.[k], want, `${c.name}: ${k}`);
  }
});

for (const runtime of ["deno", "bun"]) {
  for (const signatures of ["webcrypto", "wasm"]) {
    test(`${runtime}, signatures by ${signatures}: Node's answers, case for case`, { timeout: 180_000 }, () => {
      const got = run(runtime, signatures);
      assert.deepEqual(got.cases, node.cases);
      if (signatures === "webcrypto") assert.ok(got.runtimeChecks > 0, `${runtime}'s WebCrypto answered`);
      else assert.equal(got.runtimeChecks, 0);
    });
  }
}
