// The comparison: a JavaScript gateway doing the same job with `jose` (npm): verify a bearer JWT
// against a local JWKS (issuer, audience, typ, algorithms, exp/nbf with 30 s leeway), strip
// client x-auth-* headers, set the identity headers, forward to the ORIGIN service.
import { createLocalJWKSet, jwtVerify } from "jose";

let keys;

export default {
  async fetch(request, env) {
    keys ??= createLocalJWKSet(JSON.parse(env.JWKS));
    const auth = request.headers.get("authorization") ?? "";
    const token = auth.startsWith("Bearer ") ? auth.slice(7) : null;
    const deny = (code) =>
      new Response(JSON.stringify({ error: code }), {
        status: 401,
        headers: { "content-type": "application/json", "x-error-code": code, "www-authenticate": 'Bearer error="invalid_token"' },
      });
    if (!token) return deny("credential_missing");
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: env.ISSUER,
        audience: "api",
        typ: "at+jwt",
        algorithms: ["EdDSA", "ES256", "RS256"],
        clockTolerance: 30,
      }));
    } catch {
      return deny("token_invalid");
    }
    const headers = new Headers(request.headers);
    for (const name of [...headers.keys()]) if (name.startsWith("x-auth-")) headers.delete(name);
    headers.set("x-auth-subject", String(payload.sub));
    headers.set("x-auth-method", "jwt");
    headers.set("x-auth-roles", (payload.roles ?? []).join(","));
    if (payload.org) headers.set("x-auth-org", String(payload.org));
    if (payload.sid) headers.set("x-auth-session", String(payload.sid));
    if (payload.email) headers.set("x-auth-email", String(payload.email));
    return env.ORIGIN.fetch(new Request(request, { headers, redirect: "manual" }));
  },
};
