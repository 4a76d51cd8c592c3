"""Pieces of the edge-worker suite: the fixture issuer (JWKS + revocation feed), the echo
origin, and the built worker started in workerd through Miniflare's API (driver.mjs) with the
vars, compatibility date and entry point of the repository's wrangler.toml."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFORMANCE = ROOT / "tests" / "conformance"
WRANGLER_TOML = ROOT / "wrangler.toml"
BUILD = ROOT / "edge-worker" / "build"
NODE_MODULES = ROOT / "tools" / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_mint():
    """tests/conformance/mint.py as a module (its Minter/Keys sign the suite's own tokens)."""
    name = "authgate_mint_worker"
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


def wrangler() -> dict:
    return tomllib.loads(WRANGLER_TOML.read_text())


# ---------------------------------------------------------------------------------------------
# Fixture issuer


class Issuer:
    """Serves /jwks/<n>.json and /v1/revocations from memory, counts every request per path,
    honours If-None-Match, can require the feed credential, can delay answers, and can be taken
    down (connections closed unanswered) per path prefix."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.docs: dict[str, tuple[bytes, str]] = {}
        self.counts: dict[str, int] = {}
        self.headers_seen: dict[str, list[dict]] = {}
        self.down_prefixes: set[str] = set()
        self.delay_s = 0.0
        self.feed_credential: tuple[str, str] | None = None
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with issuer.lock:
                    issuer.counts[path] = issuer.counts.get(path, 0) + 1
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

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

    def take_down(self, prefix: str):
        with self.lock:
            self.down_prefixes.add(prefix)

    def bring_up(self, prefix: str):
        with self.lock:
            self.down_prefixes.discard(prefix)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Echo:
    """The origin: answers every request with its method, path, headers and the SHA-256 and
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


# ---------------------------------------------------------------------------------------------
# The worker in workerd


def worker_env(gateway: dict, echo: Echo | None, **extra) -> dict:
    """wrangler.toml's [vars] with the gateway document and origin replaced, plus secrets."""
    vars_ = dict(wrangler()["vars"])
    vars_["AUTHGATE_CONFIG"] = json.dumps(gateway)
    if echo is not None:
        vars_["AUTHGATE_ORIGIN"] = echo.base
    for k, v in extra.items():
        if v is None:
            vars_.pop(k, None)
        else:
            vars_[k] = v
    return vars_


class Worker:
    """The built worker (wrangler.toml's `main`) in workerd via driver.mjs, with its output in
    workdir/worker.log. Stopped by closing the driver's stdin (workerd is disposed)."""

    def __init__(self, workdir: Path, bindings: dict, *, origin_service: str | None = None,
                 cache_persist: Path | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        w = wrangler()
        main = ROOT / w["main"]
        ready = workdir / f"ready-{time.time_ns()}.json"
        options = {
            "scriptPath": str(main), "modulesRoot": str(main.parent),
            "compatibilityDate": w["compatibility_date"], "bindings": bindings,
            "originService": origin_service, "cachePersist": str(cache_persist) if cache_persist else None,
            "ready": str(ready),
        }
        opts_path = workdir / f"options-{time.time_ns()}.json"
        opts_path.write_text(json.dumps(options))
        self.log_path = workdir / "worker.log"
        self.log_file = open(self.log_path, "ab")
        env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CLOUDFLARE_CF_FETCH_ENABLED": "false",
               "NODE_PATH": str(NODE_MODULES)}
        self.proc = subprocess.Popen(["node", str(HERE / "driver.mjs"), str(opts_path)], stdin=subprocess.PIPE,
                                     stdout=self.log_file, stderr=subprocess.STDOUT, cwd=ROOT / "tools",
                                     start_new_session=True, env=env)

        def started():
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker driver exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return ready.exists() and ready.read_text()
        info = json.loads(wait_for(started, 30, 0.05, "workerd to listen"))
        self.url = info["url"].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 15):
        """One request on a fresh connection. Returns (status, headers dict (last value wins),
        body bytes). `headers` is a list of pairs, duplicates allowed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
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

    def scheduled(self, cron: str = "* * * * *"):
        """Fires the cron trigger (Miniflare's /cdn-cgi/handler/scheduled)."""
        from urllib.parse import quote
        return self.request("GET", f"/cdn-cgi/handler/scheduled?cron={quote(cron)}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log_file.close()


def upstream(body: bytes) -> dict:
    """What the echo origin received: {method, path, headers: [(k, v)], body_sha256, body_length}."""
    doc = json.loads(body)
    doc["headers"] = [tuple(h) for h in doc["headers"]]
    return doc


def jwks_base_substituted(doc, base: str):
    """Replaces {JWKS_BASE} everywhere in a minted document."""
    return json.loads(json.dumps(doc).replace("{JWKS_BASE}", base))
