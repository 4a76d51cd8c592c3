#!/usr/bin/env python3
"""Benchmark of the whole system: revoke-to-deny propagation at both gateways, and requests/s
through each gateway with a valid token.

Starts the system of tests/system (private PostgreSQL, Redis, SMTP sink, auth-server, Envoy with
the filter, the worker in workerd; feed interval FEED_INTERVAL_S) with a direct-response Envoy
as the upstream, so the upstream is not what is measured. Then:

* propagation: N times, a fresh login whose token both gateways have verified (and cached), a
  logout at the auth-server at t0, and one poller per gateway (new connections back to back)
  until the gateway answers 401 ten times in a row; the delay from the logout's answer to the
  first of those (with Envoy, once every worker thread's VM has the new feed);
  Steady background traffic runs meanwhile (see background_traffic);
* throughput: `wrk` (apt) for 10 s with one valid access token through each gateway.

    .venv/bin/python tests/system/bench.py [--rounds 40] [--duration 10] [--connections 16]

Not part of the test suite (it takes minutes and its numbers depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from system_harness import FEED_INTERVAL_S, System, bearer, envoy_binary, free_port, until_status, wait_for  # noqa: E402
from authsrv import build_binaries, login, sign_up, start_mailbox  # noqa: E402
from plugin_harness import WASM  # noqa: E402



def _plugin_bench():
    """tests/plugin/bench.py as a module (its `wrk` runner)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("authgate_plugin_bench", Path(__file__).resolve().parents[1] / "plugin" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wrk = _plugin_bench().wrk


class DirectResponseUpstream:
    """An Envoy answering 200 to everything by itself: an upstream that costs next to nothing."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = {"static_resources": {"listeners": [{
            "name": "upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "upstream",
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                        "response_headers_to_add": [{"header": {"key": "x-origin", "value": "echo"}}]}]}]},
                }}]}],
        }]}}
        (workdir / "upstream.json").write_text(json.dumps(cfg))
        self.proc = subprocess.Popen([envoy_binary(), "-c", str(workdir / "upstream.json"), "--concurrency", "1",
                                      "--disable-hot-restart", "-l", "warning", "--base-id", "7"],
                                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def background_traffic(system: System, token: str, stop: threading.Event):
    """Steady traffic (a request every 50 ms per gateway) with another valid token, so the
    gateways are measured in their steady state: the worker refreshes when a request finds the
    feed due, and after an idle gap the first request would fetch at once."""
    def run(gw):
        while not stop.is_set():
            gw.request("GET", "/orders", bearer(token))
            stop.wait(0.05)
    threads = [threading.Thread(target=run, args=(gw,), daemon=True) for gw in system.gateways]
    for t in threads:
        t.start()
    return threads


def propagation(system: System, mail, rounds: int) -> dict[str, list[float]]:
    addr = sign_up(system.server, mail)
    delays = {gw.name: [] for gw in system.gateways}
    stop = threading.Event()
    background_traffic(system, login(system.server, addr)["access_token"], stop)
    try:
        return _rounds(system, addr, rounds, delays)
    finally:
        stop.set()


def _rounds(system: System, addr: str, rounds: int, delays: dict[str, list[float]]) -> dict[str, list[float]]:
    for _ in range(rounds):
        tok = login(system.server, addr)["access_token"]
        for gw in system.gateways:
            wait_for(lambda: gw.request("GET", "/orders", bearer(tok))[0] == 200, 10, 0.05, f"{gw} to accept")
        # Let the round start at a random point of the poll cycle.
        time.sleep(FEED_INTERVAL_S * (time.time() % 1))
        r = system.client().post("/v1/sessions/logout", token=tok)
        assert r.status_code == 204, r.text
        t0 = time.monotonic()
        results = {}

        def timed(gw):
            # Until the gateway refuses it on every request (every Envoy worker thread; see until_status).
            start = time.monotonic()
            took = until_status(gw, "/orders", bearer(tok), 401, 10 * FEED_INTERVAL_S)
            results[gw.name] = start - t0 + took

        threads = [threading.Thread(target=timed, args=(gw,)) for gw in system.gateways]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for gw in system.gateways:
            if gw.name not in results:
                raise SystemExit(f"{gw}: the revoked token was still accepted after {10 * FEED_INTERVAL_S}s")
            delays[gw.name].append(results[gw.name])
    return delays


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="authgate-system-bench-"))
    mail, smtp = start_mailbox()
    upstream = DirectResponseUpstream(work / "upstream")
    system = System(work, build_binaries(), mail, WASM, upstream=upstream)
    try:
        delays = propagation(system, mail, args.rounds)
        print(f"revoke-to-deny, feed interval {FEED_INTERVAL_S}s, {args.rounds} rounds (target p99 <= {2 * FEED_INTERVAL_S}s):")
        print("| gateway | p50 s | p95 s | p99 s | max s | mean s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, d in delays.items():
            print(f"| {name} | {percentile(d, 50):.2f} | {percentile(d, 95):.2f} | {percentile(d, 99):.2f} | {max(d):.2f} | "
                  f"{statistics.mean(d):.2f} |")

        tok = login(system.server, sign_up(system.server, mail))["access_token"]
        print(f"\nthroughput, one valid EdDSA access token, wrk -t1 -c{args.connections} -d{args.duration}s:")
        print("| path | req/s | p50 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: |")
        targets = [("upstream alone", upstream.port, [])] + [(gw.name, gw.owner.port, bearer(tok)) for gw in system.gateways]
        for name, port, headers in targets:
            wrk(port, headers, 2, args.connections, path="/orders")  # warm-up
            r = wrk(port, headers, args.duration, args.connections, path="/orders")
            if r["non2xx"]:
                raise SystemExit(f"{name}: {r['non2xx']} non-2xx answers")
            print(f"| {name} | {r['rps']:.0f} | {r['p50_ms'] * 1000:.0f} | {r['p99_ms'] * 1000:.0f} |", flush=True)
        return 0
    finally:
        system.close()
        upstream.stop()
        smtp.stop()


if __name__ == "__main__":
    sys.exit(main())
