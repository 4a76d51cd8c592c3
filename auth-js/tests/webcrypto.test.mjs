// WebCrypto as the package's signature checker when it misbehaves: a check that fails mid-flight
// hands the signature to the module (said once, then every signature stays in the module), and
// a gateway closed while a check is out refuses to answer rather than touching a freed core;
// what WebCrypto is handed are copies of the bytes, not views of the module's memory; a decision
// that must ask again (its key rotated while WebCrypto worked) keeps its own handle while other
// requests come and go.
// `crypto.subtle.verify` is wrapped before the module first looks it up, so each test can make
// it answer, fail or hang.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Gateway, edKey, edToken, scriptedFetch, settle, vectors } from "./helpers.mjs";

const v = vectors();
const realVerify = crypto.subtle.verify.bind(crypto.subtle);
const subtle = { mode: "answer", calls: 0, hung: [], last: null };
crypto.subtle.verify = (...args) => {
  subtle.calls++;
  subtle.last = args;
  if (subtle.mode === "fail") return Promise.reject(new Error("boom"));
  if (subtle.mode === "hang") return new Promise((resolve) => subtle.hung.push(() => resolve(realVerify(...args))));
  return realVerify(...args);
};

/** A gateway over the vectors' configuration with its verified-token cache off (every
 * decision checks its signature), and the lines it logged. */
async function gateway() {
  const { fetch } = scriptedFetch({ [v.config.revocations.uri]: () => ({ body: v.feed }) });
  const logs = [];
  const gate = await Gateway.create({ ...v.config, cache: { max_entries: 0 } }, { fetch, log: (level, line) => logs.push([level, line]) });
  await gate.ready(5_000);
  const decide = (name) => {
    const c = v.cases.find((c) => c.name === name);
    return gate.decide({ method: c.request.method, path: c.request.path, headers: c.request.headers });
  };
  return { gate, logs, decide };
}

/** Lets the event loop turn until `done()`, for at most 5 s of real time (`performance.now`
 * is not faked): a failure, not a hang. WebCrypto's answers come from Node's thread pool. */
async function until(done, what) {
  const end = performance.now() + 5_000;
  while (!done() && performance.now() < end) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(done(), what);
}

test("WebCrypto failing mid-flight: the module checks that signature and every one after it, and says so once", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: v.now * 1000 });
  subtle.mode = "answer";
  const { gate, logs, decide } = await gateway();
  const before = subtle.calls;
  // Each key imported on its first use, then checked straight from JavaScript.
  for (const name of ["eddsa_valid", "es256_valid", "rs256_valid", "es256_valid"]) assert.equal((await decide(name)).allow, true, name);
  assert.equal(subtle.calls - before, 4);
  assert.equal(gate.status().signaturesCheckedByRuntime, 4);
  assert.equal((await decide("rs256_tampered_signature")).code, "signature_invalid");
  assert.equal(gate.status().signaturesCheckedByRuntime, 5);

  subtle.mode = "fail";
  assert.equal((await decide("es256_valid")).allow, true, "the module checks what WebCrypto could not");
  const warned = logs.filter(([level, line]) => level === "warn" && line.includes("WebCrypto could not check a ES256 signature (boom)"));
  assert.equal(warned.length, 1, JSON.stringify(logs));
  const calls = subtle.calls;
  for (const name of ["eddsa_valid", "rs256_valid"]) assert.equal((await decide(name)).allow, true, name);
  assert.equal((await decide("rs256_tampered_signature")).code, "signature_invalid");
  assert.equal((await decide("es256_tampered_signature")).code, "signature_invalid");
  assert.equal(subtle.calls, calls, "no signature goes to WebCrypto after it failed");
  assert.equal(gate.status().signaturesCheckedByRuntime, 5);
  assert.equal(logs.filter(([level]) => level === "warn").length, 1);
  gate.close();
});

test("a gateway closed while WebCrypto checks a signature refuses to answer", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: v.now * 1000 });
  subtle.mode = "answer";
  const { gate, decide } = await gateway();
  assert.equal((await decide("es256_valid")).allow, true); // the key is imported
  subtle.mode = "hang";
  const pending = decide("es256_valid");
  await until(() => subtle.hung.length === 1, "the check is out");
  // What WebCrypto reads is a copy, not a view of WebAssembly memory that the next request
  // will overwrite while this check is out.
  const [, , signature, message] = subtle.last;
  assert.equal(signature.byteLength, 64);
  assert.equal(signature.buffer.byteLength, signature.byteLength);
  assert.equal(message.buffer.byteLength, message.byteLength);
  gate.close();
  subtle.hung.shift()();
  await assert.rejects(pending, /closed/);
  subtle.mode = "answer";
});

test("a key rotated while WebCrypto checks: the decision asks again under its own handle, other requests keep theirs", { timeout: 30_000 }, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_800_000_000_000 });
  subtle.mode = "answer";
  const ISS = "https://issuer.test";
  const [a, b, c] = [await edKey("a"), await edKey("b"), await edKey("c")];
  const jwks = { keys: [a.jwk, b.jwk, c.jwk] };
  const { fetch } = scriptedFetch({ [`${ISS}/jwks.json`]: () => ({ body: jwks }) });
  const config = {
    providers: [{ issuer: ISS, audiences: ["api"], jwks_uri: `${ISS}/jwks.json`, typ: ["at+jwt"] }],
    fetch: { jwks_refresh_s: 60 },
    routes: [{ prefix: "/", require: "authenticated" }],
    cache: { max_entries: 0 },
  };
  const gate = await Gateway.create(config, { fetch, log: () => {} });
  await settle(); // the JWKS is in (the clock is fake: no `ready()` polling)
  const [alice, bob, carol] = [await edToken(a, ISS, { sub: "alice" }), await edToken(b, ISS, { sub: "bob" }), await edToken(c, ISS, { sub: "carol" })];
  const get = (tok) => gate.decide({ method: "GET", path: "/orders", headers: [["authorization", `Bearer ${tok}`]] });
  for (const tok of [alice, bob, carol]) assert.equal((await get(tok)).allow, true, "every key imported");

  // Alice's check goes out and hangs; meanwhile the issuer retires c's kid and reuses kid "a"
  // for c's key.
  subtle.mode = "hang";
  const first = get(alice);
  await until(() => subtle.hung.length === 1, "alice's check is out");
  jwks.keys = [{ ...c.jwk, kid: "a" }, b.jwk];
  const fetched = gate.status().sources[0].lastSuccess;
  for (let i = 0; i < 62; i++) {
    t.mock.timers.tick(1_000);
    await settle();
  }
  assert.ok(gate.status().sources[0].lastSuccess > fetched, "the JWKS was fetched again");
  // Alice's answer is for the old key: her decision asks again (about c's key, imported), and
  // that check hangs too. Bob's request comes while it is out.
  subtle.hung.shift()();
  await until(() => subtle.hung.length === 1, "alice's decision asked again");
  subtle.mode = "answer";
  const second = await get(bob);
  subtle.hung.shift()();
  const d = await first;
  assert.deepEqual([second.allow, second.identity?.subject], [true, "bob"]);
  assert.deepEqual([d.allow, d.code], [false, "signature_invalid"], "alice's token, signed by the retired key, fails against kid a's new key");
  gate.close();
});
