"""The conformance data file against the auth-server's own checks (`GET /v1/sessions/validate`).

The server judges the tokens and API keys it accepts with auth-core's verifier, the gateways'
rules. This suite holds it to the same vectors the gateways pass: a server whose issuer,
audience, keys (imported with `auth-server keys import`), HMAC key ring and revocations are
those of the vectors must answer every verification case as a gateway does.

Cases that are not the server's to answer are left out, each for a stated reason:
* route rules (paths other than the authenticated catch-all `/api/...`, anonymous routes,
  roles, scopes, orgs, credential kinds, CSRF): the server has no routes;
* access tokens in the gateways' cookie (`ag_at`): the server reads its own cookie;
* tokens of the third-party issuer: the server trusts only itself;
* `api_key_pending`: the vectors' watermark is a feed's; the server asks its database about a
  key newer than its own snapshot instead (tests/server/test_server_flows.py covers it);
* the cases decided by the second (`expired_boundary_30s`, `nbf_future_31`) or by seconds
  (`expired_10s_within_skew`, `nbf_future_60`): the vectors are minted for `now`, and the server
  reads its own clock a few seconds later. auth-core decides them with a fixed clock
  (auth-core/tests/conformance.rs), with the code the server runs.
"""

import base64
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from authsrv import Server

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from gateway_fixtures import http_request, load_mint  # noqa: E402

ROUTE_CODES = {"invalid_path", "invalid_method", "no_matching_route", "insufficient_role", "insufficient_scope",
               "org_not_allowed", "credential_not_accepted", "csrf_token_invalid", "csrf_origin_mismatch"}
CLOCK_DECIDED = {"expired_boundary_30s", "nbf_future_31", "expired_10s_within_skew", "nbf_future_60"}


def b64u_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def bearer_issuer(headers) -> str | None:
    for name, value in headers:
        if name.lower() == "authorization" and value.lower().startswith("bearer "):
            try:
                claims = b64u_json(value.split(" ", 1)[1].strip().split(".")[1])
            except (ValueError, IndexError):
                return None
            return claims.get("iss") if isinstance(claims, dict) else None
    return None


def why_not_the_servers(case: dict, mint) -> str | None:
    req, code = case["request"], case["expect"]["code"]
    if not req["path"].startswith("/api") or req["method"] != "GET" or code in ROUTE_CODES:
        return "route rule"
    if any(name.lower() == "cookie" for name, _ in req["headers"]):
        return "the gateways' cookie"
    if bearer_issuer(req["headers"]) == mint.TP_ISS:
        return "third-party issuer"
    if code == "api_key_pending":
        return "feed watermark"
    if case["name"] in CLOCK_DECIDED:
        return "decided by the second"
    return None


@pytest.fixture(scope="module")
def conformance_server(binaries, tmp_path_factory):
    mint = load_mint()
    work = tmp_path_factory.mktemp("conformance-server")
    keys = mint.HERE / "keys"
    secrets = json.loads((keys / "secrets.json").read_text())
    config = work / "authgate.toml"
    config.write_text(
        f'data_dir = "{work / "data"}"\n'
        "[tokens]\naudience = \"api\"\n"
        f"[[api_keys.hmac_keys]]\nkid = \"hk1\"\nsecret = \"{secrets['hk1']}\"\n"
    )
    server = Server(binaries[0], work, {"AUTHGATE_CONFIG": str(config), "AUTHGATE_LOG_LEVEL": "warn", "AUTHGATE_PUBLIC_URL": mint.MAIN_ISS,
                                        "AUTHGATE_MASTER_KEY": base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()})
    # The vectors' signing keys, published (never signing: activation in ten years).
    hs1 = work / "hs1.key"
    hs1.write_text(secrets["hs1"])
    for kid, alg, path in (("ed1", "EdDSA", keys / "ed1.pem"), ("es1", "ES256", keys / "es1.pem"),
                           ("rs1", "RS256", keys / "rs1.pem"), ("hs1", "HS256", hs1)):
        server.cli("keys", "import", "--alg", alg, "--kid", kid, "--private-key", str(path), "--activate-in", str(10 * 365 * 86400))
    # Minted now, so the time cases hold for the server's clock.
    m = mint.Minter(mint.Keys(keys), int(time.time()), "inline")
    vectors = m.build()
    # The vectors' revocations, as the server's own (written before it starts: its snapshot).
    feed = b64u_json(vectors["feed"].split(".")[1])
    db = sqlite3.connect(work / "data" / "authgate.db")
    for kind, entries in feed["revoked"].items():
        for e in entries:
            db.execute("INSERT INTO revocations (kind, id, iat_before, exp, created_at) VALUES (?, ?, ?, ?, ?)",
                       (kind, e["id"], e.get("iat_before"), e["exp"], int(time.time())))
    db.execute("UPDATE feed_state SET ver = ver + 1")
    db.commit()
    db.close()
    server.start()
    yield server, vectors, mint
    server.stop()


def test_conformance_vectors_through_the_validate_endpoint(conformance_server):
    server, vectors, mint = conformance_server
    port = int(server.url.rsplit(":", 1)[1])
    problems, ran, left_out = [], 0, {}
    for case in vectors["cases"]:
        reason = why_not_the_servers(case, mint)
        if reason:
            left_out[reason] = left_out.get(reason, 0) + 1
            continue
        ran += 1
        name, expect = case["name"], case["expect"]
        status, rh, body = http_request(port, "GET", "/v1/sessions/validate", case["request"]["headers"], timeout=10)
        size = sum(len(k) + len(v) for k, v in case["request"]["headers"])
        if size > 16 * 1024 and status == 431:
            # Refused by the HTTP layer before any handler runs, as Envoy and workerd do.
            continue
        if expect["code"] is None:
            if status != 200:
                problems.append(f"{name}: {status} {rh.get('x-error-code')}, want 200")
                continue
            doc = json.loads(body)
            want_sub = expect["headers"].get("x-auth-subject")
            if want_sub is not None and mint.forwarded(doc["sub"]) != want_sub:
                problems.append(f"{name}: sub {doc['sub']!r}, want {want_sub!r}")
            want_roles = expect["headers"].get("x-auth-roles")
            if want_roles is not None and ",".join(doc["roles"]) != want_roles:
                problems.append(f"{name}: roles {doc['roles']}, want {want_roles!r}")
        elif status != expect["status"] or rh.get("x-error-code") != expect["code"]:
            problems.append(f"{name}: {status} {rh.get('x-error-code')}, want {expect['status']} {expect['code']}")
    assert ran >= 100, f"only {ran} cases are the server's: {left_out}"
    assert not problems, f"{len(problems)} of {ran} cases answered differently:\n" + "\n".join(problems)
