"""The worker as a gateway in workerd: identity headers, spoofing, methods and bodies passing
through, the origin as a service binding, the feed credential from secrets, and a bad
configuration answering 500 naming the field."""

import hashlib
import http.client
import json
import os

from worker_harness import upstream, wait_for, worker_env
from test_worker_material import Setup, bearer


def test_identity_headers_reach_the_origin_and_spoofed_ones_do_not(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    setup.gateway["routes"].insert(0, {"prefix": "/strip", "require": "authenticated", "strip_credential": True})
    setup.gateway["routes"].insert(0, {"prefix": "/public", "require": "anonymous"})
    w = setup.start(workers, echo)
    token = setup.token(sub="alice", roles=["reader", "writer"], sid="sid-alice")
    spoofed = [("x-auth-subject", "mallory"), ("X-Auth-Roles", "admin"), ("x-auth-admin", "1"), ("x-auth-key-id", "k")]

    status, _, body = w.request("GET", "/api/items?q=1&r=%20x", bearer(token) + spoofed)
    assert status == 200
    seen = upstream(body)
    assert seen["path"] == "/api/items?q=1&r=%20x"
    names = [k for k, _ in seen["headers"]]
    assert ("x-auth-subject", "alice") in seen["headers"] and ("x-auth-roles", "reader,writer") in seen["headers"]
    assert ("x-auth-session", "sid-alice") in seen["headers"] and ("x-auth-method", "jwt") in seen["headers"]
    assert names.count("x-auth-subject") == 1 and names.count("x-auth-roles") == 1
    assert "x-auth-admin" not in names and "x-auth-key-id" not in names
    assert ("authorization", f"Bearer {token}") in seen["headers"], "credential forwarded unless strip_credential"

    key_id, secret, kid = setup.api_key("identity")
    status, _, body = w.request("GET", "/strip/x", [("x-api-key", key_id), ("x-api-secret", secret)] + spoofed)
    assert status == 200
    seen = dict(upstream(body)["headers"])
    assert seen["x-auth-method"] == "api_key" and seen["x-auth-key-id"] == kid and seen["x-auth-subject"] == "user-1"
    assert "x-api-key" not in seen and "x-api-secret" not in seen and "x-auth-admin" not in seen

    # Anonymous routes forward no identity, and still strip the spoofed one.
    status, _, body = w.request("GET", "/public/x", spoofed)
    assert status == 200
    assert not [k for k, _ in upstream(body)["headers"] if k.startswith("x-auth-")]

    # A denial never reaches the origin, and answers as the plugin does.
    status, rh, body = w.request("GET", "/api/items", spoofed + [("x-request-id", "req-77")])
    assert status == 401 and "x-origin" not in rh
    assert rh["x-error-code"] == "credential_missing" and rh["x-error-id"] == "req-77"
    assert rh["www-authenticate"].startswith('Bearer')
    assert json.loads(body) == {"error": "credential_missing", "error_description": rh["x-error"], "error_id": "req-77"}
    # Without a request id the worker makes one up (cf-ray when Cloudflare set one).
    status, rh, body = w.request("GET", "/api/items")
    assert status == 401 and rh["x-error-id"].startswith("ag-") and json.loads(body)["error_id"] == rh["x-error-id"]
    status, rh, _ = w.request("GET", "/api/items", [("cf-ray", "8f00aa-LHR")])
    assert rh["x-error-id"] == "8f00aa-LHR"


def test_methods_and_bodies_pass_through_intact(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    w = setup.start(workers, echo)
    auth = bearer(setup.token())
    payload = os.urandom(3 * 1024 * 1024 + 17)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, _, body = w.request(method, "/api/upload", auth + [("content-type", "application/octet-stream")], payload)
        assert status == 200, (method, body[:200])
        seen = upstream(body)
        assert seen["method"] == method
        assert seen["body_length"] == len(payload) and seen["body_sha256"] == hashlib.sha256(payload).hexdigest()
        assert ("content-type", "application/octet-stream") in seen["headers"]
    for method in ("GET", "OPTIONS"):
        status, _, body = w.request(method, "/api/x", auth)
        assert status == 200 and upstream(body)["method"] == method and upstream(body)["body_length"] == 0
    status, rh, body = w.request("HEAD", "/api/x", auth)
    assert status == 200 and rh.get("x-origin") == "echo" and body == b""

    # A streamed (chunked) request body is handed to the origin as it arrives, unchanged.
    chunks = [os.urandom(64 * 1024) for _ in range(20)]
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=30)
    try:
        conn.request("POST", "/api/stream", body=iter(chunks), headers={**dict(auth), "content-type": "application/x-raw"},
                     encode_chunked=True)
        r = conn.getresponse()
        seen = upstream(r.read())
        assert r.status == 200
    finally:
        conn.close()
    joined = b"".join(chunks)
    assert seen["body_length"] == len(joined) and seen["body_sha256"] == hashlib.sha256(joined).hexdigest()

    # The origin's response (status, headers, body) comes back as it is.
    status, rh, body = w.request("GET", "/api/x", auth)
    assert rh["x-origin"] == "echo" and rh["content-type"] == "application/json"

    # A denied upload is refused without touching the origin.
    status, rh, _ = w.request("POST", "/api/upload", [("content-type", "text/plain")], b"x" * 1000)
    assert status == 401 and "x-origin" not in rh


def test_origin_as_a_service_binding(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    w = setup.start(workers, echo, env={"AUTHGATE_ORIGIN": None}, origin_service=f"127.0.0.1:{echo.port}")
    status, _, body = w.request("POST", "/api/items?x=1", bearer(setup.token(sub="svc")) + [("x-auth-subject", "evil")], b"hello")
    assert status == 200
    seen = upstream(body)
    assert seen["method"] == "POST" and seen["path"] == "/api/items?x=1" and seen["body_length"] == 5
    assert dict(seen["headers"])["x-auth-subject"] == "svc"


def test_feed_credential_comes_from_secrets(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    issuer.feed_credential = ("agk_gateway", "s3cret")
    w = setup.start(workers, echo, env={"AUTHGATE_FEED_KEY_ID": "agk_gateway", "AUTHGATE_FEED_SECRET": "s3cret"})
    assert w.request("GET", "/api", bearer(setup.token()))[0] == 200
    sent = issuer.headers_seen["/v1/revocations"][-1]
    assert sent["x-api-key"] == "agk_gateway" and sent["x-api-secret"] == "s3cret"
    assert "s3cret" not in w.log()


def test_hmac_keys_come_from_the_api_keys_secret(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    api_keys = setup.gateway.pop("api_keys")
    w = setup.start(workers, echo, env={"AUTHGATE_API_KEYS": json.dumps(api_keys)})
    key_id, secret, _ = setup.api_key("from-secret")
    assert w.request("GET", "/api", [("x-api-key", key_id), ("x-api-secret", secret)])[0] == 200


def test_bad_configuration_answers_500_naming_the_field_on_every_request(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    cases = [
        (worker_env({**setup.gateway, "routes": [{"prefix": "/", "require": "nope"}]}, echo), "routes[0].require"),
        (worker_env(setup.gateway, echo, AUTHGATE_ORIGIN="not a url"), "AUTHGATE_ORIGIN"),
        (worker_env(setup.gateway, echo, AUTHGATE_CONFIG="{"), "AUTHGATE_CONFIG"),
        (worker_env(setup.gateway, echo, AUTHGATE_FEED_KEY_ID="agk_x"), "AUTHGATE_FEED_SECRET"),
    ]
    for bindings, field in cases:
        w = workers(bindings)
        for i, (method, path, headers) in enumerate([("GET", "/", []), ("POST", "/api", bearer(setup.token())),
                                                       ("GET", "/public", [])]):
            status, rh, body = w.request(method, path, headers + [("x-request-id", f"bad-{i}")])
            assert status == 500, (field, status, body[:200])
            assert rh["x-error-code"] == "config_invalid" and field in rh["x-error"], rh
            assert rh["x-error-id"] == f"bad-{i}" and "x-origin" not in rh
            doc = json.loads(body)
            assert doc["error"] == "config_invalid" and field in doc["error_description"] and doc["error_id"] == f"bad-{i}"
        wait_for(lambda: w.log().count("invalid configuration") >= 3 and field in w.log(), 5, 0.1, "the error logged")
        assert issuer.count("/jwks/0.json") == 0
        w.stop()
