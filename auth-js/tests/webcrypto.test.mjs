// WebCrypto as the package's signature checker when it misbehaves: a check that fails mid-flight
// hands the signature to the module (said once, then every signature stays in the module), and
// a gateway closed while a check is out refuses to answer rather than touching a freed core;
// what WebCrypto is handed are copies of the bytes, not views of the module's memory.
// `crypto.subtle.verify` is wrapped before the module first looks it up, so each test can make
// it answer, fail or hang.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Gateway, scriptedFetch, vectors } from "./helpers.mjs";

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
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(subtle.hung.length, 1, "the check is out");
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
