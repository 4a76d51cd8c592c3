// The answers as callers receive them. An allowed decision and a valid token cross from the
// module as NUL-separated fields (auth-js/src/flat.rs), everything else as JSON: both must give
// the same objects, a NUL inside a claim must never shift a field, and `identity.claims`,
// parsed only when read, must behave as a plain property (spread, JSON, assignment, freezing).

import assert from "node:assert/strict";
import { test } from "node:test";
import { Gateway, edKey, edToken, quiet } from "./helpers.mjs";

const ISS = "https://answers.test";
const KEYS = ["kind", "subject", "org", "email", "roles", "scopes", "sessionId", "keyId", "issuer", "clientId", "tokenId", "issuedAt", "expiresAt", "claims"];

async function setup(cacheEntries = 0) {
  const k = await edKey("k1");
  const gate = await Gateway.create(
    { providers: [{ issuer: ISS, audiences: ["api"], jwks: { keys: [k.jwk] }, typ: ["at+jwt"] }], routes: [{ prefix: "/", require: "authenticated" }], cache: { max_entries: cacheEntries } },
    { log: quiet },
  );
  return { k, gate };
}

const payloadOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
const bearer = (token) => ({ method: "GET", path: "/api", headers: ["authorization", `Bearer ${token}`] });

test("an allowed decision and a valid token: every field, in the order and types the JSON had", async (t) => {
  const { k, gate } = await setup();
  t.after(() => gate.close());
  const token = await edToken(k, ISS, { org: "org-7", email: "a@b.test", scope: "read write", jti: "jti-1", nested: { a: [1, "x"] } });
  const claims = payloadOf(token);
  const d = await gate.decide(bearer(token));
  assert.equal(d.allow, true);
  assert.equal(d.status, 200);
  assert.equal(d.cacheHit, false);
  assert.equal(d.route, 0);
  assert.deepEqual(Object.keys(d), ["allow", "status", "identity", "setHeaders", "removeHeaders", "cacheHit", "route"]);
  assert.deepEqual(Object.keys(d.identity), KEYS);
  assert.deepEqual({ ...d.identity }, {
    kind: "jwt",
    subject: "user-1",
    org: "org-7",
    email: "a@b.test",
    roles: ["reader"],
    scopes: ["read", "write"],
    sessionId: "sid-1",
    keyId: null,
    issuer: ISS,
    clientId: null,
    tokenId: "jti-1",
    issuedAt: claims.iat,
    expiresAt: claims.exp,
    claims,
  });
  assert.deepEqual(new Map(d.setHeaders).get("x-auth-subject"), "user-1");
  assert.deepEqual(new Map(d.setHeaders).get("x-auth-scope"), "read write");
  assert.deepEqual(d.removeHeaders, []);
  assert.deepEqual(await gate.verify(token), d.identity);
});

test("a NUL inside a claim never shifts a field: the answer crosses as JSON, the same objects", async (t) => {
  const { k, gate } = await setup();
  t.after(() => gate.close());
  // `jti` is not a header value, so a NUL in it is accepted and reaches the identity.
  const token = await edToken(k, ISS, { jti: "a\u0000x-auth-subject\u0000admin", email: "e@x.test" });
  const d = await gate.decide(bearer(token));
  assert.equal(d.allow, true);
  assert.deepEqual(Object.keys(d.identity), KEYS);
  assert.equal(d.identity.tokenId, "a\u0000x-auth-subject\u0000admin");
  assert.equal(d.identity.subject, "user-1");
  assert.equal(d.identity.email, "e@x.test");
  assert.deepEqual(d.identity.claims, payloadOf(token));
  const id = await gate.verify(token);
  assert.deepEqual(Object.keys(id), KEYS);
  assert.deepEqual(id, d.identity);
});

test("identity.claims, parsed when read, acts as a plain property", async (t) => {
  const { k, gate } = await setup(100);
  t.after(() => gate.close());
  const token = await edToken(k, ISS, { deep: { list: [1, 2, { x: "y" }] } });
  const claims = payloadOf(token);
  const first = await gate.decide(bearer(token));
  const again = await gate.decide(bearer(token));
  assert.equal(again.cacheHit, true);
  assert.deepEqual(again.identity, first.identity);
  // Read once: the same object every time after.
  assert.deepEqual(first.identity.claims, claims);
  assert.equal(first.identity.claims, first.identity.claims);
  // Unread: spread, JSON and structuredClone still carry it.
  const fresh = () => gate.verify(token);
  assert.deepEqual({ ...(await fresh()) }.claims, claims);
  assert.deepEqual(JSON.parse(JSON.stringify(await fresh())).claims, claims);
  assert.deepEqual(structuredClone(await fresh()).claims, claims);
  // Assigned before or after reading: the assigned value stays.
  const assigned = await fresh();
  assigned.claims = { replaced: true };
  assert.deepEqual(assigned.claims, { replaced: true });
  assert.equal(Object.getOwnPropertyDescriptor(assigned, "claims").enumerable, true);
  // Frozen before reading: still readable, still equal.
  const frozen = Object.freeze(await fresh());
  assert.deepEqual(frozen.claims, claims);
  assert.deepEqual(frozen.claims, claims);
  // An anonymous route's allow has no identity at all.
  const anon = await Gateway.create(
    { providers: [{ issuer: ISS, audiences: ["api"], jwks: { keys: [k.jwk] } }], routes: [{ prefix: "/", require: "anonymous" }] },
    { log: quiet },
  );
  t.after(() => anon.close());
  const open = await anon.decide({ method: "GET", path: "/", headers: { "x-auth-subject": "spoofed" } });
  assert.equal(open.allow, true);
  assert.equal(open.identity, null);
  assert.deepEqual(open.setHeaders, []);
  assert.deepEqual(open.removeHeaders, ["x-auth-subject"]);
});
