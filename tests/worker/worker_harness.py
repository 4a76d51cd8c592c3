"""The edge worker in workerd, for tests/worker, tests/gateways and tests/system: the built
worker started through Miniflare's API (driver.mjs) with the vars, compatibility date and entry
point of the repository's wrangler.toml (the gateway document and origin the test's)."""

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
WRANGLER_TOML = ROOT / "wrangler.toml"
BUILD = ROOT / "edge-worker" / "build"
NODE_MODULES = ROOT / "tools" / "node_modules"
# The host name the cache probe Worker is routed on (a Worker started with cache_probe=True).
PROBE_HOST = "cache-probe.test"

sys.path.insert(0, str(ROOT / "tests"))
from gateway_fixtures import Echo, http_request, wait_for  # noqa: E402


def wrangler() -> dict:
    return tomllib.loads(WRANGLER_TOML.read_text())


def ensure_built() -> Path:
    """edge-worker/build, built (`cargo xtask build-worker`) when wrangler.toml's `main` is missing."""
    main = ROOT / wrangler()["main"]
    if not main.exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-worker"], cwd=ROOT, check=True)
    assert main.exists(), f"{main} missing after the build"
    return BUILD


def whatwg_path(target: str) -> str:
    """The path the Workers runtime hands the worker: `request.url` is parsed by the WHATWG URL
    parser, which turns `\\` into `/` and removes `.`/`..` segments (also `%2e` spellings)."""
    path, sep, query = target.partition("?")
    segments = path.replace("\\", "/").split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg.lower() in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg.lower() in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out) + sep + query


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
                 cache_persist: Path | None = None, cache_probe: bool = False):
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
        if cache_probe:
            # Another Worker of the zone (cache_probe.mjs), on its own host name: see `probe`.
            options["workers"] = [{"name": "cache-probe", "scriptPath": str(HERE / "cache_probe.mjs"), "modulesRoot": str(HERE),
                                   "compatibilityDate": w["compatibility_date"], "routes": [f"{PROBE_HOST}/*"]}]
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

    def probe(self, method: str, url: str, body: bytes | None = None):
        """The Cache API as another Worker of the zone sees it (started with cache_probe=True):
        GET answers what is stored under url, PUT stores body there."""
        from urllib.parse import quote
        return self.request(method, f"/?url={quote(url, safe='')}", [("host", PROBE_HOST)], body)

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
