"""The whole auth-core conformance data file, case by case, through every gateway, and through
each gateway's other signature path (the host's native crypto, and the in-WebAssembly fallback).

Tokens are minted at test time (`mint.py --now T --jwks-mode uri`) for a second T a few seconds
ahead; the cases that pin the clock to exactly T (the `exp`/`nbf` skew boundaries) are sent
within that second, the rest right after, every case twice (the second pass is served by the
verified-token cache).

Two kinds of case cannot reach a gateway's code as written, and are asserted for what they
become:
* `token_200kb` carries a 200 KB header: Envoy (max_request_headers_kb, 60 KiB in the example)
  and workerd answer 431 before authgate runs; the request never reaches the application.
* The `invalid_path` cases with dot segments or backslashes reach the worker normalized, because
  the Workers runtime parses `request.url` with the WHATWG URL parser (the adapter's
  `path_seen`). For those the gateway must decide on exactly the path it forwards: the answer
  equals that of the normalized request, and an allowed request reaches the upstream with the
  normalized path. (`%2f`/`%5c` cases are not rewritten, and auth-core still refuses them with
  400.) Envoy hands the filter the path as sent (docs/envoy/envoy.yaml), so auth-core refuses them.

Allowed cases must reach the upstream with exactly the expected identity headers and none of the
spoofed ones; denied cases must carry the one answer of every host (gateway_fixtures.answer_problems).
"""

import json
import subprocess
import sys
import time

import pytest

from gateway_fixtures import CONFORMANCE, ROOT, answer_problems, jwks_base_substituted, serve_vectors, upstream_doc, wait_for

# Cases whose outcome depends on the request being evaluated at exactly `now` (to the second).
CLOCK_PINNED = ("expired_boundary_30s", "nbf_boundary_30s", "nbf_future_31", "expired_31s", "nbf_future_60")
# Refused by the proxy itself before authgate runs (a 200 KB request header).
PROXY_REFUSES = {"token_200kb": 431}


def mint_vectors(tmp_path, now: int, base: str) -> dict:
    out = tmp_path / f"vectors-{now}.json"
    subprocess.run(
        [sys.executable, str(CONFORMANCE / "mint.py"), "--now", str(now), "--jwks-mode", "uri", "--out", str(out)],
        check=True, capture_output=True, cwd=ROOT,
    )
    return jwks_base_substituted(json.loads(out.read_text()), base)


def check_normalized(gw, case: dict, label: str) -> list[str]:
    """A case whose path the runtime rewrites before the gateway's code sees it (auth-core's
    `invalid_path` cannot trigger): the answer must be that of the same request with the
    normalized path, and an allowed one must reach the upstream with that path and no dot segment."""
    name, req = case["name"], case["request"]
    normalized = gw.path_seen(req["path"])
    headers = [tuple(h) for h in req["headers"]]
    got = gw.request(req["method"], req["path"], headers + [("x-request-id", f"n-{name}-{label}")])
    ref = gw.request(req["method"], normalized, headers + [("x-request-id", f"n-{name}-{label}")])
    problems = []
    if (got[0], got[1].get("x-error-code")) != (ref[0], ref[1].get("x-error-code")):
        problems.append(f"{name}: {req['path']!r} answered {got[0]} {got[1].get('x-error-code')}, "
                        f"but its normalized form {normalized!r} {ref[0]} {ref[1].get('x-error-code')}")
    if got[0] == 200:
        seen = upstream_doc(got[2])["path"]
        if seen != normalized or any(s in (".", "..") for s in seen.split("?")[0].split("/")):
            problems.append(f"{name}: upstream saw {seen!r}, want {normalized!r}")
    return problems


def check_case(gw, case: dict, label: str) -> list[str]:
    """Sends one case and returns what differs from its expectation."""
    name = case["name"]
    req, expect = case["request"], case["expect"]
    request_id = f"conf-{name}-{label}"
    headers = [tuple(h) for h in req["headers"]] + [("x-request-id", request_id)]
    if name in PROXY_REFUSES:
        status, rh, _ = gw.request(req["method"], req["path"], headers)
        if status != PROXY_REFUSES[name] or "x-error-code" in rh or "x-origin" in rh:
            return [f"{name}: got {status} {rh.get('x-error-code')}, want the proxy's own {PROXY_REFUSES[name]}"]
        return []
    if expect["code"] == "invalid_path" and gw.path_seen(req["path"]) != req["path"]:
        return check_normalized(gw, case, label)
    status, rh, body = gw.request(req["method"], req["path"], headers)
    return answer_problems(case, request_id, status, rh, body)


def test_conformance_vectors(tmp_path, gateway_each_crypto, issuer):
    gateway = gateway_each_crypto
    attempts = []
    gw = None
    for attempt in range(3):
        now = int(time.time()) + 8
        vectors = mint_vectors(tmp_path, now, issuer.base)
        serve_vectors(issuer, vectors)
        cases = {c["name"]: c for c in vectors["cases"]}
        assert len(cases) >= 150 and set(CLOCK_PINNED) <= set(cases) and set(PROXY_REFUSES) <= set(cases)
        if gw is None:
            gw = gateway(vectors["config"])
        # Ready once this attempt's feed is in force: its watermark (now-10) makes this key valid.
        wait_for(lambda: not check_case(gw, cases["api_key_watermark_boundary"], "probe"), 20, 0.2,
                 "the minted JWKS and feed to be in use")
        while time.time() < now:
            time.sleep(0.005)
        pinned_problems, in_time = [], True
        for name in CLOCK_PINNED:
            before = time.time()
            pinned_problems += check_case(gw, cases[name], "pinned")
            in_time &= int(before) == now and int(time.time()) == now
        if not in_time:
            attempts.append(f"attempt {attempt}: the clock-pinned cases did not fit in second {now}")
            continue
        problems = list(pinned_problems)
        sent = len(CLOCK_PINNED)
        for label in ("first", "cached"):
            for name, case in cases.items():
                if name not in CLOCK_PINNED:
                    problems += check_case(gw, case, label)
                    sent += 1
        assert time.time() < now + 20, "the suite must run within the 20 s the minted times allow"
        assert not problems, f"{len(problems)} conformance failures through {gw.name}:\n" + "\n".join(problems)
        assert sent >= 2 * len(cases) - len(CLOCK_PINNED)
        # The path under test is the one that ran: the host's crypto answered, or nothing was
        # asked of it.
        assert gw.host_crypto_used() == gw.host_crypto, f"{gw.name}: host crypto used: {gw.host_crypto_used()}"
        return
    pytest.fail("; ".join(attempts))
