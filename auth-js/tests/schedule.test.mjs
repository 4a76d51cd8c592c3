// The package's fetch schedule under fake timers (node:test mock timers for setTimeout and
// Date): cold start, key rotation, an unknown kid and its cooldown, a feed revocation picked up
// on the poll interval, and the stale bounds. The issuer is jose (tools/node_modules) behind a
// scripted fetch.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Gateway, edKey, edToken, importTool, scriptedFetch, settle, quiet } from "./helpers.mjs";

const jose = await importTool("jose");
const ISS = "https://issuer.test";
const JWKS = `${ISS}/jwks.json`;
const FEED = `${ISS}/v1/revocations`;
const T0 = 1_800_000_000_000;

const key = edKey;
const token = (k, claims) => edToken(k, ISS, claims);

function feed(k, ver, revokedSids = []) {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + 3600;
  return new jose.SignJWT({ ver, watermark: now - 60, revoked: { sid: revokedSids.map((id) => ({ id, exp })), jti: [], sub: [], api_key: [] } })
    .setProtectedHeader({ alg: "EdDSA", kid: k.kid, typ: "revocations+jwt" })
    .setIssuer(ISS)
    .setIssuedAt(now)
    .setExpirationTime(now + 120)
    .sign(k.privateKey);
}

const CONFIG = {
  providers: [{ issuer: ISS, audiences: ["api"], jwks_uri: JWKS, typ: ["at+jwt"] }],
  revocations: { uri: FEED, refresh_s: 5, issuer: ISS },
  fetch: { jwks_refresh_s: 60, jwks_max_stale_s: 300, unknown_kid_cooldown_s: 30, retry_min_s: 1, retry_max_s: 10, cold_start_wait_ms: 3000 },
  routes: [{ prefix: "/", require: "authenticated" }],
};

/** An issuer whose JWKS and feed the test changes, served through a scripted fetch. */
async function issuer() {
  const a = await key("a");
  const state = { keys: [a.jwk], feed: await feed(a, 1), jwksStatus: 200, feedStatus: 200 };
  const { fetch, calls } = scriptedFetch({
    [JWKS]: () => ({ status: state.jwksStatus, body: { keys: state.keys } }),
    [FEED]: () => ({ status: state.feedStatus, body: state.feed }),
  });
  const count = (url) => calls.filter((c) => c.url === url).length;
  return { a, state, fetch, calls, count };
}

const get = (gate, tok) => gate.decide({ method: "GET", path: "/orders", headers: [["authorization", `Bearer ${tok}`]] });

/** Advances the fake clock in steps, letting fetches finish between them. */
async function advance(t, ms, step = 1000) {
  for (let done = 0; done < ms; done += step) {
    t.mock.timers.tick(Math.min(step, ms - done));
    await settle();
  }
}

test("cold start, rotation, unknown kid with its cooldown", { timeout: 30_000 }, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const is = await issuer();
  const gate = await Gateway.create(CONFIG, { fetch: is.fetch, log: quiet });
  // Cold start: the first request waits for the JWKS and the feed instead of a 503.
  const first = await get(gate, await token(is.a));
  assert.equal(first.allow, true, JSON.stringify(first));
  assert.deepEqual([is.count(JWKS), is.count(FEED)], [1, 1]);
  assert.ok(is.calls[0].url === JWKS && is.calls[1].url === FEED, "keys before the feed they sign");

  // Rotation: the issuer publishes b and signs with it; the unknown kid asks for one refetch.
  const b = await key("b");
  is.state.keys = [is.a.jwk, b.jwk];
  const withB = await token(b);
  const during = await get(gate, withB);
  await settle();
  assert.equal(is.count(JWKS), 2, "one refetch for the unknown kid");
  if (!during.allow) assert.equal(during.code, "unknown_kid");
  assert.equal((await get(gate, withB)).allow, true, "accepted once the new JWKS is in");

  // A kid the issuer never published: refused, and within the cooldown no further refetch.
  const c = await key("c");
  const withC = await token(c);
  for (let i = 0; i < 5; i++) assert.equal((await get(gate, withC)).code, "unknown_kid");
  await settle();
  assert.equal(is.count(JWKS), 2, "the cooldown holds refetches back");
  // Past the cooldown the kid is asked about once more: one refetch for the whole window.
  await advance(t, 31_000);
  assert.equal((await get(gate, withC)).code, "unknown_kid");
  await settle();
  assert.equal(is.count(JWKS), 3, "one refetch per cooldown window, not one per request");
  gate.close();
});

test("a revocation in the feed is applied on the next poll, with the etag sent back", { timeout: 30_000 }, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const is = await issuer();
  const { fetch } = scriptedFetch({
    [JWKS]: () => ({ body: { keys: is.state.keys } }),
    [FEED]: (init) => {
      is.calls.push({ url: FEED, headers: { ...(init?.headers ?? {}) } });
      return { body: is.state.feed, etag: `"v${is.state.ver ?? 1}"` };
    },
  });
  const gate = await Gateway.create(CONFIG, { fetch, log: quiet });
  const tok = await token(is.a);
  assert.equal((await get(gate, tok)).allow, true);
  assert.equal((await get(gate, tok)).cacheHit, true);
  is.state.ver = 2;
  is.state.feed = await feed(is.a, 2, ["sid-1"]);
  await advance(t, 6_000);
  const d = await get(gate, tok);
  assert.equal(d.allow, false);
  assert.equal(d.code, "session_revoked", "the cached identity is checked against the new feed");
  assert.equal(gate.status().feedVersion, 2);
  const polls = is.calls.filter((c) => c.url === FEED);
  assert.ok(polls.length >= 2);
  assert.equal(polls[1].headers["if-none-match"], '"v1"', "the poll carries the etag it was given");
  // Other sessions are untouched.
  assert.equal((await get(gate, await token(is.a, { sid: "sid-2" }))).allow, true);
  gate.close();
});

test("stale bounds: the feed past its exp and keys past jwks_max_stale_s refuse with 503", { timeout: 30_000 }, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const is = await issuer();
  const gate = await Gateway.create(CONFIG, { fetch: is.fetch, log: quiet });
  const tok = await token(is.a);
  assert.equal((await get(gate, tok)).allow, true);
  // The auth-server goes away: every fetch fails from now on.
  is.state.feedStatus = 500;
  is.state.jwksStatus = 500;
  await advance(t, 100_000, 5_000);
  assert.equal((await get(gate, tok)).allow, true, "within the feed's exp (120 s) the last feed serves");
  await advance(t, 25_000, 5_000);
  const stale = await get(gate, tok);
  assert.deepEqual([stale.status, stale.code], [503, "revocations_stale"]);
  assert.equal(gate.status().sources.find((s) => s.source === "revocations").consecutiveFailures > 0, true);
  // The issuer comes back: fresh feed and keys, accepted again.
  is.state.feed = await feed(is.a, 3);
  is.state.feedStatus = 200;
  is.state.jwksStatus = 200;
  await advance(t, 15_000);
  assert.equal((await get(gate, tok)).allow, true, "recovered");

  // Keys: a feed-free gateway, keys unreachable past jwks_max_stale_s (300 s).
  const noFeed = { ...CONFIG, revocations: undefined };
  delete noFeed.revocations;
  const gate2 = await Gateway.create(noFeed, { fetch: is.fetch, log: quiet });
  const tok2 = await token(is.a);
  assert.equal((await get(gate2, tok2)).allow, true);
  is.state.jwksStatus = 500;
  await advance(t, 280_000, 10_000);
  assert.equal((await get(gate2, await token(is.a, { sid: "s3" }))).allow, true, "inside the stale bound");
  await advance(t, 30_000, 10_000);
  const gone = await get(gate2, await token(is.a, { sid: "s4" }));
  assert.deepEqual([gone.status, gone.code], [503, "keys_unavailable"]);
  gate.close();
  gate2.close();
});
