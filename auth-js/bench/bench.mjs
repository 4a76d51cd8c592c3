// Benchmark (not run by CI): @authgate/verifier beside `jose` on Node, in one process, same
// tokens. EdDSA, ES256 and RS256; 1000 distinct users (tokens) round-robin, or one token; the
// package's `decide` with its verified-token cache off (`cache.max_entries: 0`: every request
// verified) and on, and its `verify(token)` (what `jwtVerify` does: no request around it). jose is `jwtVerify` with a local JWK set (its imported keys cached), the same checks
// (issuer, audience, typ). Both keep `--inflight` verifications in flight (WebCrypto works off
// the main thread in Node).
//
//   cargo xtask build-js
//   node auth-js/bench/bench.mjs [--seconds 3] [--inflight 16] [--rounds 1] [--slice-ms 250]
//
// Prints verifications/s, process CPU µs per verification (user+system), the ratio to jose,
// and the package's sizes. The contenders of a cell take turns (--slice-ms each) until each
// has run --seconds: on a shared machine a slow spell then falls on all of them.

import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import zlib from "node:zlib";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const PKG = process.env.AUTHGATE_JS_PKG ?? path.join(ROOT, "target/npm/package");
const requireTools = createRequire(path.join(ROOT, "tools/package.json"));
const jose = await import(pathToFileURL(requireTools.resolve("jose")).href);
const { Gateway } = await import(pathToFileURL(path.join(PKG, "index.js")).href);

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("seconds", 3);
const INFLIGHT = arg("inflight", 16);
const ROUNDS = arg("rounds", 1);
const SLICE_MS = arg("slice-ms", 250);
const USERS = 1000;
const ISSUER = "https://auth.bench.test";
const KIDS = { EdDSA: "ed1", ES256: "es1", RS256: "rs1" };

const now = Math.floor(Date.now() / 1000);
const keys = {};
const jwks = { keys: [] };
for (const [alg, kid] of Object.entries(KIDS)) {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined, extractable: true });
  keys[alg] = privateKey;
  jwks.keys.push({ ...(await jose.exportJWK(publicKey)), kid, alg, use: "sig" });
}
const tokens = {};
for (const alg of Object.keys(KIDS)) {
  tokens[alg] = [];
  for (let i = 0; i < USERS; i++) {
    tokens[alg].push(
      await new jose.SignJWT({ sid: `sid-${i}`, org: "org-1", roles: ["reader"], email: "u@example.com", jti: `jti-${alg}-${i}`, scope: "read" })
        .setProtectedHeader({ alg, kid: KIDS[alg], typ: "at+jwt" })
        .setIssuer(ISSUER).setAudience("api").setSubject(`user-${i}`).setIssuedAt(now).setExpirationTime(now + 3600)
        .sign(keys[alg]),
    );
  }
}

const config = (cacheEntries) => ({
  // jose signs ES256 without normalising s; so does this benchmark's issuer.
  providers: [{ issuer: ISSUER, audiences: ["api"], jwks, typ: ["at+jwt"], es256_accept_high_s: true }],
  routes: [{ prefix: "/", require: "authenticated" }],
  cache: { max_entries: cacheEntries },
});
const quiet = () => {};
const gates = {
  off: await Gateway.create(config(0), { log: quiet }),
  on: await Gateway.create(config(10_000), { log: quiet }),
  wasm: await Gateway.create(config(0), { log: quiet, signatures: "wasm" }),
};
const localSet = jose.createLocalJWKSet(jwks);

// Each answer is read as its users read it: jose's payload for the subject, a decision for its
// subject and the headers to set (a decision's `identity.claims` is parsed only when read).
const allowed = (d) => {
  if (!d.allow || typeof d.identity.subject !== "string" || d.setHeaders.length === 0) throw new Error(`denied: ${d.code}`);
};
const request = (t) => ({ method: "GET", path: "/api", headers: ["authorization", `Bearer ${t}`] });
const contenders = {
  jose: async (t) => {
    const { payload } = await jose.jwtVerify(t, localSet, { issuer: ISSUER, audience: "api", typ: "at+jwt" });
    if (typeof payload.sub !== "string") throw new Error("no subject");
  },
  "authgate, cache off": async (t) => allowed(await gates.off.decide(request(t))),
  // jwtVerify's counterpart: a token judged outside any route (no request, no headers).
  "authgate verify(), cache off": async (t) => {
    if (typeof (await gates.off.verify(t)).subject !== "string") throw new Error("no subject");
  },
  "authgate, cache on": async (t) => allowed(await gates.on.decide(request(t))),
  "authgate, own crypto": async (t) => allowed(await gates.wasm.decide(request(t))),
};

/** Keeps INFLIGHT verifications of `fn` going for `ms`: how many ended, in how long, at what
 * process CPU (user+system, all threads). */
async function slice(fn, list, ms) {
  let done = 0;
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + ms;
  async function lane() {
    while (performance.now() < end) {
      await fn(list[next++ % list.length]);
      done++;
    }
  }
  await Promise.all(Array.from({ length: INFLIGHT }, lane));
  const cpu = process.cpuUsage(cpu0);
  return { done, secs: (performance.now() - t0) / 1000, cpuUs: cpu.user + cpu.system };
}

/** Every contender over SECONDS each, in turns of SLICE_MS: a shared machine's slow spells
 * fall on all of them alike, not on whichever ran then. */
async function measureAll(list) {
  const fns = Object.values(contenders);
  for (const fn of fns) for (let i = 0; i < Math.min(200, list.length * 2); i++) await fn(list[i % list.length]); // warm-up
  const totals = fns.map(() => ({ done: 0, secs: 0, cpuUs: 0 }));
  for (let t = 0; t < (SECONDS * 1000) / SLICE_MS; t++) {
    for (const [i, fn] of fns.entries()) {
      const r = await slice(fn, list, SLICE_MS);
      totals[i].done += r.done;
      totals[i].secs += r.secs;
      totals[i].cpuUs += r.cpuUs;
    }
  }
  return totals.map((t) => ({ rate: t.done / t.secs, cpuUs: t.cpuUs / t.done }));
}

console.log(`@authgate/verifier vs jose ${jose.cryptoRuntime ?? ""} on Node ${process.version}; ${SECONDS}s per cell in turns of ${SLICE_MS} ms, ${INFLIGHT} in flight, ${ROUNDS} round(s)`);
console.log("| alg | workload | contender | verifications/s | CPU µs/verification | vs jose (rate) |");
console.log("|---|---|---|---:|---:|---:|");
for (let round = 0; round < ROUNDS; round++) {
  for (const alg of Object.keys(KIDS)) {
    for (const [workload, list] of [["1000 users", tokens[alg]], ["one token", tokens[alg].slice(0, 1)]]) {
      const results = await measureAll(list);
      const base = results[0].rate;
      for (const [i, name] of Object.keys(contenders).entries()) {
        const r = results[i];
        console.log(`| ${alg} | ${workload} | ${name} | ${Math.round(r.rate).toLocaleString("en")} | ${r.cpuUs.toFixed(1)} | ${(r.rate / base).toFixed(2)}x |`);
      }
    }
  }
}
const wasm = readFileSync(path.join(PKG, "authgate_bg.wasm"));
console.log(`\nmodule ${statSync(path.join(PKG, "authgate_bg.wasm")).size} bytes (gzip ${zlib.gzipSync(wasm, { level: 9 }).length})`);
for (const g of Object.values(gates)) g.close();
