"""What every gateway suite (tests/gateways: both gateways, tests/plugin: Envoy only,
tests/worker: workerd only) stands on: the fixture issuer that serves JWKS and the revocation
feed, the echo upstream, a gateway document with one issuer whose JWKS is fetched (`Setup`:
tokens, API keys and feeds signed the way the auth-server signs them), the pytest fixtures for
them, and the checks of an answer. One copy, so every gateway is tested against the same issuer
behaviour and held to the same answers."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import importlib.util
import json
import socket
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance"
# How often the fixture servers look whether they are to stop (the standard library's 0.5 s
# would add up to a second to every test's teardown).
SHUTDOWN_POLL_S = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_mint():
    """tests/conformance/mint.py as a module (its Minter/Keys sign the suites' own tokens)."""
    name = "authgate_mint"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CONFORMANCE / "mint.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Bounded polling: returns the first truthy value of predicate(), or fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_request(port: int, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 10):
    """One request to 127.0.0.1:port on a fresh connection, sent exactly as given (duplicate
    headers allowed, no Accept-Encoding added, `host` only when not given). Returns (status,
    headers dict with lowercase names, last value wins, body bytes)."""
    headers = list(headers)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True, skip_host=any(n.lower() == "host" for n, _ in headers))
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        if body is not None:
            conn.send(body)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


class Issuer:
    """Serves /jwks/<n>.json and /v1/revocations from memory; counts every request per path (with
    its time and headers), honours If-None-Match, can require the feed credential, can delay
    answers, and can be taken down per path prefix (connections closed unanswered, as a dead
    backend looks to a proxy) or entirely (`stop`; `start` listens on the same port again)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.docs: dict[str, tuple[bytes, str]] = {}
        self.counts: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.headers_seen: dict[str, list[dict]] = {}
        self.down_prefixes: set[str] = set()
        self.delay_s = 0.0
        self.feed_credential: tuple[str, str] | None = None
        self.server = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_doc(self, path: str, body, content_type: str):
        data = body if isinstance(body, bytes) else (json.dumps(body) if not isinstance(body, str) else body).encode()
        with self.lock:
            self.docs[path] = (data, content_type)

    def set_jwks(self, n: int, jwks: dict):
        self.set_doc(f"/jwks/{n}.json", jwks, "application/jwk-set+json")

    def set_feed(self, jws: str):
        self.set_doc("/v1/revocations", jws, "application/jwt")

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts.get(path, 0)

    def fetch_times(self, path: str) -> list[float]:
        with self.lock:
            return list(self.times.get(path, []))

    def take_down(self, prefix: str):
        with self.lock:
            self.down_prefixes.add(prefix)

    def bring_up(self, prefix: str):
        with self.lock:
            self.down_prefixes.discard(prefix)

    def _handler(self):
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with issuer.lock:
                    issuer.counts[path] = issuer.counts.get(path, 0) + 1
                    issuer.times.setdefault(path, []).append(time.time())
                    issuer.headers_seen.setdefault(path, []).append({k.lower(): v for k, v in self.headers.items()})
                    down = any(path.startswith(p) for p in issuer.down_prefixes)
                    doc = issuer.docs.get(path)
                    cred = issuer.feed_credential
                    delay = issuer.delay_s
                if delay:
                    time.sleep(delay)
                if down:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if path == "/v1/revocations" and cred is not None:
                    if (self.headers.get("x-api-key"), self.headers.get("x-api-secret")) != cred:
                        return self._send(401, b'{"error":"unauthorized"}', "application/json")
                if doc is None:
                    return self._send(404, b"not found", "text/plain")
                body, ctype = doc
                etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
                if self.headers.get("if-none-match") == etag:
                    return self._send(304, b"", ctype, etag)
                self._send(200, body, ctype, etag)

            def _send(self, status, body, ctype, etag=None):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)) if status != 304 else "0")
                if etag:
                    self.send_header("etag", etag)
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

        return Handler

    def start(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Echo:
    """The upstream: answers every request with its method, path, headers and the SHA-256 and
    length of its body (read whole, chunked or not) as JSON."""

    def __init__(self):
        self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _echo(self):
                body = self._body()
                doc = json.dumps({
                    "method": self.command, "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                    "body_sha256": hashlib.sha256(body).hexdigest(), "body_length": len(body),
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(doc)))
                self.send_header("x-origin", "echo")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(doc)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _echo

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# pytest fixtures (each suite's conftest.py imports them)


@pytest.fixture(scope="session")
def mint():
    """tests/conformance/mint.py: the keys and the token, API-key and JWKS minting."""
    return load_mint()


@pytest.fixture
def issuer():
    server = Issuer()
    yield server
    server.stop()


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# A gateway with one issuer


JWKS = "/jwks/0.json"
FEED = "/v1/revocations"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def error_code(response) -> str | None:
    """The x-error-code of a (status, headers, body) answer."""
    return response[1].get("x-error-code")


class Setup:
    """A gateway document with one issuer whose JWKS is fetched from the fixture issuer (EdDSA,
    ES256, RS256 keys), the HMAC key of API keys, and the revocation feed the issuer serves,
    signed as the auth-server signs it; and the keys to mint with. Routes: `/open` fails open on
    stale material, everything else requires a credential and fails closed. The document has no
    host-specific parts: each suite's harness adds them (the plugin's `host` block, the worker's
    vars)."""

    def __init__(self, mint, issuer: Issuer, *, fetch: dict | None = None, feed_refresh_s: int = 1):
        self.mint = mint
        self.issuer = issuer
        self.m = mint.Minter(mint.Keys(mint.HERE / "keys"), int(time.time()), "uri")
        self.keys = self.m.jwks()[mint.MAIN_ISS]["keys"]
        self.feed_ver = 1
        issuer.set_jwks(0, {"keys": self.keys})
        self.publish_feed()
        self.gateway = {
            "providers": [{
                "issuer": mint.MAIN_ISS, "audiences": ["api"], "jwks_uri": f"{issuer.base}{JWKS}",
                "algorithms": ["EdDSA", "ES256", "RS256"], "typ": ["at+jwt"],
            }],
            "api_keys": {"hmac_keys": [{"kid": "hk1", "secret": self.m.k.secret_b64["hk1"]}]},
            "revocations": {"uri": f"{issuer.base}{FEED}", "refresh_s": feed_refresh_s},
            "routes": [
                {"prefix": "/open", "require": "authenticated", "on_stale": "fail_open"},
                {"prefix": "/", "require": "authenticated"},
            ],
            "fetch": {"retry_min_s": 1, "retry_max_s": 2, "timeout_s": 2, "jwks_refresh_s": 300, **(fetch or {})},
        }

    def publish_feed(self, sids=(), key_ids=()):
        """Signs and serves a feed (a new version each time), as the auth-server would."""
        n = int(time.time())
        claims = {
            "iss": self.mint.MAIN_ISS, "iat": n, "exp": n + 3600, "ver": self.feed_ver, "watermark": n,
            "revoked": {
                "sid": [{"id": s, "exp": n + 3600} for s in sids],
                "jti": [], "sub": [],
                "api_key": [{"id": k, "exp": n + 86400} for k in key_ids],
            },
        }
        self.feed_ver += 1
        self.issuer.set_feed(jwt.encode(claims, self.m.k.priv["ed1"], algorithm="EdDSA",
                                        headers={"kid": "ed1", "typ": "revocations+jwt"}))

    def token(self, kid="ed1", key=None, **claims) -> str:
        """A valid access token (claims overridable), signed with the issuer's key `kid`, or
        with `key` (an Ed25519 private key) under that kid."""
        c = self.m.at_claims(f"t{time.time_ns()}", iat=int(time.time()) - 5, exp=int(time.time()) + 600, **claims)
        if key is None:
            return self.m.pyjwt(c, kid)
        return jwt.encode(c, key, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})

    def new_key(self, kid: str):
        """A fresh Ed25519 key: (private key, its public JWK named `kid`)."""
        from cryptography.hazmat.primitives.asymmetric import ed25519
        key = ed25519.Ed25519PrivateKey.generate()
        return key, self.mint.public_jwk(key.public_key(), kid=kid, alg="EdDSA", use="sig")

    def api_key(self, label: str) -> tuple[str, str, str]:
        """(key id, secret, the key's `id` as the feed lists it) of a valid API key."""
        claims = self.m.key_claims(label, iat=int(time.time()) - 60)
        key_id, secret = self.m.api_key(claims)
        return key_id, secret, claims["id"]

    def ready(self, gateway, timeout: float = 20):
        """Waits until `gateway` (anything with `request`) allows a fresh token, that is until
        its keys and feed are in; returns it."""
        token = self.token()
        wait_for(lambda: gateway.request("GET", "/api", bearer(token))[0] == 200, timeout, 0.1, "keys and feed fetched")
        return gateway


# ---------------------------------------------------------------------------------------------
# The conformance contract, as both gateways must answer it


def upstream_doc(body: bytes) -> dict:
    """The Echo upstream's answer: {method, path, headers: [(name, value)], body_sha256, ...}."""
    doc = json.loads(body)
    doc["headers"] = [tuple(h) for h in doc["headers"]]
    return doc


def jwks_base_substituted(doc, base: str):
    """Replaces {JWKS_BASE} everywhere in a minted document."""
    return json.loads(json.dumps(doc).replace("{JWKS_BASE}", base))


def serve_vectors(issuer: Issuer, vectors: dict):
    """Puts the minted JWKS (for providers with a jwks_uri) and the feed on the fixture issuer."""
    for i, provider in enumerate(vectors["config"]["providers"]):
        if "jwks_uri" in provider:
            issuer.set_jwks(i, vectors["jwks"][provider["issuer"]])
    issuer.set_feed(vectors["feed"])


def answer_problems(case: dict, request_id: str, status: int, rh: dict, body: bytes) -> list[str]:
    """What a gateway's answer to a conformance case gets wrong. Allowed: the upstream saw the
    request as sent, with exactly the expected identity headers and no spoofed ones. Denied: the
    status, `x-error`, `x-error-id` (the request id), `x-error-code`, JSON content type, `no-store`,
    the exact JSON body, and a Bearer challenge on 401s of bearer routes — the same for every host."""
    name, req, expect = case["name"], case["request"], case["expect"]
    want = expect["status"]
    if status != want:
        return [f"{name}: status {status} ({rh.get('x-error-code')}), want {want} {expect['code']}"]
    problems = []
    if expect["code"] is None:
        try:
            seen = upstream_doc(body)
        except (ValueError, KeyError):
            return [f"{name}: 200 but not from the upstream: {body[:200]!r}"]
        if seen["method"] != req["method"] or seen["path"] != req["path"]:
            problems.append(f"{name}: upstream saw {seen['method']} {seen['path']}")
        got: dict[str, list[str]] = {}
        for k, v in seen["headers"]:
            got.setdefault(k, []).append(v)
        for k, v in expect["headers"].items():
            if got.get(k) != [v]:
                problems.append(f"{name}: upstream {k} = {got.get(k)}, want [{v!r}]")
        for k in expect["absent_headers"]:
            if k in got:
                problems.append(f"{name}: upstream got {k} = {got[k]}, must be absent")
        for k, v in req["headers"]:
            k = k.lower()
            if k.startswith("x-auth-") and v in got.get(k, []) and expect["headers"].get(k) != v:
                problems.append(f"{name}: spoofed {k}: {v!r} reached the upstream")
        return problems
    problems += denial_problems(name, req["method"], rh, body, expect["code"], request_id)
    if want == 401 and req["path"].startswith("/api") and not rh.get("www-authenticate", "").startswith("Bearer"):
        problems.append(f"{name}: 401 without a Bearer challenge: {rh.get('www-authenticate')!r}")
    return problems


def denial_problems(name: str, method: str, rh: dict, body: bytes, code: str, request_id: str | None) -> list[str]:
    """What a denial gets wrong, every host alike: `x-error-code`, `x-error`, `x-error-id` (the
    request id, when the client sent one), JSON content type, `no-store`, not from the upstream,
    and the exact JSON body (none for HEAD)."""
    problems = []
    if rh.get("x-error-code") != code:
        problems.append(f"{name}: x-error-code {rh.get('x-error-code')}, want {code}")
    if request_id is not None and rh.get("x-error-id") != request_id:
        problems.append(f"{name}: x-error-id {rh.get('x-error-id')!r}, want the request id {request_id!r}")
    if not rh.get("x-error-id"):
        problems.append(f"{name}: no x-error-id")
    if not rh.get("x-error"):
        problems.append(f"{name}: no x-error")
    if rh.get("content-type") != "application/json" or rh.get("cache-control") != "no-store":
        problems.append(f"{name}: content-type {rh.get('content-type')!r}, cache-control {rh.get('cache-control')!r}")
    if "x-origin" in rh:
        problems.append(f"{name}: denied, but the answer came from the upstream")
    if method == "HEAD":
        # A HEAD answer has no body (RFC 9110 9.3.2); the headers carry the error.
        if body:
            problems.append(f"{name}: a HEAD answer with a body: {body[:100]!r}")
    else:
        try:
            doc = json.loads(body)
            if doc != {"error": code, "error_description": rh.get("x-error"), "error_id": rh.get("x-error-id")}:
                problems.append(f"{name}: body {doc}")
        except ValueError:
            problems.append(f"{name}: body is not JSON: {body[:100]!r}")
    return problems
