// The conformance vectors (tests/conformance/vectors.json, minted by an independent Python
// implementation) through the npm package: every case, twice (the second pass from the
// verified-token cache), with signatures checked by WebCrypto and by the module itself. The
// feed comes in through the package's own fetch path.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Gateway, scriptedFetch, settle, vectors, quiet } from "./helpers.mjs";

const v = vectors();

async function gatewayAt(signatures) {
  const { fetch, calls } = scriptedFetch({ [v.config.revocations.uri]: () => ({ body: v.feed }) });
  // The vectors are minted for `now`: the package reads the clock through Date.now().
  const gate = await Gateway.create(v.config, { fetch, signatures, log: quiet });
  await gate.ready(5_000);
  assert.equal(calls.length, 1, "the feed is fetched once");
  return gate;
}

function check(name, d, expect, spoofed) {
  const problems = [];
  for (const h of spoofed) if (!d.removeHeaders.includes(h)) problems.push(`${name}: spoofed ${h} not removed`);
  if (expect.code === null && expect.status === 200) {
    if (!d.allow) return [...problems, `${name}: denied ${d.status} ${d.code}, want 200`];
    const set = new Map(d.setHeaders);
    for (const [k, want] of Object.entries(expect.headers ?? {})) {
      if (set.get(k) !== want) problems.push(`${name}: header ${k} = ${set.get(k)}, want ${want}`);
    }
    for (const absent of expect.absent_headers ?? []) if (set.has(absent)) problems.push(`${name}: ${absent} must not be set`);
    return problems;
  }
  if (d.allow) return [...problems, `${name}: allowed, want ${expect.status} ${expect.code}`];
  if (d.status !== expect.status || d.code !== expect.code) problems.push(`${name}: denied ${d.status} ${d.code}, want ${expect.status} ${expect.code}`);
  const headers = new Map(d.headers);
  if (headers.get("x-error-code") !== expect.code) problems.push(`${name}: x-error-code ${headers.get("x-error-code")}`);
  if (headers.get("x-error-id") !== "conformance-id") problems.push(`${name}: x-error-id ${headers.get("x-error-id")}`);
  if (!headers.get("x-error")) problems.push(`${name}: no x-error`);
  const body = JSON.parse(d.body);
  if (body.error !== expect.code || body.error_id !== "conformance-id") problems.push(`${name}: body ${d.body}`);
  return problems;
}

for (const signatures of ["webcrypto", "wasm"]) {
  test(`conformance vectors, signatures checked by ${signatures}`, async (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: v.now * 1000 });
    const gate = await gatewayAt(signatures);
    assert.ok(v.cases.length >= 60);
    const problems = [];
    for (const pass of [0, 1]) {
      for (const c of v.cases) {
        const headers = [...c.request.headers, ["x-request-id", "conformance-id"]];
        const spoofed = c.request.headers.map(([n]) => n.toLowerCase()).filter((n) => n.startsWith("x-auth-"));
        const d = await gate.decide({ method: c.request.method, path: c.request.path, headers });
        problems.push(...check(`${c.name} (pass ${pass})`, d, c.expect, spoofed));
      }
    }
    assert.deepEqual(problems, []);
    const checked = gate.status().signaturesCheckedByRuntime;
    if (signatures === "webcrypto") assert.ok(checked > 0, "WebCrypto answered the asymmetric signatures");
    else assert.equal(checked, 0, "no signature left the module");
    gate.close();
  });
}

test("verify(token) agrees with decide on every bearer case of an authenticated route", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: v.now * 1000 });
  const gate = await gatewayAt("webcrypto");
  let compared = 0;
  for (const c of v.cases) {
    const auth = c.request.headers.filter(([n]) => n.toLowerCase() === "authorization");
    if (c.request.path !== "/api/items" || c.request.method !== "GET" || auth.length !== 1 || !auth[0][1].startsWith("Bearer ")) continue;
    if (c.request.headers.some(([n]) => ["x-api-key", "cookie"].includes(n.toLowerCase()))) continue;
    const token = auth[0][1].slice("Bearer ".length);
    const d = await gate.decide({ method: "GET", path: "/api/items", headers: c.request.headers });
    if (d.allow) {
      const id = await gate.verify(token);
      assert.equal(id.subject, d.identity.subject, c.name);
      assert.deepEqual(id, d.identity, c.name);
    } else {
      await assert.rejects(gate.verify(token), (e) => e.name === "AuthgateError" && e.code === d.code && e.status === d.status, c.name);
    }
    compared++;
  }
  assert.ok(compared >= 40, `compared ${compared} cases`);
  gate.close();
});

test("a bad configuration names its field; bad input is a TypeError", async () => {
  await assert.rejects(Gateway.create({ providers: [], routes: [] }, { log: quiet }), (e) => e.name === "AuthgateConfigError" && e.code === "config_invalid" && e.field === "routes");
  const bad = structuredClone(v.config);
  bad.providers[0].jwks_uri = "ftp://keys.example";
  await assert.rejects(Gateway.create(bad, { log: quiet }), (e) => e.name === "AuthgateConfigError" && e.field.startsWith("providers[0]"));
  await assert.rejects(Gateway.create(v.config, { signatures: "openssl", log: quiet }), (e) => e.field === "options.signatures");
  await assert.rejects(Gateway.create("{not json", { log: quiet }), (e) => e.name === "AuthgateConfigError");
  const gate = await Gateway.create({ routes: [{ prefix: "/", require: "anonymous" }] }, { log: quiet });
  await assert.rejects(gate.decide({ method: "GET", headers: [] }), TypeError);
  await assert.rejects(gate.decide({ method: "GET", path: "/", headers: ["only-a-name"] }), TypeError);
  await assert.rejects(gate.verify(42), TypeError);
  // A NUL would shift every header after it (a value read as a name): refused, not decided.
  for (const headers of [["x-a", "b\0x-auth-subject\0admin"], ["x-a\0authorization", "Bearer x"], { "x-a": "b\0" }]) {
    await assert.rejects(gate.decide({ method: "GET", path: "/", headers }), (e) => e instanceof TypeError && /NUL/.test(e.message), JSON.stringify(headers));
  }
  await assert.rejects(gate.decide({ method: "GET", path: "/a\0b", headers: [] }), TypeError);
  const d = await gate.decide(new Request("http://example.test/anything?x=1"));
  assert.equal(d.allow, true);
  assert.equal(d.identity, null);
  gate.close();
  await assert.rejects(gate.decide({ path: "/" }), /closed/);
});

test("concurrent decisions each get their own answer", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: v.now * 1000 });
  for (const signatures of ["webcrypto", "wasm"]) {
    const gate = await gatewayAt(signatures);
    const decide = (c) => gate.decide({ method: c.request.method, path: c.request.path, headers: [...c.request.headers, ["x-request-id", "conformance-id"]] });
    const summary = (d) => JSON.stringify(d.allow ? [d.status, d.identity?.subject, d.identity?.kind, d.setHeaders] : [d.status, d.code]);
    // Every case in flight at once, three times over (uncached, then cached): WebCrypto answers
    // in any order, and no answer may reach another request.
    const cases = [...v.cases, ...v.cases, ...v.cases];
    const together = await Promise.all(cases.map(decide));
    const alone = [];
    for (const c of v.cases) alone.push(summary(await decide(c)));
    together.forEach((d, i) => assert.equal(summary(d), alone[i % v.cases.length], `${cases[i].name} (${signatures})`));
    gate.close();
  }
});
