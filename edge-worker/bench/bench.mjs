// Benchmark (not run by CI): the authgate edge worker vs a JavaScript worker using `jose` vs a
// pass-through worker, in the same workerd (npm `workerd` through Miniflare), each forwarding to
// the same tiny origin worker over a service binding. EdDSA, ES256 and RS256 tokens against the
// same inline JWKS. The edge worker runs with signatures checked by WebCrypto (the default) and
// by its own WebAssembly code (AUTHGATE_SIGNATURES=worker), with its token cache on and off.
//
//   cargo xtask build-worker
//   node edge-worker/bench/bench.mjs [--seconds 10] [--connections 16] [--slice-s 1]
//
// Reports requests/s, latency p50/p99 (client side, keep-alive HTTP/1.1), workerd CPU time per
// request (utime+stime of the workerd process over the run, /proc), and the gzipped bundle size.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import zlib from "node:zlib";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const TOOLS = path.join(ROOT, "tools");
const requireTools = createRequire(path.join(TOOLS, "package.json"));
const importTool = async (name) => import(pathToFileURL(requireTools.resolve(name)).href);
const { Miniflare } = await importTool("miniflare");
const jose = await importTool("jose");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("seconds", 10);
const CONNECTIONS = arg("connections", 16);
const SLICE_S = arg("slice-s", 1);
const ISSUER = "https://auth.bench.test";
const BUILD = path.join(ROOT, "edge-worker/build");
const wrangler = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
const COMPAT = /compatibility_date = "([^"]+)"/.exec(wrangler)[1];

// ----- keys, tokens, JWKS ---------------------------------------------------------------------
const now = Math.floor(Date.now() / 1000);
const keys = {};
const jwks = { keys: [] };
const KIDS = { EdDSA: "ed1", ES256: "es1", RS256: "rs1" };
for (const [alg, kid] of Object.entries(KIDS)) {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined, extractable: true });
  keys[alg] = privateKey;
  jwks.keys.push({ ...(await jose.exportJWK(publicKey)), kid, alg, use: "sig" });
}
async function token(alg, i) {
  return new jose.SignJWT({ sid: `sid-${i}`, org: "org-1", roles: ["reader"], email: "u@example.com", jti: `jti-${alg}-${i}`, scope: "read" })
    .setProtectedHeader({ alg, kid: KIDS[alg], typ: "at+jwt" })
    .setIssuer(ISSUER).setAudience("api").setSubject(`user-${i}`).setIssuedAt(now).setExpirationTime(now + 3600)
    .sign(keys[alg]);
}

// ----- the workers --------------------------------------------------------------------------
const tmp = mkdtempSync(path.join(os.tmpdir(), "authgate-bench-"));
const joseBundle = path.join(tmp, "jose-worker.mjs");
// Bundled as wrangler would: esbuild, the workerd/worker export conditions, jose from tools/.
execFileSync(path.join(TOOLS, "node_modules/.bin/esbuild"), [path.join(HERE, "jose-worker.mjs"), "--bundle", "--format=esm",
  "--platform=browser", "--conditions=workerd,worker,browser", "--minify", `--outfile=${joseBundle}`, "--log-level=warning"],
  { cwd: TOOLS, env: { ...process.env, NODE_PATH: path.join(TOOLS, "node_modules") } });

const gatewayConfig = (cache) => JSON.stringify({
  // jose signs ES256 through WebCrypto, whose `s` is high half the time: accept that issuer's form.
  providers: [{ issuer: ISSUER, audiences: ["api"], jwks, algorithms: ["EdDSA", "ES256", "RS256"], typ: ["at+jwt"], es256_accept_high_s: true }],
  routes: [{ prefix: "/", require: "authenticated" }],
  ...(cache ? {} : { cache: { max_entries: 0 } }),
});
const origin = { name: "origin", modules: true, scriptPath: path.join(HERE, "origin-worker.mjs"), compatibilityDate: COMPAT };
const edge = (cache, signatures) => ({
  modules: true, scriptPath: path.join(BUILD, "index.js"), modulesRoot: BUILD,
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  bindings: { AUTHGATE_CONFIG: gatewayConfig(cache), AUTHGATE_SIGNATURES: signatures },
});
const gateways = {
  "pass-through (JS, no auth)": { modules: true, scriptPath: path.join(HERE, "passthrough-worker.mjs") },
  "jose (JS)": { modules: true, scriptPath: joseBundle, modulesRoot: tmp, bindings: { JWKS: JSON.stringify(jwks), ISSUER } },
  "authgate, cache off, WebCrypto (default)": edge(false, "runtime"),
  "authgate, cache off, own wasm crypto": edge(false, "worker"),
  "authgate, cache on (default), WebCrypto (default)": edge(true, "runtime"),
};

// ----- measuring --------------------------------------------------------------------------------
/** The workerd processes Miniflare spawned for this process. */
function workerdPids() {
  const pids = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (Number(fields[1]) === process.pid && comm.startsWith("workerd")) pids.push(pid);
    } catch {}
  }
  return pids;
}
/** utime+stime of `pids`, in clock ticks. */
function cpuTicks(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks;
}
const TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

async function load(url, tokens, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const { hostname, port } = new URL(url);
  const latencies = [];
  let errors = 0, n = 0;
  const deadline = performance.now() + seconds * 1000;
  const one = () => new Promise((resolve) => {
    const t = tokens[n++ % tokens.length];
    const start = performance.now();
    const req = http.request({ hostname, port, path: "/api/items", agent, headers: { authorization: `Bearer ${t}` } }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode !== 200) errors++;
        latencies.push(performance.now() - start);
        resolve();
      });
    });
    req.on("error", () => { errors++; resolve(); });
    req.end();
  });
  const loop = async () => { while (performance.now() < deadline) await one(); };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const secs = (performance.now() - started) / 1000;
  agent.destroy();
  return { requests: latencies.length, errors, secs, latencies };
}

const results = [];
for (const alg of Object.keys(KIDS)) {
  // 1000 distinct tokens (users), sent round robin: realistic for the token cache, and every
  // worker sees the same sequence.
  const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => token(alg, i)));
  const running = [];
  for (const [name, options] of Object.entries(gateways)) {
    const before = new Set(workerdPids());
    const mf = new Miniflare({
      host: "127.0.0.1", port: 0, cf: false,
      workers: [{ name: "gateway", compatibilityDate: COMPAT, serviceBindings: { ORIGIN: "origin" }, ...options }, origin],
    });
    const url = await mf.ready;
    const pids = workerdPids().filter((p) => !before.has(p));
    const check = await load(url, tokens.slice(0, 1), 0.5);
    if (check.errors) throw new Error(`${name}: requests fail`);
    await load(url, tokens, 2); // warm-up
    running.push({ name, mf, url, pids, requests: 0, errors: 0, secs: 0, ticks: 0, latencies: [] });
  }
  for (let turn = 0; turn < SECONDS / SLICE_S; turn++) {
    for (const w of running) {
      const t0 = cpuTicks(w.pids);
      const r = await load(w.url, tokens, SLICE_S);
      w.ticks += cpuTicks(w.pids) - t0;
      w.requests += r.requests;
      w.errors += r.errors;
      w.secs += r.secs;
      w.latencies.push(...r.latencies);
    }
  }
  for (const w of running) {
    await w.mf.dispose();
    if (w.errors) throw new Error(`${alg} ${w.name}: ${w.errors} requests failed`);
    w.latencies.sort((a, b) => a - b);
    const q = (p) => w.latencies[Math.min(w.latencies.length - 1, Math.floor(p * w.latencies.length))];
    const cpuMs = (w.ticks / TICKS_PER_S) * 1000;
    const row = { alg, name: w.name, requests: w.requests, rps: w.requests / w.secs, p50: q(0.5), p99: q(0.99), cpu_us_per_req: (cpuMs * 1000) / w.requests };
    results.push(row);
    console.error(`${alg} ${w.name}: ${row.rps.toFixed(0)} req/s, p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, ` +
      `workerd CPU ${row.cpu_us_per_req.toFixed(0)} µs/req`);
  }
}

const gz = (f) => zlib.gzipSync(readFileSync(f), { level: 9 }).length;
const files = readdirSync(BUILD, { recursive: true }).map(String).filter((f) => /\.(js|mjs|wasm)$/.test(f));
const bundle = files.reduce((s, f) => s + gz(path.join(BUILD, f)), 0);
const raw = files.reduce((s, f) => s + readFileSync(path.join(BUILD, f)).length, 0);
const joseGz = gz(joseBundle);

console.log(`\n| alg | worker | req/s | p50 ms | p99 ms | workerd CPU µs/req | vs jose (req/s) |`);
console.log(`|---|---|---:|---:|---:|---:|---:|`);
for (const r of results) {
  const jose = results.find((j) => j.alg === r.alg && j.name === "jose (JS)");
  console.log(`| ${r.alg} | ${r.name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.cpu_us_per_req.toFixed(0)} | ${(r.rps / jose.rps).toFixed(2)}x |`);
}
console.log(`\nedge-worker bundle (${files.join(", ")}): ${raw} bytes, ${bundle} bytes gzipped; jose worker bundle: ${joseGz} bytes gzipped`);
console.log(`${SECONDS} s per worker in turns of ${SLICE_S} s after a 2 s warm-up, ${CONNECTIONS} keep-alive connections, ${os.cpus().length} CPUs (${os.cpus()[0].model}), workerd from tools/node_modules`);
writeFileSync(path.join(tmp, "results.json"), JSON.stringify(results, null, 2));
