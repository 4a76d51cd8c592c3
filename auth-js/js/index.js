// @authgate/verifier — authgate's verifier for JavaScript runtimes: the gateways' configuration,
// decisions, API keys and signed revocation feed, in WebAssembly (auth-core), with signatures
// checked by the runtime's WebCrypto. This file is the host: it loads the module, fetches
// material with the runtime's `fetch` when the core says so, and keeps one timer.

import init, { Core } from "./authgate.js";

let loading = null;

/** Loads the WebAssembly module once: from `source` when given (a `WebAssembly.Module`, bytes
 * or a URL), else from the file beside this one (read from disk where there is one). */
function load(source) {
  loading ??= (async () => {
    if (source !== undefined) return init({ module_or_path: source });
    const url = new URL("./authgate_bg.wasm", import.meta.url);
    if (url.protocol === "file:") {
      const { readFile } = await import("node:fs/promises");
      return init({ module_or_path: await readFile(url) });
    }
    return init({ module_or_path: url });
  })();
  return loading;
}

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };

function consoleLogger(minimum) {
  const floor = LEVELS[minimum] ?? LEVELS.warn;
  return (level, message) => {
    if ((LEVELS[level] ?? 0) < floor) return;
    (level === "warn" || level === "error" ? console.warn : console.log)(`authgate: ${message}`);
  };
}

/** A refused token (`verify`) or a request the gateway would deny. */
export class AuthgateError extends Error {
  constructor(code, status, description) {
    super(description);
    this.name = "AuthgateError";
    this.code = code;
    this.status = status;
  }
}

/** Headers in any of the shapes callers hold, as the core's flat `[name, value, …]` list:
 * a Fetch `Headers`, `[[name, value], …]`, Node's `rawHeaders` (flat), or an object
 * (`{name: value | value[]}`). Repeated fields stay repeated. Appended to `out` when given. */
export function flatHeaders(headers, out = []) {
  if (headers == null) return out;
  if (typeof headers.forEach === "function" && typeof headers.get === "function" && !Array.isArray(headers)) {
    headers.forEach((value, name) => out.push(name, value));
    return out;
  }
  if (Array.isArray(headers)) {
    if (headers.length && Array.isArray(headers[0])) {
      for (const [name, value] of headers) out.push(String(name), String(value));
      return out;
    }
    for (const item of headers) out.push(String(item));
    return out;
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push(name, String(v));
  }
  return out;
}

/** The request target (path and query) of a URL or a target. */
function target(urlOrPath) {
  if (urlOrPath.startsWith("/")) return urlOrPath;
  const u = new URL(urlOrPath);
  return u.pathname + u.search;
}

/** A Fetch `Request` or a plain description of one as the core's input: `[method, target,
 * name, value, …]` joined with NUL, as UTF-8 — one buffer across the boundary — and how many
 * items it holds (the core refuses a count that does not match: an item with a NUL in it). */
function input(request) {
  if (request == null || typeof request !== "object") throw new TypeError("decide(request): a Request or {method, path, headers}");
  const path = request.path ?? (request.url !== undefined ? target(String(request.url)) : undefined);
  if (typeof path !== "string") throw new TypeError("decide(request): request.path (or request.url) is missing");
  const items = flatHeaders(request.headers, [String(request.method ?? "GET"), path]);
  return [encoded(items.join("\0")), items.length];
}

/** The core's answer as an object: JSON text (`{…}`), or the NUL-separated fields of an
 * allowed decision (`A…`) or a valid token (`V…`) — auth-js/src/flat.rs gives the layout;
 * object literals built from a split are far cheaper than `JSON.parse` of the same answer. */
function answerOf(text) {
  if (text.charCodeAt(0) === 123 /* { */) return JSON.parse(text);
  const at = { fields: text.split("\0"), i: 1 };
  if (at.fields[0] === "V") return { valid: true, identity: identityAt(at) };
  const f = at.fields;
  const cacheHit = f[1] === "1";
  const route = Number(f[2]);
  at.i = 3;
  let identity = null;
  if (f[3] === "-") at.i = 4;
  else identity = identityAt(at);
  let i = at.i;
  const setHeaders = [];
  for (let n = Number(f[i++]); n > 0; n--, i += 2) setHeaders.push([f[i], f[i + 1]]);
  const count = Number(f[i++]);
  const removeHeaders = f.slice(i, i + count);
  return { allow: true, status: 200, identity, setHeaders, removeHeaders, cacheHit, route };
}

/** Field `k` of a presence mask is there ("1"). */
const has = (mask, k) => mask.charCodeAt(k) === 49;

function identityAt(at) {
  const f = at.fields;
  let i = at.i;
  const kind = f[i++];
  const mask = f[i++];
  const subject = f[i++];
  const org = has(mask, 0) ? f[i] : null;
  const email = has(mask, 1) ? f[i + 1] : null;
  i += 2;
  let n = Number(f[i++]);
  const roles = f.slice(i, (i += n));
  n = Number(f[i++]);
  const scopes = f.slice(i, (i += n));
  const sessionId = has(mask, 2) ? f[i] : null;
  const keyId = has(mask, 3) ? f[i + 1] : null;
  const issuer = has(mask, 4) ? f[i + 2] : null;
  const clientId = has(mask, 5) ? f[i + 3] : null;
  const tokenId = has(mask, 6) ? f[i + 4] : null;
  const issuedAt = has(mask, 7) ? Number(f[i + 5]) : null;
  const expiresAt = has(mask, 8) ? Number(f[i + 6]) : null;
  const claims = has(mask, 9) ? f[i + 7] : null;
  at.i = i + 8;
  return {
    kind, subject, org, email, roles, scopes, sessionId, keyId, issuer, clientId, tokenId, issuedAt, expiresAt,
    // Parsed when first read (spreading, `JSON.stringify` and `structuredClone` read it too):
    // most decisions are used for their headers and subject alone.
    get claims() {
      return settle(this, claims === null ? null : JSON.parse(claims));
    },
    set claims(value) {
      settle(this, value);
    },
  };
}

/** Replaces the `claims` accessor of `identity` with a plain property holding `value`. */
function settle(identity, value) {
  try {
    Object.defineProperty(identity, "claims", { value, writable: true, enumerable: true, configurable: true });
  } catch {
    // A frozen identity keeps its accessor (each read parses again).
  }
  return value;
}

const CREATING = Symbol("authgate.create");

// Strings go to the core as UTF-8 bytes: encoded natively, copied in one piece (the bindings
// would copy a string character by character in JavaScript), through one reused buffer (a
// fresh `Uint8Array` per request is memory the garbage collector must find and free).
const utf8 = new TextEncoder();
let scratch = new Uint8Array(4096);

/** `text` as UTF-8, in the shared buffer: valid until the next call. */
function encoded(text) {
  if (text.length * 3 > scratch.length) scratch = new Uint8Array(text.length * 3);
  return scratch.subarray(0, utf8.encodeInto(text, scratch).written);
}

/** One gateway: configuration, keys and feed, verified-token cache. Create with
 * `await Gateway.create(config, options)`. */
export class Gateway {
  #core;
  #timer = null;
  #closed = false;
  #fetch;

  constructor(token) {
    if (token !== CREATING) throw new TypeError("use `await Gateway.create(config, options)`");
  }

  /**
   * @param config the gateways' configuration (object or JSON text; docs/config.md)
   * @param options `{fetch, signatures: "webcrypto" | "wasm", log, logLevel, requestIdHeader, wasm}`
   */
  static async create(config, options = {}) {
    await load(options.wasm);
    const gate = new Gateway(CREATING);
    gate.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const log = options.log ?? consoleLogger(options.logLevel ?? "warn");
    const json = typeof config === "string" ? config : JSON.stringify(config);
    gate.#core = new Core(json, options.signatures ?? "webcrypto", options.requestIdHeader ?? "x-request-id", {
      fetch: (url, headers, timeoutMs) => gate.#fetchMaterial(url, headers, timeoutMs),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      log,
      changed: () => gate.#arm(),
    });
    gate.#core.run_due();
    return gate;
  }

  /** Decides a request (a Fetch `Request` or `{method, path | url, headers}`). Resolves to
   * `{allow: true, identity, setHeaders, removeHeaders, cacheHit}` or `{allow: false, status,
   * code, description, errorId, headers, body}`. */
  async decide(request) {
    this.#open();
    // Cache hits, API keys, HS256 and early denials are answered at once; the rest wait for
    // a WebCrypto signature check or, at a cold start, for material.
    const [bytes, items] = input(request);
    return answerOf(await this.#finish(this.#core.decide_now(bytes, items)));
  }

  /** The identity a bearer token proves (signature, claims, revocation feed), or an
   * `AuthgateError` with the gateways' error code. */
  async verify(token) {
    this.#open();
    if (typeof token !== "string") throw new TypeError("verify(token): a string");
    const r = answerOf(await this.#finish(this.#core.check_now(encoded(token))));
    if (!r.valid) throw new AuthgateError(r.code, r.status, r.description);
    return r.identity;
  }

  /** Resolves once every JWKS and the feed are in; rejects after `timeoutMs`. */
  async ready(timeoutMs = 10_000) {
    this.#open();
    const deadline = Date.now() + timeoutMs;
    while (!this.#core.is_ready()) {
      if (Date.now() >= deadline) throw new Error(`authgate: material not ready within ${timeoutMs} ms`);
      await this.#core.run_due();
      if (!this.#core.is_ready()) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Material and cache state: sources, feed version, cached tokens, runtime signature checks. */
  status() {
    this.#open();
    return JSON.parse(this.#core.status());
  }

  /** Stops the refresh timer; the gateway answers nothing afterwards. */
  close() {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#core?.free();
    this.#core = null;
  }

  /** What the core answered (JSON text), or the rest of what it left pending under a handle:
   * WebCrypto's verdict on the signature it asks about (awaited here, in JavaScript), then the
   * core again; or, when the core needs more than a started check (a key to import, material
   * on its way), its own loop (`resume`). */
  async #finish(answer) {
    const core = this.#core;
    while (typeof answer === "number") {
      const check = core.ask(answer);
      if (check === undefined) return core.resume(answer);
      let verdict;
      try {
        verdict = await check;
      } catch (e) {
        verdict = e instanceof Error ? e : new Error(String(e));
      }
      this.#open(); // closed while WebCrypto worked: the core is gone
      answer = core.answer_now(answer, verdict);
    }
    return answer;
  }

  #open() {
    if (this.#closed) throw new Error("authgate: this Gateway is closed");
  }

  /** One timer at the core's next wake-up; it never keeps a process alive (`unref`). */
  #arm() {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const ms = this.#core.next_wake_ms();
    if (ms < 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#closed) this.#core.run_due();
    }, Math.min(ms, 2 ** 31 - 1));
    if (typeof this.#timer?.unref === "function") this.#timer.unref();
    else if (typeof globalThis.Deno?.unrefTimer === "function") globalThis.Deno.unrefTimer(this.#timer);
  }

  async #fetchMaterial(url, headers, timeoutMs) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      const resp = await this.#fetch(url, { method: "GET", headers, signal: controller.signal });
      const body = new Uint8Array(await resp.arrayBuffer());
      return { status: resp.status, etag: resp.headers.get("etag") ?? undefined, body };
    } finally {
      clearTimeout(timer);
    }
  }
}
