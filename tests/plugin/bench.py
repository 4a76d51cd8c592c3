#!/usr/bin/env python3
"""Benchmark: the authgate filter against Envoy's native jwt_authn and against no auth at all.

One Envoy (`--concurrency 1`), five listeners on the same routes (`/` answered by a
direct_response, so the gateway's own cost is what is measured):

  noauth         router only
  jwt_authn      envoy.filters.http.jwt_authn, same issuer, audience and keys (inline JWKS),
                 JWT cache on (jwt_cache_size 1000)
  jwt_authn-nc   the same without its JWT cache: every request verifies
  authgate       this filter, default config (verified-token cache on), JWKS fetched, feed on
  authgate-nc    the same with the token cache off (cache.max_entries 0): every request verifies
  authgate-floor the filter on an anonymous route: headers read, route matched, nothing verified
                 (what the proxy-wasm glue costs before any credential work)

Then `wrk` (apt) on 127.0.0.1 for EdDSA, ES256, RS256 and HS256 tokens and an API key, in two
workloads: one credential on every request, and 1000 distinct users (1000 tokens, or 1000 API
keys, sent round robin by a wrk Lua script).

    .venv/bin/python tests/plugin/bench.py [--duration 10] [--connections 16] [--runtime v8|wasmtime|wamr]
        [--kinds EdDSA,ES256] [--workloads one,1000] [--wasm target/authgate_plugin.wasm]

Not part of the test suite (it takes minutes and its numbers depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_harness import WASM, Issuer, envoy_binary, free_port, load_mint, wait_for  # noqa: E402

LISTENERS = ("noauth", "jwt_authn", "jwt_authn-nc", "authgate", "authgate-nc", "authgate-floor")
RUNTIMES = {"v8": "envoy.wasm.runtime.v8", "wasmtime": "envoy.wasm.runtime.wasmtime", "wamr": "envoy.wasm.runtime.wamr"}
USERS = 1000


def listener(name: str, port: int, filters: list[dict]) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name.replace("-", "_"),
                "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
            },
        }]}],
    }


def wasm_filter(name: str, gateway: dict, wasm: Path, runtime: str) -> dict:
    """The filter in a VM of its own per listener, so each listener's VM does only its work."""
    return {"name": "authgate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "authgate", "root_id": "authgate",
            "vm_config": {"vm_id": f"authgate-{name}", "runtime": RUNTIMES[runtime], "code": {"local": {"filename": str(wasm)}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(gateway)},
        },
    }}


def jwt_authn_filter(issuer: str, jwks: dict, cache: bool) -> dict:
    provider = {"issuer": issuer, "audiences": ["api"], "forward": True, "local_jwks": {"inline_string": json.dumps(jwks)}}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"main": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}],
    }}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def rotation_script(path: Path, users: list[list[tuple[str, str]]]) -> Path:
    """A wrk Lua script sending each request with the next user's headers, round robin."""
    rows = ",\n".join("{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in h) + "}" for h in users)
    path.write_text(f"""local users = {{
{rows}
}}
local i = 0
request = function()
  i = i % #users + 1
  return wrk.format("GET", nil, users[i])
end
""")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, headers: list[tuple[str, str]] | Path, duration: int, connections: int, path: str = "/api/items",
        pid: int | None = None) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if isinstance(headers, Path):
        cmd += ["-s", str(headers)]
    else:
        for k, v in headers:
            cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "cpu_us": cpu * 1e6 / max(requests, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--wasm", type=Path, default=WASM)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--runtime", choices=sorted(RUNTIMES), default="v8")
    ap.add_argument("--kinds", default="EdDSA,ES256,RS256,HS256,API key")
    ap.add_argument("--workloads", default="one,1000", help="one: one credential; 1000: 1000 users round robin")
    ap.add_argument("--listeners", default=",".join(LISTENERS))
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every listener this many times, interleaved, and report the median (the machine is shared)")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    workloads = args.workloads.split(",")
    listeners = [n for n in LISTENERS if n in args.listeners.split(",")]
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    mint = load_mint()
    m = mint.Minter(mint.Keys(mint.HERE / "keys"), int(time.time()), "uri")
    public = m.jwks()[mint.MAIN_ISS]["keys"]
    oct_hs1 = {"kty": "oct", "kid": "hs1", "alg": "HS256", "k": m.k.secret_b64["hs1"]}
    issuer = Issuer()
    issuer.set_jwks(0, {"keys": public})
    n = int(time.time())
    feed = {"iss": mint.MAIN_ISS, "iat": n, "exp": n + 3600, "ver": 1, "watermark": n,
            "revoked": {"sid": [], "jti": [], "sub": [], "api_key": []}}
    import jwt  # PyJWT, from tests/requirements.txt
    issuer.set_feed(jwt.encode(feed, m.k.priv["ed1"], algorithm="EdDSA", headers={"kid": "ed1", "typ": "revocations+jwt"}))

    gateway = {
        "host": {"upstreams": {issuer.base: "issuer"}},
        "providers": [{"issuer": mint.MAIN_ISS, "audiences": ["api"], "jwks_uri": f"{issuer.base}/jwks/0.json",
                       "jwks": {"keys": [oct_hs1]}, "algorithms": ["EdDSA", "ES256", "RS256", "HS256"], "typ": ["at+jwt"]}],
        "api_keys": {"hmac_keys": [{"kid": "hk1", "secret": m.k.secret_b64["hk1"]}]},
        "revocations": {"uri": f"{issuer.base}/v1/revocations", "refresh_s": 5},
        "routes": [{"prefix": "/", "require": "authenticated"}],
    }
    no_cache = dict(gateway, cache={"max_entries": 0})
    floor = dict(gateway, routes=[{"prefix": "/", "require": "anonymous"}])
    ports = {name: free_port() for name in LISTENERS}
    admin = free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                listener("noauth", ports["noauth"], []),
                listener("jwt_authn", ports["jwt_authn"], [jwt_authn_filter(mint.MAIN_ISS, {"keys": public + [oct_hs1]}, True)]),
                listener("jwt_authn-nc", ports["jwt_authn-nc"], [jwt_authn_filter(mint.MAIN_ISS, {"keys": public + [oct_hs1]}, False)]),
                listener("authgate", ports["authgate"], [wasm_filter("authgate", gateway, args.wasm, args.runtime)]),
                listener("authgate-nc", ports["authgate-nc"], [wasm_filter("authgate-nc", no_cache, args.wasm, args.runtime)]),
                listener("authgate-floor", ports["authgate-floor"], [wasm_filter("authgate-floor", floor, args.wasm, args.runtime)]),
            ],
            "clusters": [{"name": "issuer", "type": "STATIC", "connect_timeout": "2s", "load_assignment": {
                "cluster_name": "issuer", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": issuer.port}}}}]}]}}],
        },
    }
    work = Path(tempfile.mkdtemp(prefix="authgate-bench-"))
    (work / "envoy.json").write_text(json.dumps(config))
    proc = subprocess.Popen([envoy_binary(), "-c", str(work / "envoy.json"), "--concurrency", "1", "--disable-hot-restart",
                             "-l", "warning", "--log-path", str(work / "envoy.log")], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        kids = {"EdDSA": "ed1", "ES256": "es1", "RS256": "rs1", "HS256": "hs1"}

        def users(kind: str, count: int) -> list[list[tuple[str, str]]]:
            if kind == "API key":
                keys = [m.api_key(m.key_claims(f"bench-key-{i}", sub=f"user-{i}", iat=n - 60)) for i in range(count)]
                return [[("x-api-key", k), ("x-api-secret", s)] for k, s in keys]
            return [[("authorization", "Bearer " + m.pyjwt(m.at_claims(f"bench-{kind}-{i}", sub=f"user-{i}"), kids[kind]))]
                    for i in range(count)]

        import http.client

        def status(port, headers):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                c.request("GET", "/api/items", headers=dict(headers))
                r = c.getresponse()
                r.read()
                return r.status
            except OSError:
                return None
            finally:
                c.close()

        def applies(name: str, kind: str) -> bool:
            return not (name.startswith("jwt_authn") and kind == "API key")

        for name in ("noauth", "authgate-floor"):
            if name in listeners:
                wait_for(lambda: status(ports[name], []) == 200, 30, 0.2, f"{name} to answer")

        results = {}
        for kind in kinds:
            one = users(kind, 1)
            many = users(kind, USERS) if "1000" in workloads else []
            for name in listeners:
                if applies(name, kind) and name != "authgate-floor":
                    wait_for(lambda: status(ports[name], one[0]) == 200, 30, 0.2, f"{name} to accept {kind}")
                    for h in many[:: USERS // 10]:
                        assert status(ports[name], h) == 200, f"{name} refuses a {kind} user"
            loads = {"one": one[0], "1000": rotation_script(work / f"users-{kind.replace(' ', '_')}.lua", many) if many else None}
            for workload in workloads:
                runs: dict[str, list[dict]] = {}
                for _ in range(args.rounds):
                    for name in listeners:
                        if not applies(name, kind):
                            continue
                        wrk(ports[name], loads[workload], 2, args.connections)  # warm-up
                        r = wrk(ports[name], loads[workload], args.duration, args.connections, pid=proc.pid)
                        if r["non2xx"]:
                            raise SystemExit(f"{name} {kind} {workload}: {r['non2xx']} non-2xx answers")
                        runs.setdefault(name, []).append(r)
                for name, rs in runs.items():
                    r = dict(sorted(rs, key=lambda x: x["rps"])[len(rs) // 2])
                    r["cpu_us"] = sorted(x["cpu_us"] for x in rs)[len(rs) // 2]
                    results[(kind, workload, name)] = r
                    print(f"{kind:8} {workload:5} {name:14} {r['rps']:10.0f} req/s  p50 {r['p50_ms'] * 1000:7.0f} us"
                          f"  p99 {r['p99_ms'] * 1000:7.0f} us  Envoy CPU {r['cpu_us']:6.1f} us/req"
                          f"  (req/s of {' '.join(str(round(x['rps'])) for x in rs)})", flush=True)
        size = args.wasm.stat().st_size
        print()
        print(f"wasm: {args.wasm} {size} bytes ({size / 1024:.0f} KiB)")
        print()
        print(f"runtime: {args.runtime}; users: one credential, or {USERS} round robin; median of {args.rounds} round(s)")
        print()
        print("Ratios are throughput per Envoy CPU second (the inverse of CPU µs per request), authgate over")
        print("jwt_authn: > 1 means authgate serves more requests with the same CPU.")
        print()
        print("| credential | users | listener | req/s | p50 µs | p99 µs | Envoy CPU µs/req | vs jwt_authn (cached) | vs jwt_authn-nc |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (kind, workload, name), r in results.items():
            def ratio(other: str) -> str:
                o = results.get((kind, workload, other))
                return f"{o['cpu_us'] / r['cpu_us']:.2f}x" if o and name.startswith("authgate") and r["cpu_us"] > 0 else ""
            print(f"| {kind} | {workload} | {name} | {r['rps']:.0f} | {r['p50_ms'] * 1000:.0f} | {r['p99_ms'] * 1000:.0f} "
                  f"| {r['cpu_us']:.1f} | {ratio('jwt_authn')} | {ratio('jwt_authn-nc')} |")
        if args.json:
            args.json.write_text(json.dumps({"|".join(k): v for k, v in results.items()} | {"wasm_bytes": size}, indent=1))
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        issuer.stop()


if __name__ == "__main__":
    sys.exit(main())
