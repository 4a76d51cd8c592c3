"""Pieces of the edge-worker suite: the fixture issuer (JWKS + revocation feed), the echo
origin, and the built worker started in workerd through Miniflare's API (driver.mjs) with the
vars, compatibility date and entry point of the repository's wrangler.toml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFORMANCE = ROOT / "tests" / "conformance"
WRANGLER_TOML = ROOT / "wrangler.toml"
BUILD = ROOT / "edge-worker" / "build"
NODE_MODULES = ROOT / "tools" / "node_modules"

sys.path.insert(0, str(ROOT / "tests"))
from gateway_fixtures import (  # noqa: E402,F401  (shared with tests/plugin)
    Echo, Issuer, answer_problems, http_request, free_port, jwks_base_substituted, load_mint, serve_vectors, wait_for,
    upstream_doc as upstream,
)




def wrangler() -> dict:
    return tomllib.loads(WRANGLER_TOML.read_text())


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
        """One request through the worker (see gateway_fixtures.http_request)."""
        return http_request(self.port, method, path, headers, body, timeout)

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
