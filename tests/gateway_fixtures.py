"""Fixtures both gateway suites (tests/plugin: Envoy, tests/worker: workerd) stand on: the fixture
issuer that serves JWKS and the revocation feed, the echo upstream, and small helpers. One copy,
so the two gateways are tested against the same issuer behaviour."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance"


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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
