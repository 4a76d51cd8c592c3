// Shared by the package's tests: where the built package is, the conformance vectors, tools
// from tools/node_modules (jose, express), and a scriptable `fetch` for JWKS and feed.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const PKG = process.env.AUTHGATE_JS_PKG ?? join(ROOT, "target/npm/package");

export const { Gateway, AuthgateError, flatHeaders } = await import(pathToFileURL(join(PKG, "index.js")).href);
export const middleware = await import(pathToFileURL(join(PKG, "middleware.js")).href);

/** A package from tools/node_modules (pinned in tools/package-lock.json). */
export const tool = createRequire(join(ROOT, "tools/package.json"));

export function vectors(file = process.env.AUTHGATE_VECTORS ?? join(ROOT, "tests/conformance/vectors.json")) {
  return JSON.parse(readFileSync(file, "utf8"));
}

/** A `fetch` answering from `routes` (url → function returning {status, body, etag} or
 * throwing); records every call. */
export function scriptedFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, headers: { ...(init?.headers ?? {}) }, at: Date.now() });
    const route = routes[url];
    if (!route) return new Response("not found", { status: 404 });
    const r = await route(init);
    const headers = r.etag ? { etag: r.etag } : {};
    return new Response(typeof r.body === "string" ? r.body : JSON.stringify(r.body), { status: r.status ?? 200, headers });
  };
  return { fetch, calls };
}

/** Lets every pending promise and microtask run (fetch hooks resolve in several turns). */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export const quiet = () => {};

/** An ES module from tools/node_modules. */
export async function importTool(name) {
  return import(pathToFileURL(tool.resolve(name)).href);
}

/** An Ed25519 signing key (jose) and its public JWK under `kid`. */
export async function edKey(kid) {
  const jose = await importTool("jose");
  const { publicKey, privateKey } = await jose.generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" };
  return { kid, jwk, privateKey };
}

/** An access token from `iss` signed with `k` (an `edKey`), valid for an hour from `Date.now()`. */
export async function edToken(k, iss, claims = {}) {
  const jose = await importTool("jose");
  const now = Math.floor(Date.now() / 1000);
  return new jose.SignJWT({ sub: "user-1", sid: "sid-1", roles: ["reader"], ...claims })
    .setProtectedHeader({ alg: "EdDSA", kid: k.kid, typ: "at+jwt" })
    .setIssuer(iss)
    .setAudience("api")
    .setIssuedAt(now - 5)
    .setExpirationTime(now + 3600)
    .sign(k.privateKey);
}
