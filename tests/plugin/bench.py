#!/usr/bin/env python3
"""Benchmark: the authgate filter against Envoy's native jwt_authn and against no auth at all.

One Envoy (`--concurrency 1`), four listeners on the same routes (`/` answered by a
direct_response, so the gateway's own cost is what is measured):

  noauth        router only
  jwt_authn     envoy.filters.http.jwt_authn, same issuer, audience and keys (inline JWKS),
                JWT cache on (jwt_cache_size 1000)
  authgate      this filter, default config (verified-token cache on), JWKS fetched, feed on
  authgate-nc   the same with the token cache off (cache.max_entries 0): every request verifies

Then `wrk` (apt) on 127.0.0.1 for EdDSA, ES256, RS256 and HS256 tokens and an API key.

    .venv/bin/python tests/plugin/bench.py [--duration 10] [--connections 16] [--wasm target/authgate_plugin.wasm]

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

LISTENERS = ("noauth", "jwt_authn", "authgate", "authgate-nc")


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


def wasm_filter(gateway: dict, wasm: Path) -> dict:
    return {"name": "authgate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "authgate", "root_id": "authgate",
            "vm_config": {"vm_id": "authgate", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(gateway)},
        },
    }}


def jwt_authn_filter(issuer: str, jwks: dict) -> dict:
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"main": {
            "issuer": issuer, "audiences": ["api"], "forward": True,
            "local_jwks": {"inline_string": json.dumps(jwks)},
            "jwt_cache_config": {"jwt_cache_size": 1000},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}],
    }}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port: int, headers: list[tuple[str, str]], duration: int, connections: int, path: str = "/api/items") -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--wasm", type=Path, default=WASM)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
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
    ports = {name: free_port() for name in LISTENERS}
    admin = free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                listener("noauth", ports["noauth"], []),
                listener("jwt_authn", ports["jwt_authn"], [jwt_authn_filter(mint.MAIN_ISS, {"keys": public + [oct_hs1]})]),
                listener("authgate", ports["authgate"], [wasm_filter(gateway, args.wasm)]),
                listener("authgate-nc", ports["authgate-nc"], [wasm_filter(no_cache, args.wasm)]),
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
        creds = {
            "EdDSA": [("authorization", "Bearer " + m.pyjwt(m.at_claims("bench-ed"), "ed1"))],
            "ES256": [("authorization", "Bearer " + m.pyjwt(m.at_claims("bench-es"), "es1"))],
            "RS256": [("authorization", "Bearer " + m.pyjwt(m.at_claims("bench-rs"), "rs1"))],
            "HS256": [("authorization", "Bearer " + m.pyjwt(m.at_claims("bench-hs"), "hs1"))],
        }
        key_id, secret = m.api_key(m.key_claims("bench-key", iat=n - 60))
        creds["API key"] = [("x-api-key", key_id), ("x-api-secret", secret)]

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

        for kind, h in creds.items():
            for name in LISTENERS:
                if name == "jwt_authn" and kind == "API key":
                    continue
                wait_for(lambda: status(ports[name], h) == 200, 30, 0.2, f"{name} to accept {kind}")
        results = {}
        for kind, h in creds.items():
            for name in LISTENERS:
                if name == "jwt_authn" and kind == "API key":
                    continue
                wrk(ports[name], h, 2, args.connections)  # warm-up
                r = wrk(ports[name], h, args.duration, args.connections)
                if r["non2xx"]:
                    raise SystemExit(f"{name} {kind}: {r['non2xx']} non-2xx answers")
                results[(kind, name)] = r
                print(f"{kind:8} {name:12} {r['rps']:10.0f} req/s  p50 {r['p50_ms'] * 1000:7.0f} us  p99 {r['p99_ms'] * 1000:7.0f} us",
                      flush=True)
        size = args.wasm.stat().st_size
        print()
        print(f"wasm: {args.wasm} {size} bytes ({size / 1024:.0f} KiB)")
        print()
        print("| credential | listener | req/s | p50 µs | p99 µs | req/s vs jwt_authn | p99 over no-auth µs |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for (kind, name), r in results.items():
            native = results.get((kind, "jwt_authn"))
            base = results[(kind, "noauth")]
            ratio = f"{r['rps'] / native['rps']:.2f}x" if native and name.startswith("authgate") else ""
            over = f"{(r['p99_ms'] - base['p99_ms']) * 1000:+.0f}" if name != "noauth" else ""
            print(f"| {kind} | {name} | {r['rps']:.0f} | {r['p50_ms'] * 1000:.0f} | {r['p99_ms'] * 1000:.0f} | {ratio} | {over} |")
        if args.json:
            args.json.write_text(json.dumps({f"{k}|{n}": v for (k, n), v in results.items()} | {"wasm_bytes": size}, indent=1))
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        issuer.stop()


if __name__ == "__main__":
    sys.exit(main())
