// The middleware over HTTP: an Express app and a Fetch-style handler (`wrap`, `guard`) in
// front of an echo route, driven by real requests on 127.0.0.1. Conformance tokens and API
// keys; spoofed identity headers; repeated authorization headers.

import assert from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import { after, before, test } from "node:test";
import { Gateway, middleware, scriptedFetch, tool, vectors, quiet } from "./helpers.mjs";

const v = vectors();
const express = tool("express");
const header = (name) => v.cases.find((c) => c.name === name).request.headers;
let gate;
let servers = [];

before(async () => {
  // The vectors' tokens were minted for `now`; keep the clock there without faking timers.
  const realNow = Date.now;
  Date.now = () => v.now * 1000 + (realNow() % 1000);
  const { fetch } = scriptedFetch({ [v.config.revocations.uri]: () => ({ body: v.feed }) });
  gate = await Gateway.create(v.config, { fetch, log: quiet });
  await gate.ready(5_000);
});

after(() => {
  gate.close();
  for (const s of servers) s.close();
});

function listen(handler) {
  const server = createServer(handler);
  servers.push(server);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

/** One HTTP request; `headers` as [name, value] pairs (repeats kept). */
function send(port, method, path, headers = [], body = undefined) {
  return new Promise((resolve, reject) => {
    // A flat header list keeps repeats; with it Node adds no `host`, which HTTP/1.1 requires.
    const flat = [["host", `127.0.0.1:${port}`], ...headers].flat();
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers: flat }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** node:http → Fetch `Request` → handler → node:http, as Deno.serve and Bun.serve do natively. */
function fetchServer(handler) {
  return listen(async (req, res) => {
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const response = await handler(new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers, body }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(await response.text());
  });
}

const echoOf = (headers) => Object.fromEntries([...headers].filter(([k]) => k.startsWith("x-auth-")));

test("Express: allowed requests reach the route with identity headers, denials never do", async () => {
  const app = express();
  let reached = 0;
  app.use(middleware.express(gate));
  app.get("/api/items", (req, res) => {
    reached++;
    const raw = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase().startsWith("x-auth-")) raw.push(req.rawHeaders[i].toLowerCase());
    res.json({ identity: req.authgate, headers: echoOf(Object.entries(req.headers)), raw });
  });
  app.post("/api/items", (req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (body += c));
    req.on("end", () => res.json({ subject: req.authgate.subject, body }));
  });
  const port = await listen(app);

  const posted = await send(port, "POST", "/api/items", [...header("eddsa_valid"), ["content-type", "text/plain"]], "the body, untouched");
  assert.deepEqual(JSON.parse(posted.body), { subject: "user-1", body: "the body, untouched" });

  const ok = await send(port, "GET", "/api/items", [...header("eddsa_valid"), ["x-auth-subject", "spoofed"], ["x-auth-roles", "admin"]]);
  assert.equal(ok.status, 200, JSON.stringify(ok));
  const seen = JSON.parse(ok.body);
  assert.equal(seen.identity.subject, "user-1");
  assert.equal(seen.headers["x-auth-subject"], "user-1");
  assert.equal(seen.headers["x-auth-roles"], "reader");
  assert.equal(seen.raw.filter((h) => h === "x-auth-subject").length, 1, "the spoofed raw header is gone");

  const apiKey = await send(port, "GET", "/api/items", header("api_key_valid_headers"));
  assert.equal(apiKey.status, 200, apiKey.body);
  assert.equal(JSON.parse(apiKey.body).identity.kind, "api_key");

  const before = reached;
  for (const [name, status, code] of [
    ["eddsa_tampered_signature", 401, "signature_invalid"],
    ["revoked_sid", 401, "session_revoked"],
    ["api_key_revoked", 401, "api_key_revoked"],
  ]) {
    const r = await send(port, "GET", "/api/items", [...header(name), ["x-request-id", "mw-1"]]);
    assert.deepEqual([r.status, r.headers["x-error-code"], r.headers["x-error-id"]], [status, code, "mw-1"], name);
    assert.deepEqual(JSON.parse(r.body), { error: code, error_description: r.headers["x-error"], error_id: "mw-1" });
  }
  // Two authorization fields (Node's req.headers would keep only the first): refused.
  const twice = await send(port, "GET", "/api/items", [...header("eddsa_valid"), ...header("rs256_valid")]);
  assert.deepEqual([twice.status, twice.headers["x-error-code"]], [400, "conflicting_credentials"], twice.body);
  assert.equal(reached, before, "no denied request reached the route");
});

test("Express: a router mounted under a prefix is judged by the full path the client sent", async () => {
  // Inside a router mounted at /admin, req.url is "/users"; the rules must see "/admin/users"
  // (the `/admin` rule wants the admin role; `/` only a login).
  const app = express();
  const admin = express.Router();
  admin.use(middleware.express(gate));
  admin.get("/users", (req, res) => res.json({ subject: req.authgate.subject }));
  app.use("/admin", admin);
  const port = await listen(app);
  const reader = await send(port, "GET", "/admin/users", header("eddsa_valid"));
  assert.deepEqual([reader.status, reader.headers["x-error-code"]], [403, "insufficient_role"], reader.body);
});

test("Fetch-style: wrap hands the handler a request carrying the identity; guard answers denials", async () => {
  const wrapped = middleware.wrap(gate, async (req) =>
    Response.json({ headers: echoOf(req.headers), subject: middleware.identityOf(req)?.subject, body: req.body ? await req.text() : null }),
  );
  const port = await fetchServer(wrapped);
  const posted = await send(port, "POST", "/api/items", [...header("es256_valid"), ["content-type", "text/plain"]], "the body, untouched");
  assert.equal(JSON.parse(posted.body).body, "the body, untouched", posted.body);
  const ok = await send(port, "GET", "/api/items", [...header("rs256_valid"), ["x-auth-org", "spoofed-org"]]);
  assert.equal(ok.status, 200, JSON.stringify(ok));
  const seen = JSON.parse(ok.body);
  assert.equal(seen.subject, "user-1");
  assert.equal(seen.headers["x-auth-org"], "org-1");
  const denied = await send(port, "GET", "/admin/users", header("eddsa_valid"));
  assert.deepEqual([denied.status, denied.headers["x-error-code"]], [403, "insufficient_role"]);

  const check = middleware.guard(gate);
  const port2 = await fetchServer(async (req) => (await check(req)) ?? Response.json({ subject: middleware.identityOf(req)?.subject ?? null }));
  const allowed = await send(port2, "GET", "/api/items", header("es256_valid"));
  assert.deepEqual(JSON.parse(allowed.body), { subject: "user-1" });
  const missing = await send(port2, "GET", "/api/items");
  assert.deepEqual([missing.status, missing.headers["x-error-code"]], [401, "credential_missing"]);
  assert.match(missing.headers["www-authenticate"], /^Bearer/);
  const anonymous = await send(port2, "GET", "/health");
  assert.deepEqual(JSON.parse(anonymous.body), { subject: null });
});
