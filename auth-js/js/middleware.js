// Middleware over a Gateway: Express/Fastify-style `(req, res, next)` and Fetch-style handlers
// (Next.js middleware, Hono, Deno.serve, Bun.serve). Each decides once, answers a denial as
// the gateways do, and hands an allowed request on with the identity headers set and any
// client-sent copies removed.

const decisions = new WeakMap();

/** The identity authgate proved for `request` (after `guard` or `wrap`), or null. */
export function identityOf(request) {
  return decisions.get(request)?.identity ?? null;
}

/** A denial as a Fetch `Response`: status, the gateways' error headers, JSON body. */
export function denialResponse(decision) {
  return new Response(decision.body, { status: decision.status, headers: decision.headers });
}

/** Fetch-style guard: `await guard(request)` is a `Response` to send (denied) or `undefined`
 * (allowed; `identityOf(request)` says who). The request itself is not changed. */
export function guard(gate) {
  return async (request) => {
    const decision = await gate.decide(request);
    if (!decision.allow) return denialResponse(decision);
    decisions.set(request, decision);
    return undefined;
  };
}

/** Wraps a Fetch-style handler: denied requests never reach it; allowed ones reach it as a new
 * `Request` whose headers carry the identity (client-sent `x-auth-*` removed). */
export function wrap(gate, handler) {
  return async (request, ...rest) => {
    const decision = await gate.decide(request);
    if (!decision.allow) return denialResponse(decision);
    const headers = new Headers(request.headers);
    for (const name of decision.removeHeaders) headers.delete(name);
    for (const [name, value] of decision.setHeaders) headers.set(name, value);
    const forwarded = new Request(request, { headers });
    decisions.set(forwarded, decision);
    return handler(forwarded, ...rest);
  };
}

/** Express / Connect / Fastify (`middie`) middleware. Reads the raw header list (Node's parsed
 * `req.headers` drops repeated `authorization` fields, which the gateways refuse), answers
 * denials itself, and on allow rewrites `req.headers` and `req.rawHeaders` and sets
 * `req.authgate` to the identity. */
export function express(gate) {
  return (req, res, next) => {
    const request = { method: req.method, path: req.originalUrl ?? req.url, headers: req.rawHeaders ?? req.headers };
    gate.decide(request).then((decision) => {
      if (!decision.allow) {
        res.statusCode = decision.status;
        for (const [name, value] of decision.headers) res.setHeader(name, value);
        res.end(decision.body);
        return;
      }
      const drop = new Set([...decision.removeHeaders, ...decision.setHeaders.map(([name]) => name)]);
      for (const name of drop) delete req.headers[name];
      for (const [name, value] of decision.setHeaders) req.headers[name] = value;
      if (Array.isArray(req.rawHeaders)) {
        const raw = [];
        for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
          if (!drop.has(req.rawHeaders[i].toLowerCase())) raw.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
        }
        for (const [name, value] of decision.setHeaders) raw.push(name, value);
        req.rawHeaders.splice(0, req.rawHeaders.length, ...raw);
      }
      req.authgate = decision.identity;
      next();
    }, next);
  };
}
