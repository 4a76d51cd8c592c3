import type { Decision, Denied, Gateway, Identity } from "./index.js";

export function identityOf(request: Request): Identity | null;
export function denialResponse(decision: Denied): Response;
export function guard(gate: Gateway): (request: Request) => Promise<Response | undefined>;
export function wrap<R extends unknown[]>(
  gate: Gateway,
  handler: (request: Request, ...rest: R) => Response | Promise<Response>,
): (request: Request, ...rest: R) => Promise<Response>;
/** `(req, res, next)` for Express, Connect and Fastify's middie; sets `req.authgate`. */
export function express(gate: Gateway): (req: any, res: any, next: (err?: unknown) => void) => void;
export type { Decision };
