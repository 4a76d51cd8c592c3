"""Organisations as the platform runs them: platform admins (and the operator's CLI) create,
list, suspend and reinstate them. Suspension stops every credential of the organisation — its
people's tokens, refresh tokens and API keys, its clients' tokens — here and, through the
signed feed's `org` list, at the gateways (checked with the authgate CLI, auth-core); nobody
else is touched; reinstating brings back what was not revoked on its own. Tenant authority
never reaches it."""

import base64
import json
import time

from authsrv import (
    OPERATOR_ORG,
    PASSWORD,
    admin_user,
    api_key,
    assert_error,
    gateway_key,
    key_headers,
    login,
    operator_user,
    within_recheck,
)
from test_server_gateway import authgate_verify, k_iat


def b64u_json(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def feed_orgs(srv):
    _, cred = gateway_key(srv)
    r = srv.client().get("/v1/revocations", headers=cred)
    assert r.status_code == 200, r.text
    return [e["id"] for e in b64u_json(r.text.split(".")[1])["revoked"].get("org", [])]


def validate(srv, token=None, headers=None):
    return srv.client().get("/v1/sessions/validate", token=token, headers=headers)


def test_a_suspended_organisation_stops_every_credential_until_reinstated(srv, mail):
    _, platform = operator_user(srv)
    p = platform["access_token"]
    c = srv.client()
    r = c.post("/v1/orgs", json={"name": "Acme"}, token=p)
    assert r.status_code == 201, r.text
    org = r.json()["id"]
    email, tokens = admin_user(srv, roles=("admin", "reader"), org=org)
    key = api_key(srv, mail, tokens["access_token"], email, ["admin"])
    r = c.post("/v1/clients", json={"name": "batch", "roles": ["reader"]}, token=tokens["access_token"])
    assert r.status_code == 201, r.text
    client = r.json()
    bystander_email, bystander = admin_user(srv, roles=("admin",))
    assert validate(srv, tokens["access_token"]).status_code == 200

    assert c.post(f"/v1/orgs/{org}/suspend", token=p).status_code == 204
    assert org in feed_orgs(srv)
    assert_error(validate(srv, tokens["access_token"]), 403, "org_suspended")
    assert_error(validate(srv, headers=key_headers(key)), 403, "org_suspended")
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}), 403, "org_suspended")
    r = c.post("/v1/auth/init", json={"email": email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD},
               headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 403, "org_suspended")
    r = c.req("POST", "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"]))
    assert_error(r, 403, "org_suspended")
    # Nobody else is touched.
    assert validate(srv, bystander["access_token"]).status_code == 200
    assert login(srv, bystander_email)["status"] == "complete"
    listed = {o["id"]: o for o in c.get("/v1/orgs", token=p, params={"limit": 500}).json()}
    assert listed[org]["suspended_at"] and listed[org]["members"] == 1
    assert_error(c.post(f"/v1/orgs/{org}/suspend", token=p), 409, "org_suspended")

    assert c.post(f"/v1/orgs/{org}/reinstate", token=p).status_code == 204
    assert org not in feed_orgs(srv)
    # The refresh token was not spent by the refused refresh; the key and the token live again.
    assert c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    assert validate(srv, headers=key_headers(key)).status_code == 200
    assert login(srv, email)["status"] == "complete"
    assert_error(c.post(f"/v1/orgs/{org}/reinstate", token=p), 409, "org_not_suspended")
    actions = [e["action"] for e in c.get("/v1/audit", token=p, params={"org": org, "action": "org."}).json()]
    assert actions == ["org.reinstated", "org.suspended", "org.created"]


def test_the_gateways_refuse_a_suspended_organisations_credentials(srv, mail, backend, tmp_path):
    """The feed the gateways load, judged by auth-core (the authgate CLI): a token and an API key
    of the suspended organisation are refused, another organisation's pass."""
    _, platform = operator_user(srv)
    p = platform["access_token"]
    org = srv.client().post("/v1/orgs", json={"name": "Gated"}, token=p).json()["id"]
    email, tokens = admin_user(srv, roles=("admin",), org=org)
    key = api_key(srv, mail, tokens["access_token"], email, ["admin"])
    _, other = admin_user(srv, roles=("admin",))
    cfg, _ = gateway_key(srv)
    # The feed's watermark must cover the key first (else it is `api_key_pending`, as any new key).
    time.sleep(max(0.0, k_iat(key) + 2 - time.time()))
    assert srv.client().post(f"/v1/orgs/{org}/suspend", token=p).status_code == 204
    bearer = {"authorization": "Bearer " + tokens["access_token"]}
    for headers in (bearer, key_headers(key)):
        d = authgate_verify(backend, tmp_path, cfg, srv, headers)
        assert not d["allow"] and d["code"] == "org_suspended", d
    assert authgate_verify(backend, tmp_path, cfg, srv, {"authorization": "Bearer " + other["access_token"]})["allow"]
    assert srv.client().post(f"/v1/orgs/{org}/reinstate", token=p).status_code == 204
    assert authgate_verify(backend, tmp_path, cfg, srv, bearer)["allow"]


def test_tenant_authority_never_suspends_or_lists_organisations(srv, mail):
    _, tenant = admin_user(srv, roles=("admin",))
    t = tenant["access_token"]
    own = srv.client().get("/v1/me", token=t).json()["org_id"]
    for method, path in [("GET", "/v1/orgs"), ("POST", f"/v1/orgs/{own}/suspend"), ("POST", f"/v1/orgs/{own}/reinstate")]:
        assert_error(srv.client().req(method, path, token=t), 403, "insufficient_role")
    assert_error(srv.client().post("/v1/orgs", json={"name": "Mine"}, token=t), 403, "insufficient_role")
    # A platform admin cannot suspend the operator organisation (the platform's own and the
    # gateways' credentials live there), nor an organisation that does not exist.
    _, platform = operator_user(srv)
    p = platform["access_token"]
    assert_error(srv.client().post(f"/v1/orgs/{OPERATOR_ORG}/suspend", token=p), 409, "cannot_suspend_operator")
    assert_error(srv.client().post("/v1/orgs/org_nope/suspend", token=p), 404, "org_not_found")
    for bad in ["", " ", "x" * 101, "a\nb"]:
        assert_error(srv.client().post("/v1/orgs", json={"name": bad}, token=p), 400, "invalid_org_name")
    assert_error(srv.client().get("/v1/orgs", token=p, params={"limit": "0"}), 400, "invalid_limit")


def test_the_operator_cli_lists_suspends_and_reinstates(srv, mail):
    org = json.loads(srv.cli("admin", "create-org", "--name", "Cli Org").stdout)["org_id"]
    email, tokens = admin_user(srv, roles=("admin",), org=org)
    out = json.loads(srv.cli("orgs", "suspend", "--org", org).stdout)
    assert out == {"org_id": org, "suspended": True}
    # Another process made the change: the server sees it within feed.recheck_ms (200 ms here).
    assert_error(within_recheck(lambda: validate(srv, tokens["access_token"]), 403), 403, "org_suspended")
    listed = [json.loads(line) for line in srv.cli("orgs", "list").stdout.splitlines()]
    assert any(o["id"] == org and o["suspended_at"] for o in listed)
    ids = [o["id"] for o in listed]
    assert ids == sorted(ids)
    r = srv.cli("orgs", "suspend", "--org", OPERATOR_ORG, check=False)
    assert r.returncode != 0 and "cannot be suspended" in r.stderr
    r = srv.cli("orgs", "suspend", "--org", "org_missing", check=False)
    assert r.returncode != 0 and "org_missing" in r.stderr
    srv.cli("orgs", "reinstate", "--org", org)
    assert within_recheck(lambda: validate(srv, tokens["access_token"]), 200).status_code == 200
    event = json.loads(srv.cli("audit", "export", "--org", org, "--action", "org.suspended").stdout.splitlines()[0])
    assert event["actor_type"] == "operator"
