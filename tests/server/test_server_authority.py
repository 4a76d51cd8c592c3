"""Authority (docs/authority.md): tenant authority never becomes platform authority. Tenant
admins — of a self-service organisation and of the default one — try every escalation; the
operator's own paths (the CLI, a platform admin of the operator organisation) work."""

import json
import time

import jwt
import requests
from authsrv import OPERATOR_ORG, PASSWORD, admin_user, api_key, assert_error, gateway_key, key_headers, login, new_email, operator_user, sign_up

PLATFORM_ROLES = ["gateway", "introspect", "platform_admin"]


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def client_token(srv, cl):
    r = requests.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(cl["client_id"], cl["client_secret"]), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def cli_user(srv, org, roles):
    """A member of `org` made by the operator's CLI; returns (email, tokens)."""
    addr = new_email("member")
    args = ["admin", "create-user", "--email", addr, "--org", org]
    for r in roles:
        args += ["--role", r]
    srv.cli(*args, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    return addr, login(srv, addr)


def tenants(srv, mail):
    """(admin email, admin tokens, a member's tokens) of a self-service organisation and of the
    default organisation."""
    out = []
    own = sign_up(srv, mail, org_name="Tenant " + new_email("t"))
    own_tokens = login(srv, own)
    org = claims_of(own_tokens["access_token"])["org"]
    out.append((own, own_tokens, cli_user(srv, org, ["member"])[1]))
    dflt, dflt_tokens = admin_user(srv, roles=("admin", "reader"))
    out.append((dflt, dflt_tokens, cli_user(srv, "org_default", ["reader"])[1]))
    return out


def test_tenant_admins_cannot_escalate(orgs_srv, mail):
    srv = orgs_srv
    c = srv.client()
    _, feed_cred = gateway_key(srv)
    stranger = login(srv, sign_up(srv, mail, org_name="Someone Else"))
    for admin_addr, admin, member in tenants(srv, mail):
        t = admin["access_token"]
        me, other = claims_of(t)["sub"], claims_of(member["access_token"])["sub"]
        held = c.get("/v1/me", token=t).json()["roles"]
        for role in PLATFORM_ROLES:
            # ... to themselves, to a member, with their current roles kept.
            assert_error(c.put(f"/v1/users/{me}/roles", json={"roles": held + [role]}, token=t), 403, "role_not_grantable")
            assert_error(c.put(f"/v1/users/{other}/roles", json={"roles": [role]}, token=t), 403, "role_not_grantable")
            # ... on a credential of their own.
            assert_error(c.post("/v1/api-keys", json={"name": "k", "roles": [role]}, token=t), 403, "role_not_held")
            assert_error(c.post("/v1/clients", json={"name": "c", "roles": [role]}, token=t), 403, "role_not_held")
        assert c.get("/v1/me", token=t).json()["roles"] == held
        # A role outside the tenant list; a tenant role they do not hold, on a credential.
        assert_error(c.put(f"/v1/users/{other}/roles", json={"roles": ["superuser"]}, token=t), 400, "unknown_role")
        assert_error(c.post("/v1/api-keys", json={"name": "k", "roles": ["editor"]}, token=t), 403, "role_not_held")
        assert_error(c.post("/v1/clients", json={"name": "c", "roles": ["editor"]}, token=t), 403, "role_not_held")
        # A user of another organisation.
        assert_error(c.put(f"/v1/users/{claims_of(stranger['access_token'])['sub']}/roles", json={"roles": ["member"]}, token=t), 404, "user_not_found")
        # Tenant roles to their own members: fine.
        assert c.put(f"/v1/users/{other}/roles", json={"roles": ["member", "reader"]}, token=t).status_code == 204
        # No tenant credential reads the feed: the user token, an API key, a client's token.
        key = api_key(srv, mail, t, admin_addr, ["admin"])
        cl = c.post("/v1/clients", json={"name": "svc", "roles": ["admin"]}, token=t).json()
        for creds in ({"authorization": "Bearer " + t}, key_headers(key), {"authorization": "Bearer " + client_token(srv, cl)}):
            assert_error(requests.get(srv.url + "/v1/revocations", headers=creds, timeout=10), 403, "insufficient_role")
        assert requests.get(srv.url + "/v1/revocations", headers=feed_cred, timeout=10).status_code == 200


def test_tenant_introspection_sees_its_own_organisation_only(orgs_srv, mail):
    srv = orgs_srv
    c = srv.client()
    stranger = login(srv, sign_up(srv, mail, org_name="Someone Else"))
    for admin_addr, admin, member in tenants(srv, mail):
        t = admin["access_token"]
        me = claims_of(t)["sub"]
        # A tenant admin introspects its own organisation's tokens, and no other's.
        assert c.post("/v1/sessions/introspect", json={"token": member["access_token"]}, token=t).json()["active"] is True
        assert c.post("/v1/sessions/introspect", json={"token": stranger["access_token"]}, token=t).json() == {"active": False}
        # So do an API key and a client of the organisation with org_introspect.
        held = c.get("/v1/me", token=t).json()["roles"]
        assert c.put(f"/v1/users/{me}/roles", json={"roles": held + ["org_introspect"]}, token=t).status_code == 204
        t = login(srv, admin_addr)["access_token"]
        key = api_key(srv, mail, t, admin_addr, ["org_introspect"])
        cl = c.post("/v1/clients", json={"name": "rs", "roles": ["org_introspect"]}, token=t).json()
        callers = [{"authorization": "Bearer " + t}, key_headers(key), {"authorization": "Bearer " + client_token(srv, cl)}]
        for h in callers:
            mine = c.post("/v1/sessions/introspect", json={"token": member["access_token"]}, headers=h).json()
            assert mine["active"] is True and mine["org"] == claims_of(t)["org"], mine
            assert c.post("/v1/sessions/introspect", json={"token": member["refresh_token"]}, headers=h).json()["active"] is True
            # Another organisation's tokens answer exactly as an invalid token would.
            for other in (stranger["access_token"], stranger["refresh_token"], "garbage"):
                r = c.post("/v1/sessions/introspect", json={"token": other}, headers=h)
                assert r.status_code == 200 and r.json() == {"active": False}, r.text
        # A member without the role may not introspect at all.
        assert_error(c.post("/v1/sessions/introspect", json={"token": t}, token=member["access_token"]), 403, "insufficient_role")


def test_self_service_organisations_are_off_by_default_and_nobody_is_admin_by_default(backend, mail):
    srv = backend.isolated().server()
    c = srv.client()
    assert_error(c.post("/v1/users", json={"email": new_email(), "password": PASSWORD, "org_name": "Mine"}), 403, "org_creation_disabled")
    # The very first account of a fresh installation is a plain member of the default org.
    first = login(srv, sign_up(srv, mail))
    assert claims_of(first["access_token"])["roles"] == [] and claims_of(first["access_token"])["org"] == "org_default"
    assert_error(c.get("/v1/users", token=first["access_token"]), 403, "insufficient_role")
    srv.stop()


def test_operator_paths(srv, mail):
    """The CLI's gateway key reads the feed; a platform admin of the operator organisation
    grants platform roles there (and only there); taking a role away revokes the keys carrying it."""
    c = srv.client()
    _, gw = gateway_key(srv)
    assert requests.get(srv.url + "/v1/revocations", headers=gw, timeout=10).status_code == 200
    op_addr, op = operator_user(srv, roles=("platform_admin",))
    assert claims_of(op["access_token"])["org"] == OPERATOR_ORG
    member_addr, member = admin_user(srv, roles=("member",), org=OPERATOR_ORG)
    member_id = claims_of(member["access_token"])["sub"]
    assert c.put(f"/v1/users/{member_id}/roles", json={"roles": ["member", "introspect"]}, token=op["access_token"]).status_code == 204
    member = login(srv, member_addr)
    tenant_user = login(srv, sign_up(srv, mail))
    r = c.post("/v1/sessions/introspect", json={"token": tenant_user["access_token"]}, token=member["access_token"])
    assert r.json()["active"] is True and r.json()["org"] == "org_default"
    # A platform admin may not hand platform roles into a tenant.
    tenant_id = claims_of(tenant_user["access_token"])["sub"]
    assert_error(c.put(f"/v1/users/{tenant_id}/roles", json={"roles": ["gateway"]}, token=op["access_token"]), 404, "user_not_found")
    # Nor may a tenant admin of the operator organisation grant them.
    _, op_admin = admin_user(srv, roles=("admin",), org=OPERATOR_ORG)
    assert_error(c.put(f"/v1/users/{member_id}/roles", json={"roles": ["member", "introspect", "gateway"]}, token=op_admin["access_token"]), 403, "role_not_grantable")
    # A gateway key made by a platform admin who holds the role reads the feed.
    op_id = claims_of(op["access_token"])["sub"]
    assert c.put(f"/v1/users/{op_id}/roles", json={"roles": ["platform_admin", "gateway"]}, token=op["access_token"]).status_code == 204
    op = login(srv, op_addr)
    key = api_key(srv, mail, op["access_token"], op_addr, ["gateway"])
    assert requests.get(srv.url + "/v1/revocations", headers=key_headers(key), timeout=10).status_code == 200
    # The operator's CLI: platform roles only inside the operator organisation; revoking one
    # revokes the API keys that carry it.
    tenant_addr = claims_of(tenant_user["access_token"])["email"]
    out = srv.cli("admin", "grant-role", "--email", tenant_addr, "--role", "gateway", check=False)
    assert out.returncode != 0 and "operator organisation" in out.stderr
    out = srv.cli("admin", "revoke-role", "--email", op_addr, "--role", "gateway")
    assert json.loads(out.stdout)["roles"] == ["platform_admin"]
    # The CLI is another process: the server learns of it within its recheck bound
    # (feed.recheck_ms, 200 ms in these suites).
    deadline = time.monotonic() + 2
    while (r := requests.get(srv.url + "/v1/revocations", headers=key_headers(key), timeout=10)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_error(r, 401, "api_key_revoked")
    out = srv.cli("admin", "grant-role", "--email", member_addr, "--role", "gateway")
    assert json.loads(out.stdout)["roles"] == ["gateway", "introspect", "member"]
