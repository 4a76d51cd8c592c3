"""Webhooks: an organisation's audit events POSTed to its admins' URLs, signed as Standard
Webhooks sign (checked with the `standardwebhooks` library), retried with backoff, and — through
a receiver answering 500 and a server killed mid-delivery — every event ends delivered exactly
once to the application after de-duplication by `webhook-id`. Registration refuses URLs aimed
at the server's own network; each organisation sees and deletes only its own webhooks."""

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from authsrv import PASSWORD, admin_user, api_key, assert_error, login, operator_user

# Fast retries and polling for the suite; private addresses and http allowed (the receiver is
# 127.0.0.1). The defaults refuse both: see test_registration_refuses_the_servers_own_network.
FAST = {
    "AUTHGATE_WEBHOOKS__ALLOW_HTTP": "true",
    "AUTHGATE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES": "true",
    "AUTHGATE_WEBHOOKS__POLL_MS": "100",
    "AUTHGATE_WEBHOOKS__RETRY_BASE_MS": "100",
    "AUTHGATE_WEBHOOKS__RETRY_MAX_MS": "400",
    "AUTHGATE_WEBHOOKS__TIMEOUT_MS": "1000",
}


class Receiver:
    """An HTTP receiver that records every request; `fail` answers 500 to the first n; `hang`
    holds the first request until released (the server is killed meanwhile)."""

    def __init__(self, fail=0, hang=False):
        self.requests = []
        self.fail = fail
        self.hang = threading.Event() if hang else None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                with receiver.lock:
                    receiver.requests.append((dict((k.lower(), v) for k, v in self.headers.items()), body))
                    n = len(receiver.requests)
                if receiver.hang is not None and n == 1:
                    receiver.hang.wait(30)
                status = 500 if n <= receiver.fail else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/authgate"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        if self.hang is not None:
            self.hang.set()
        self.httpd.shutdown()

    def verified(self, secret):
        """Every request verified as an application would (signature, timestamp), then
        de-duplicated by webhook-id: {id: event}."""
        wh = Webhook(secret)
        out = {}
        with self.lock:
            got = list(self.requests)
        for headers, body in got:
            event = wh.verify(body, headers)
            assert headers["webhook-id"] == event["id"] and headers["content-type"] == "application/json"
            out.setdefault(event["id"], event)
        return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def org_admin(srv, name="Hooked"):
    org = json.loads(srv.cli("admin", "create-org", "--name", name).stdout)["org_id"]
    email, tokens = admin_user(srv, roles=("admin",), org=org)
    return org, email, tokens["access_token"]


def register(srv, token, url, actions=None, expect=201):
    body = {"url": url}
    if actions is not None:
        body["actions"] = actions
    r = srv.client().post("/v1/webhooks", json=body, token=token)
    assert r.status_code == expect, r.text
    return r.json()


def audit_ids(srv, token, since_id):
    return {e["id"] for e in srv.client().get("/v1/audit", token=token, params={"limit": 1000}).json() if e["id"] >= since_id}


def wait_for(check, timeout=15.0):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.1)


def test_every_event_arrives_signed_and_matches_the_audit_log(backend, mail, receiver):
    srv = backend.isolated().server(**FAST)
    org, _, admin = org_admin(srv)
    hook = register(srv, admin, receiver.url)
    assert hook["secret"].startswith("whsec_") and hook["url"] == receiver.url and hook["actions"] == []
    first = srv.client().get("/v1/audit", token=admin, params={"action": "webhook.created"}).json()[0]["id"]
    # Events of the organisation: a member created, signed in, given a role, disabled.
    _, member_tokens = admin_user(srv, roles=("reader",), org=org)
    member = srv.client().get("/v1/me", token=member_tokens["access_token"]).json()["id"]
    assert srv.client().put(f"/v1/users/{member}/roles", json={"roles": ["editor"]}, token=admin).status_code == 204
    assert srv.client().post(f"/v1/users/{member}/disable", token=admin).status_code == 204
    expected = audit_ids(srv, admin, first)
    assert len(expected) >= 5
    got = wait_for(lambda: (lambda v: v if set(v) == expected else None)(receiver.verified(hook["secret"])))
    assert got, (expected, set(receiver.verified(hook["secret"])))
    # The body is the event as the audit API shows it.
    listed = {e["id"]: e for e in srv.client().get("/v1/audit", token=admin, params={"limit": 1000}).json()}
    assert all(got[i] == listed[i] for i in expected)
    assert {e["org_id"] for e in got.values()} == {org}
    # A forged or altered delivery does not verify.
    headers, body = receiver.requests[0]
    with pytest.raises(Exception):
        Webhook(hook["secret"]).verify(body.replace('"', "'", 1) + " ", headers)
    with pytest.raises(Exception):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
    listed_hooks = srv.client().get("/v1/webhooks", token=admin).json()
    assert [h["id"] for h in listed_hooks] == [hook["id"]] and "secret" not in listed_hooks[0]
    deliveries = srv.client().get(f"/v1/webhooks/{hook['id']}/deliveries", token=admin).json()
    assert {d["event_id"] for d in deliveries} == expected
    assert all(d["status"] == "delivered" and d["attempts"] == 1 and d["last_status"] == 204 for d in deliveries)


def test_filters_organisations_and_the_platform_stay_apart(backend, mail):
    srv = backend.isolated().server(**FAST)
    logins, everything_b = Receiver(), Receiver()
    try:
        org_a, email_a, admin_a = org_admin(srv, "A")
        org_b, _, admin_b = org_admin(srv, "B")
        hook_a = register(srv, admin_a, logins.url, ["login.", "user.disabled"])
        hook_b = register(srv, admin_b, everything_b.url)
        login(srv, email_a)
        c = srv.client()
        r = c.post("/v1/auth/init", json={"email": email_a})
        r = c.post("/v1/auth/authenticate", json={"method": "password", "password": "x" + PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
        assert_error(r, 401, "invalid_credentials")
        _, platform = operator_user(srv)
        srv.cli("keys", "rotate")
        org_b_member = admin_user(srv, roles=("reader",), org=org_b)
        got_a = wait_for(lambda: (lambda v: v if {"login.succeeded", "login.failed"} <= {e["action"] for e in v.values()} else None)(logins.verified(hook_a["secret"])))
        assert got_a and {e["action"] for e in got_a.values()} <= {"login.succeeded", "login.failed"}
        assert {e["org_id"] for e in got_a.values()} == {org_a}
        expected_b = audit_ids(srv, admin_b, srv.client().get("/v1/audit", token=admin_b, params={"action": "webhook.created"}).json()[0]["id"])
        got_b = wait_for(lambda: (lambda v: v if set(v) == expected_b else None)(everything_b.verified(hook_b["secret"])))
        assert got_b and {e["org_id"] for e in got_b.values()} == {org_b}
        # The platform's own events (a key rotation) reach no organisation's webhook.
        assert "signing_keys.rotated" not in {e["action"] for e in list(got_a.values()) + list(got_b.values())}
        # Another organisation's admin neither sees nor touches A's webhook.
        assert srv.client().get("/v1/webhooks", token=admin_b).json()[0]["id"] == hook_b["id"]
        assert_error(srv.client().delete(f"/v1/webhooks/{hook_a['id']}", token=admin_b), 404, "webhook_not_found")
        assert_error(srv.client().get(f"/v1/webhooks/{hook_a['id']}/deliveries", token=admin_b), 404, "webhook_not_found")
        # Deleting the webhook drops its queue: the next events are not sent.
        assert srv.client().delete(f"/v1/webhooks/{hook_a['id']}", token=admin_a).status_code == 204
        before = len(logins.requests)
        login(srv, email_a)
        deleted = srv.client().get("/v1/audit", token=admin_a, params={"action": "webhook.deleted"}).json()
        assert [e["target_id"] for e in deleted] == [hook_a["id"]]
        time.sleep(1.0)  # ten polls
        assert len(logins.requests) == before
        assert org_b_member and platform
    finally:
        logins.close()
        everything_b.close()


def test_a_failing_receiver_is_retried_until_it_answers(backend, mail):
    srv = backend.isolated().server(**FAST)
    flaky = Receiver(fail=3)
    try:
        org, _, admin = org_admin(srv)
        hook = register(srv, admin, flaky.url, ["user.created"])
        admin_user(srv, roles=("reader",), org=org)
        got = wait_for(lambda: flaky.verified(hook["secret"]) if len(flaky.requests) >= 4 else None)
        assert got and [e["action"] for e in got.values()] == ["user.created"]
        assert len(flaky.requests) == 4  # three 500s, then the delivery
        deliveries = srv.client().get(f"/v1/webhooks/{hook['id']}/deliveries", token=admin).json()
        assert [(d["status"], d["attempts"], d["last_status"]) for d in deliveries] == [("delivered", 4, 204)]
    finally:
        flaky.close()


def test_a_receiver_that_never_answers_is_given_up_after_max_attempts(backend, mail):
    srv = backend.isolated().server(**FAST, AUTHGATE_WEBHOOKS__MAX_ATTEMPTS="3")
    broken = Receiver(fail=10**6)
    try:
        org, _, admin = org_admin(srv)
        hook = register(srv, admin, broken.url, ["user.created"])
        admin_user(srv, roles=("reader",), org=org)
        failed = wait_for(lambda: [d for d in srv.client().get(f"/v1/webhooks/{hook['id']}/deliveries", token=admin).json() if d["status"] == "failed"])
        assert [(d["attempts"], d["last_status"]) for d in failed] == [(3, 500)]
        assert "500" in failed[0]["last_error"]
        assert srv.client().get("/v1/webhooks", token=admin).json()[0]["failed"] == 1
        time.sleep(0.5)
        assert len(broken.requests) == 3
    finally:
        broken.close()


def test_a_server_killed_mid_delivery_delivers_after_restart(backend, mail):
    iso = backend.isolated()
    srv = iso.server(**FAST)
    slow = Receiver(hang=True)
    try:
        org, email, admin = org_admin(srv)
        hook = register(srv, admin, slow.url, ["user.created"])
        admin_user(srv, roles=("reader",), org=org)
        assert wait_for(lambda: len(slow.requests) >= 1)
        # The receiver holds the request; the server dies without recording an outcome.
        srv.stop(sig=signal.SIGKILL)
        slow.hang.set()
        restarted = iso.server(**FAST)
        admin2 = login(restarted, email)["access_token"]
        delivered = wait_for(lambda: [d for d in restarted.client().get(f"/v1/webhooks/{hook['id']}/deliveries", token=admin2).json() if d["status"] == "delivered"])
        assert delivered and delivered[0]["attempts"] == 2
        # The receiver saw the event twice; after de-duplication by id, once.
        got = slow.verified(hook["secret"])
        assert len(slow.requests) == 2 and [e["action"] for e in got.values()] == ["user.created"]
    finally:
        slow.close()


def test_registration_refuses_the_servers_own_network(srv, mail, receiver):
    org, email, admin = org_admin(srv)
    # The default configuration: https only, public addresses only (at registration and at
    # each connection).
    for url in [receiver.url, "https://127.0.0.1/x", "https://localhost/x", "https://[::1]/x", "https://169.254.169.254/latest/meta-data",
                "https://10.0.0.1/x", "https://0x7f000001/x", "https://user:pw@93.184.216.34/x", "ftp://93.184.216.34/x", "not a url"]:
        assert_error(srv.client().post("/v1/webhooks", json={"url": url}, token=admin), 400, "invalid_webhook_url")
    assert_error(srv.client().post("/v1/webhooks", json={"url": "https://93.184.216.34/x", "actions": ["login"]}, token=admin), 400, "invalid_action")
    assert_error(srv.client().post("/v1/webhooks", json={"url": "https://93.184.216.34/x", "secret": "mine"}, token=admin), 400, "invalid_request")
    # Only admins, with their session.
    _, member = admin_user(srv, roles=("reader",), org=org)
    assert_error(srv.client().post("/v1/webhooks", json={"url": "https://93.184.216.34/x"}, token=member["access_token"]), 403, "insufficient_role")
    key = api_key(srv, mail, admin, email, ["admin"])
    r = srv.client().post("/v1/webhooks", json={"url": "https://93.184.216.34/x"}, headers={"x-api-key": key["key_id"], "x-api-secret": key["secret"]})
    assert_error(r, 403, "user_session_required")
    assert srv.client().get("/v1/webhooks", token=admin).json() == []


def test_the_cap_holds_and_webhooks_can_be_turned_off(backend, mail):
    srv = backend.isolated().server(**FAST, AUTHGATE_WEBHOOKS__MAX_PER_ORG="2")
    _, _, admin = org_admin(srv)
    register(srv, admin, "http://127.0.0.1:9/a")
    register(srv, admin, "http://127.0.0.1:9/b")
    assert_error(srv.client().post("/v1/webhooks", json={"url": "http://127.0.0.1:9/c"}, token=admin), 409, "too_many_webhooks")
    off = backend.isolated().server(AUTHGATE_WEBHOOKS__ENABLED="false")
    _, _, admin_off = org_admin(off)
    assert_error(off.client().get("/v1/webhooks", token=admin_off), 404, "webhooks_disabled")
    r = off.cli("migrate", env={"AUTHGATE_WEBHOOKS__MAX_ATTEMPTS": "0"}, check=False)
    assert r.returncode != 0 and "webhooks.max_attempts" in r.stderr


def test_replicas_share_the_queue_without_sending_twice(backend, mail, receiver):
    iso = backend.isolated()
    one, two = iso.server(**FAST), iso.server(**FAST)
    org, _, admin = org_admin(one)
    hook = register(one, admin, receiver.url, ["user.created"])
    for i in range(12):
        admin_user(one if i % 2 else two, roles=("reader",), org=org)
    got = wait_for(lambda: (lambda v: v if len(v) == 12 else None)(receiver.verified(hook["secret"])))
    assert got and len(receiver.requests) == 12, len(receiver.requests)
