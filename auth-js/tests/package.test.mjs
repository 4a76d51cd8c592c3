// What `npm pack` ships: exactly the package's files, ESM with types that a strict TypeScript
// consumer compiles against (and that refuse misuse), a module within its size budget, and a
// version tied to the workspace (auth-js/Cargo.toml).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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

// A consumer as an application writes it, compiled by TypeScript (tools/node_modules, pinned)
// in strict mode against the package as installed. The `@ts-expect-error` lines fail the
// compilation if the types ever let that misuse through (an `any` would).
const CONSUMER = `
import { Gateway, AuthgateError, type Decision, type Identity } from "@authgate/verifier";
import { express, guard, identityOf, wrap } from "@authgate/verifier/middleware";

const gate: Gateway = await Gateway.create({ routes: [{ prefix: "/", require: "anonymous" }] }, { signatures: "wasm", logLevel: "info" });
const d: Decision = await gate.decide(new Request("https://api.example/x"));
if (d.allow) {
  const who: Identity | null = d.identity;
  const names: string[] = d.setHeaders.map(([name]) => name);
  console.log(who?.subject, names, d.cacheHit);
} else {
  const code: string = d.code;
  const r = new Response(d.body, { status: d.status, headers: d.headers });
  console.log(code, r.status, d.errorId);
}
await gate.decide({ method: "GET", path: "/x", headers: { authorization: "Bearer t", "x-many": ["a", "b"] } });
try {
  const id = await gate.verify("token");
  const sub: string = id.subject;
  const roles: string[] = id.roles;
  console.log(sub, roles, id.claims?.["iss"]);
} catch (e) {
  if (e instanceof AuthgateError) console.log(e.code, e.status);
}
const s = gate.status();
const n: number = s.cachedTokens + s.signaturesCheckedByRuntime;
console.log(n, s.sources.map((x) => x.hasMaterial));
const handler = wrap(gate, async (req: Request) => new Response(identityOf(req)?.email ?? "anonymous"));
const denied: Response | undefined = await guard(gate)(new Request("https://api.example/"));
console.log(handler, denied, express(gate));
gate.close();

// @ts-expect-error: signatures is "webcrypto" or "wasm"
await Gateway.create({}, { signatures: "openssl" });
// @ts-expect-error: decide needs a request
await gate.decide();
// @ts-expect-error: a denial has no identity
if (!d.allow) console.log(d.identity);
// @ts-expect-error: the constructor is private
new Gateway();
`;

test("the types: a strict TypeScript consumer compiles, misuse does not", () => {
  const dir = mkdtempSync(join(tmpdir(), "authgate-types-"));
  try {
    mkdirSync(join(dir, "node_modules/@authgate"), { recursive: true });
    symlinkSync(PKG, join(dir, "node_modules/@authgate/verifier"), "dir");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    writeFileSync(join(dir, "app.ts"), CONSUMER);
    const tsconfig = { compilerOptions: { strict: true, noEmit: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2022", "DOM"], skipLibCheck: false, types: [] }, files: ["app.ts"] };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
    const tsc = join(ROOT, "tools/node_modules/typescript/bin/tsc");
    try {
      execFileSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8" });
    } catch (e) {
      assert.fail(`tsc: ${e.stdout}${e.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
