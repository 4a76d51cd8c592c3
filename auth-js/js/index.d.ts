// Types of @authgate/verifier (see README.md and docs/npm-package.md).

/** Who the caller proved to be. */
export interface Identity {
  kind: "jwt" | "api_key";
  subject: string;
  org: string | null;
  email: string | null;
  roles: string[];
  scopes: string[];
  sessionId: string | null;
  keyId: string | null;
  issuer: string | null;
  clientId: string | null;
  tokenId: string | null;
  /** `iat`, unix seconds. */
  issuedAt: number | null;
  /** `exp`, unix seconds. */
  expiresAt: number | null;
  /** The verified claims (JWT payload or API key claims), parsed when first read. */
  claims: Record<string, unknown> | null;
}

export interface Allowed {
  allow: true;
  status: 200;
  /** null on anonymous routes. */
  identity: Identity | null;
  /** Headers to set on the request passed on (identity headers; a rewritten `cookie`). */
  setHeaders: [string, string][];
  /** Headers to remove from it first (client-sent identity headers, stripped credentials). */
  removeHeaders: string[];
  cacheHit: boolean;
  /** Index of the route rule that matched. */
  route: number;
}

export interface Denied {
  allow: false;
  status: 400 | 401 | 403 | 405 | 500 | 503 | number;
  /** Stable error code (`token_expired`, `session_revoked`, …; docs/errors.md). */
  code: string;
  description: string;
  /** `x-error-id`: the caller's request id, or one the gateway made. */
  errorId: string;
  /** Response headers: content-type, cache-control, x-error, x-error-code, x-error-id, www-authenticate. */
  headers: [string, string][];
  removeHeaders: string[];
  /** The JSON body `{error, error_description, error_id}`. */
  body: string;
}

export type Decision = Allowed | Denied;

export type HeadersLike = Headers | [string, string][] | string[] | Record<string, string | string[] | undefined>;

export interface RequestLike {
  method?: string;
  /** The request target (path and query)… */
  path?: string;
  /** …or an absolute URL. */
  url?: string;
  headers?: HeadersLike;
}

export interface SourceStatus {
  source: string;
  url: string;
  /** Unix milliseconds. */
  lastSuccess: number | null;
  consecutiveFailures: number;
  hasMaterial: boolean;
}

export interface Status {
  sources: SourceStatus[];
  feedVersion: number | null;
  feedExpiresAt: number | null;
  revokedEntries: number;
  cachedTokens: number;
  signaturesCheckedByRuntime: number;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Options {
  /** How JWKS and the feed are fetched (default: the global `fetch`). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** "webcrypto" (default): EdDSA, ES256, RS256 checked by `crypto.subtle`; "wasm": in the module. */
  signatures?: "webcrypto" | "wasm";
  log?: (level: LogLevel, message: string) => void;
  /** Minimum level of the default console logger (default "warn"). */
  logLevel?: LogLevel;
  /** Header a caller's request id is read from (default "x-request-id"). */
  requestIdHeader?: string;
  /** The WebAssembly module, where the runtime cannot read the file beside the package. */
  wasm?: WebAssembly.Module | BufferSource | URL | Response;
}

export class AuthgateError extends Error {
  readonly code: string;
  readonly status: number;
}

/** Appends to `out` when given, and returns it. */
export function flatHeaders(headers: HeadersLike | null | undefined, out?: string[]): string[];

export class Gateway {
  private constructor();
  /** Throws an Error named `AuthgateConfigError` (`code` "config_invalid", `field`) on a bad configuration. */
  static create(config: object | string, options?: Options): Promise<Gateway>;
  decide(request: Request | RequestLike): Promise<Decision>;
  /** Resolves to the identity; rejects with an `AuthgateError`. */
  verify(token: string): Promise<Identity>;
  ready(timeoutMs?: number): Promise<void>;
  status(): Status;
  close(): void;
}
