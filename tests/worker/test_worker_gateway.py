"""What only the worker does as a gateway: its request ids, the origin as a service binding,
the feed credential and HMAC keys from secrets, and a bad configuration answering 500 naming the
field. What every gateway does with requests is in tests/gateways/test_gateway_requests.py."""

import json
import socket

from gateway_fixtures import Setup, bearer, upstream_doc, wait_for
from worker_harness import worker_env


def test_request_ids_the_worker_takes_or_makes_up(issuer, echo, workers, mint):
    """A denial's x-error-id: the client's x-request-id, else Cloudflare's cf-ray, else one the
    worker makes up (`ag-...`)."""
    setup = Setup(mint, issuer)
    w = workers(worker_env(setup.gateway, echo))
    status, rh, body = w.request("GET", "/api/items")
    assert status == 401 and rh["x-error-id"].startswith("ag-") and json.loads(body)["error_id"] == rh["x-error-id"]
    status, rh, _ = w.request("GET", "/api/items", [("cf-ray", "8f00aa-LHR")])
    assert rh["x-error-id"] == "8f00aa-LHR"
    status, rh, _ = w.request("GET", "/api/items", [("cf-ray", "8f00aa-LHR"), ("x-request-id", "req-78")])
    assert rh["x-error-id"] == "req-78"


def test_origin_as_a_service_binding(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    w = setup.ready(workers(worker_env(setup.gateway, echo, AUTHGATE_ORIGIN=None), origin_service=f"127.0.0.1:{echo.port}"))
    status, _, body = w.request("POST", "/api/items?x=1", bearer(setup.token(sub="svc")) + [("x-auth-subject", "evil")], b"hello")
    assert status == 200
    seen = upstream_doc(body)
    assert seen["method"] == "POST" and seen["path"] == "/api/items?x=1" and seen["body_length"] == 5
    assert dict(seen["headers"])["x-auth-subject"] == "svc"


def test_an_origin_that_refuses_connections_answers_500(issuer, echo, workers, mint):
    """An allowed request whose origin cannot be reached is answered 500 and logged, not left
    hanging; what the gateway denies is still its own answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    setup = Setup(mint, issuer)
    w = workers(worker_env(setup.gateway, echo, AUTHGATE_ORIGIN=f"http://127.0.0.1:{closed}"))
    token = setup.token()
    wait_for(lambda: w.request("GET", "/api", bearer(token))[0] == 500, 20, 0.1, "keys in, the origin refusing")
    status, rh, body = w.request("POST", "/api/items", bearer(setup.token(sub="u2")), b"x")
    assert (status, body) == (500, b"INTERNAL SERVER ERROR") and "x-error-code" not in rh
    wait_for(lambda: "the origin did not answer" in w.log(), 5, 0.1, "the failure logged")
    status, rh, _ = w.request("GET", "/api")
    assert status == 401 and rh["x-error-code"] == "credential_missing"


def test_feed_credential_comes_from_secrets(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    issuer.feed_credential = ("agk_gateway", "s3cret")
    w = setup.ready(workers(worker_env(setup.gateway, echo, AUTHGATE_FEED_KEY_ID="agk_gateway", AUTHGATE_FEED_SECRET="s3cret")))
    assert w.request("GET", "/api", bearer(setup.token()))[0] == 200
    sent = issuer.headers_seen["/v1/revocations"][-1]
    assert sent["x-api-key"] == "agk_gateway" and sent["x-api-secret"] == "s3cret"
    assert "s3cret" not in w.log()


def test_hmac_keys_come_from_the_api_keys_secret(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    api_keys = setup.gateway.pop("api_keys")
    w = setup.ready(workers(worker_env(setup.gateway, echo, AUTHGATE_API_KEYS=json.dumps(api_keys))))
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
