"""Scenarios 8 and 9 of the system: dependencies failing under the running gateways, and bad
input at every entry. Each fault test puts the system back as it found it."""

import re
import time

import requests

from authsrv import login, new_email, sign_up
from gateway_fixtures import wait_for
from system_harness import FEED_TTL_S, bearer, denied, seen_by_upstream, until_status

# Lines that mean a component crashed or a wasm VM failed.
CRASH = re.compile(r"panicked|RuntimeError: unreachable|wasm trap|Function: proxy_on_\w+ failed|failed to .*VM|Segmentation", re.I)


def no_crash(system):
    assert system.server.proc.poll() is None, "the auth-server died"
    for gw in system.gateways:
        assert gw.alive(), f"{gw} died"
        found = CRASH.findall(gw.log())
        assert not found, f"{gw} log shows a crash: {found[:3]}"
    assert not CRASH.findall(system.server.logs()), "the auth-server log shows a panic"


def test_auth_server_down_and_back(system, gateways, mail):
    """8a/8b. Auth-server stopped: the gateways keep verifying on the keys they hold (even tokens
    they never saw); once the feed is past its `exp`, fail-closed routes answer 503
    revocations_stale and fail-open routes carry on. Auth-server back: both recover by
    themselves, no gateway restarted."""
    addr = sign_up(system.server, mail)
    seen_before = login(system.server, addr)["access_token"]
    never_seen = login(system.server, addr)["access_token"]
    for gw in gateways:
        seen_by_upstream(gw, "GET", "/orders", bearer(seen_before))
    pids = [gw.owner.proc.pid for gw in gateways]

    system.server.stop()
    stopped = time.monotonic()
    try:
        try:
            requests.get(system.server.url + "/healthz", timeout=2)
            raise AssertionError("the auth-server still answers")
        except requests.ConnectionError:
            pass
        for gw in gateways:
            for tok in (seen_before, never_seen):
                seen_by_upstream(gw, "GET", "/orders", bearer(tok))
        # The feed held by each gateway runs out within its lifetime (the auth-server re-signs
        # it after half of it, so between FEED_TTL_S / 2 and FEED_TTL_S after the stop).
        for gw in gateways:
            until_status(gw, "/orders", bearer(never_seen), 503, FEED_TTL_S + 5)
            denied(gw, "GET", "/orders", bearer(never_seen), status=503, code="revocations_stale")
            # Fail-open routes keep verifying signatures with the last good keys ...
            assert seen_by_upstream(gw, "GET", "/lenient/status", bearer(never_seen))["x-auth-subject"]
            # ... and still refuse what is not valid.
            denied(gw, "GET", "/lenient/status", bearer(never_seen[:-4] + "AAAA"), status=401, code="signature_invalid")
            assert seen_by_upstream(gw, "GET", "/healthz") == {}
        stale_after = time.monotonic() - stopped
        assert stale_after <= FEED_TTL_S + 5
    finally:
        system.server.start()

    for gw in gateways:
        took = until_status(gw, "/orders", bearer(never_seen), 200, 15)
        assert took < 15, (gw, took)
    assert [gw.owner.proc.pid for gw in gateways] == pids, "a gateway was restarted"
    # The recovered system works end to end: a new login, and a logout that the gateways enforce.
    fresh = login(system.server, addr)
    for gw in gateways:
        seen_by_upstream(gw, "GET", "/orders", bearer(fresh["access_token"]))
    assert system.client().post("/v1/sessions/logout", token=fresh["access_token"]).status_code == 204
    for gw in gateways:
        until_status(gw, "/orders", bearer(fresh["access_token"]), 401, 5)
    no_crash(system)


def test_postgres_restart_keeps_sessions(system, gateways, mail):
    """8c. PostgreSQL restarted under the running auth-server: it reports not ready and answers
    503 meanwhile (the gateways keep serving), then recovers with no session lost."""
    addr = sign_up(system.server, mail)
    t0 = login(system.server, addr)
    c = system.client()
    system.pg.stop()
    try:
        wait_for(lambda: requests.get(system.server.url + "/readyz", timeout=5).status_code == 503, 15, 0.2, "readyz 503")
        r = c.post("/v1/sessions/refresh", json={"refresh_token": t0["refresh_token"]})
        assert (r.status_code, r.headers.get("x-error-code")) == (503, "database_unavailable"), (r.status_code, r.headers)
        assert r.headers.get("x-error-id") and r.headers.get("retry-after") == "1", r.headers
        for gw in gateways:
            seen_by_upstream(gw, "GET", "/orders", bearer(t0["access_token"]))
    finally:
        system.pg.start()
    wait_for(lambda: requests.get(system.server.url + "/readyz", timeout=5).status_code == 200, 30, 0.2, "readyz 200")
    me = c.get("/v1/me", token=t0["access_token"])
    assert me.status_code == 200 and me.json()["email"] == addr
    sessions = c.get("/v1/sessions", token=t0["access_token"]).json()
    assert t0["session_id"] in [s["id"] for s in sessions], sessions
    r = c.post("/v1/sessions/refresh", json={"refresh_token": t0["refresh_token"]})
    assert r.status_code == 200, r.text
    t1 = r.json()
    assert t1["session_id"] == t0["session_id"]
    for gw in gateways:
        seen_by_upstream(gw, "GET", "/orders", bearer(t1["access_token"]))
    no_crash(system)


def test_bad_input_at_every_entry(system, gateways, mail):
    """9. Malformed JSON, oversize bodies and headers, wrong content types, unknown fields and
    hostile credentials, at the auth-server and at both gateways: a 4xx with the error headers,
    nothing changed, no crash, and every error id in the logs."""
    url = system.server.url
    addr = new_email("bad-input")
    mark = mail.mark()
    json_ct = {"content-type": "application/json"}
    server_cases = [
        ("POST", "/v1/users", b'{"email": "' + addr.encode() + b'", "password": ', json_ct),  # truncated JSON
        ("POST", "/v1/users", b'{"email": "%s", "password": "correct horse battery staple 42", "roles": ["admin"]}' % addr.encode(), json_ct),
        ("POST", "/v1/users", b"email=" + addr.encode() + b"&password=x", {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", "/v1/users", b'{"email": "%s", "password": "%s"}' % (addr.encode(), b"p" * 70_000), json_ct),
        ("POST", "/v1/users", b'["not", "an", "object"]', json_ct),
        ("POST", "/v1/users", b'{"email": 42, "password": null}', json_ct),
        ("POST", "/v1/auth/init", b'{"email": "' + addr.encode() + b'", "debug": true}', json_ct),
        ("POST", "/v1/sessions/refresh", b'{"refresh_token": {"$ne": null}}', json_ct),
        ("POST", "/v1/api-keys", b'{"name": "k", "roles": ["admin"]}', {**json_ct, "authorization": "Bearer not.a.token"}),
        ("POST", "/oauth2/token", b'{"grant_type": "client_credentials"}', json_ct),
        ("GET", "/v1/revocations", None, {"x-api-key": "agk_\u00e9vil", "x-api-secret": "x"}),
        ("GET", "/v1/me", None, {"authorization": "Bearer " + "a" * 20_000}),
    ]
    server_ids, envoy_ids = [], []
    for method, path, body, headers in server_cases:
        try:
            r = requests.request(method, url + path, data=body, headers=headers, timeout=10)
        except UnicodeEncodeError:
            r = requests.request(method, url + path, data=body, headers={k: v.encode() for k, v in headers.items()}, timeout=10)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
        for h in ("x-error", "x-error-id", "x-error-code"):
            assert r.headers.get(h), (path, h, r.headers)
        assert r.json()["error_id"] == r.headers["x-error-id"]
        server_ids.append(r.headers["x-error-id"])
    # Oversize headers in all (past hyper's ~400 KB read buffer): refused before any handler,
    # with 431 or by closing the connection while they are still being sent.
    try:
        r = requests.get(url + "/v1/me", headers={"x-padding": "p" * 1_000_000}, timeout=10)
        assert r.status_code == 431, r.status_code
    except requests.ConnectionError:
        pass
    assert requests.get(url + "/healthz", timeout=5).status_code == 200

    # Nothing changed: no account was created (no email went out), and the address signs up normally.
    time.sleep(0.5)
    assert not any(addr in m["to"] for m in mail.messages[mark:]), "a refused request sent an email"
    sign_up(system.server, mail, addr)

    token = login(system.server, addr)["access_token"]
    big = "e" * 20_000
    gateway_cases = [
        ([("authorization", "Bearer abc")], 401, "token_malformed"),
        ([("authorization", "Bearer " + big)], 401, "token_too_large"),
        ([("authorization", "Bearer " + token + "\xff\xfe")], 401, "token_malformed"),
        ([("authorization", "Bearer " + token), ("authorization", "Bearer " + token)], 400, "conflicting_credentials"),
        ([("authorization", "Bearer " + token), ("x-api-key", "agk_x"), ("x-api-secret", "y")], 400, "conflicting_credentials"),
        ([("authorization", "Basic " + "QWxhZGRpbjpvcGVuIHNlc2FtZQ==")], 401, "unsupported_scheme"),
        ([("x-api-key", "agk_%%%"), ("x-api-secret", "s")], 401, "api_key_malformed"),
        ([("authorization", "Bearer " + ".".join(token.split(".")[:2]) + ".")], 401, "signature_invalid"),
        ([("cookie", "authgate_at=" + token + "; authgate_at=" + token)], 400, "conflicting_credentials"),
    ]
    for gw in gateways:
        for headers, status, code in gateway_cases:
            rh = denied(gw, "POST", "/orders", headers, status=status, code=code, body=b'{"truncated": ')
            if gw.name == "envoy":
                envoy_ids.append(rh["x-error-id"])
        # Oversize request headers in all: refused by the proxy itself (Envoy 431, workerd 4xx).
        status, _, _ = gw.request("GET", "/orders", [("x-padding", "p" * 200_000), *bearer(token)])
        assert 400 <= status < 500, (gw, status)
        # The same token still works: bad input changed nothing.
        seen_by_upstream(gw, "GET", "/orders", bearer(token))

    time.sleep(0.5)  # access logs are flushed every 100 ms
    server_log = system.server.logs()
    assert all(i in server_log for i in server_ids), "every auth-server error id is logged"
    envoy_log = system.envoy.stdout_path.read_text(errors="replace")
    assert all(i in envoy_log for i in envoy_ids), "every Envoy denial is in its access log"
    no_crash(system)
