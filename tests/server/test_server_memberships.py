"""A person in several organisations: the account joins another organisation through an
invitation (signed in as that address) or the operator; the login asks which organisation once
every factor is done (or takes `org`), and the session's tokens carry that organisation and the
roles held there only. Each organisation's admins act on their own membership — disable, roles,
removal — never on what the person holds elsewhere, and platform authority exists only in
sessions of the operator organisation."""

import json

from authsrv import (
    OPERATOR_ORG,
    PASSWORD,
    admin_user,
    assert_error,
    login,
    new_email,
    operator_user,
    request_api_key,
    sign_up,
)
from test_server_authority import claims_of
from test_server_management import emailed_token, invite


def new_org(srv, name):
    return json.loads(srv.cli("admin", "create-org", "--name", name).stdout)["org_id"]


def shared_member(srv, mail, roles_a=("reader",), roles_b=("editor",)):
    """An account in organisation A (made by A's admin's invitation) that joins B through B's
    admin's invitation while signed in. Returns a dict of what the tests need."""
    org_a, org_b = new_org(srv, "Alpha"), new_org(srv, "Beta")
    _, admin_a = admin_user(srv, roles=("admin", "reader", "editor"), org=org_a)
    _, admin_b = admin_user(srv, roles=("admin", "reader", "editor"), org=org_b)
    email = new_email("shared")
    mark = mail.mark()
    invite(srv, admin_a["access_token"], email, roles_a)
    r = srv.client().post("/v1/invitations/accept", json={"token": emailed_token(mail, email, mark), "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id = r.json()["user_id"]
    session_a = login(srv, email)
    mark = mail.mark()
    invite(srv, admin_b["access_token"], email, roles_b)
    token_b = emailed_token(mail, email, mark)
    view = srv.client().post("/v1/invitations/lookup", json={"token": token_b}).json()
    assert view["existing_account"] is True and view["org_name"] == "Beta"
    r = srv.client().post("/v1/invitations/join", json={"token": token_b}, token=session_a["access_token"])
    assert r.status_code == 201, r.text
    assert r.json()["org_id"] == org_b and r.json()["roles"] == sorted(roles_b)
    return {"email": email, "id": user_id, "a": org_a, "b": org_b, "admin_a": admin_a["access_token"],
            "admin_b": admin_b["access_token"], "session_a": session_a, "invitation_b": token_b}


def start(srv, email, org=None):
    c = srv.client()
    r = c.post("/v1/auth/init", json={"email": email, **({"org": org} if org else {})})
    assert r.status_code == 200, r.text
    return c, {"x-session-token": r.headers["x-session-token"]}


def test_the_login_asks_which_organisation_and_the_tokens_carry_only_that_ones_roles(srv, mail):
    m = shared_member(srv, mail, roles_a=("reader",), roles_b=("editor",))
    c, h = start(srv, m["email"])
    # The organisation is not a factor: asked before the password, it is refused.
    assert_error(c.post("/v1/auth/authenticate", json={"method": "org", "org": m["b"]}, headers=h), 400, "method_not_allowed_now")
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=h)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "choose_org" and body["next"] == ["org"], body
    assert "access_token" not in body
    assert sorted(o["id"] for o in body["orgs"]) == sorted([m["a"], m["b"]])
    assert {o["name"] for o in body["orgs"]} == {"Alpha", "Beta"}
    # Asking again changes nothing; an organisation that is not theirs is refused, and the
    # choice stays open.
    assert c.post("/v1/auth/authenticate", json={"method": "org"}, headers=h).json()["status"] == "choose_org"
    assert_error(c.post("/v1/auth/authenticate", json={"method": "org", "org": "org_default"}, headers=h), 403, "org_not_available")
    r = c.post("/v1/auth/authenticate", json={"method": "org", "org": m["b"]}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    tokens = r.json()
    claims = claims_of(tokens["access_token"])
    assert claims["org"] == m["b"] and claims["roles"] == ["editor"], claims
    me = srv.client().get("/v1/me", token=tokens["access_token"]).json()
    assert me["org_id"] == m["b"] and me["roles"] == ["editor"]
    assert {(x["org_id"], tuple(x["roles"])) for x in me["memberships"]} == {(m["a"], ("reader",)), (m["b"], ("editor",))}
    # The refresh stays in the session's organisation.
    r = srv.client().post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["org"] == m["b"] and claims_of(r.json()["access_token"])["roles"] == ["editor"]
    # `org` at init goes straight there; so does the short form with `org`.
    a = login(srv, m["email"], org=m["a"])
    assert claims_of(a["access_token"])["org"] == m["a"] and claims_of(a["access_token"])["roles"] == ["reader"]
    c = srv.client()

    def short_form():
        mark = mail.mark()
        r = c.post("/v1/sessions", json={"email": m["email"], "password": PASSWORD})
        assert r.status_code == 202, r.text
        return r.json()["verification_id"], mail.code(m["email"], "sign-in", start=mark)

    vid, code = short_form()
    assert_error(c.post("/v1/sessions/verify", json={"verification_id": vid, "code": code}), 400, "org_required")
    vid, code = short_form()
    r = c.post("/v1/sessions/verify", json={"verification_id": vid, "code": code, "org": m["a"]})
    assert r.status_code == 200 and claims_of(r.json()["access_token"])["org"] == m["a"], r.text


def test_an_admin_acts_on_their_own_membership_only(srv, mail):
    m = shared_member(srv, mail, roles_a=("reader",), roles_b=("editor",))
    in_b = login(srv, m["email"], org=m["b"])
    in_a = login(srv, m["email"], org=m["a"])
    c = srv.client()
    # A's admin changes the roles in A; the B session's tokens keep B's roles.
    assert c.put(f"/v1/users/{m['id']}/roles", json={"roles": ["editor", "reader"]}, token=m["admin_a"]).status_code == 204
    r = c.post("/v1/sessions/refresh", json={"refresh_token": in_b["refresh_token"]})
    in_b = r.json()
    assert claims_of(in_b["access_token"])["roles"] == ["editor"] and claims_of(in_b["access_token"])["org"] == m["b"]
    r = c.post("/v1/sessions/refresh", json={"refresh_token": in_a["refresh_token"]})
    in_a = r.json()
    assert claims_of(in_a["access_token"])["roles"] == ["editor", "reader"] and claims_of(in_a["access_token"])["org"] == m["a"]
    # The profile belongs to the person once another organisation shares them.
    assert_error(c.req("PATCH", f"/v1/users/{m['id']}", json={"name": "Renamed by A"}, token=m["admin_a"]), 403, "shared_account")
    # A's admin disables the membership in A: A's session stops, B's goes on.
    assert c.post(f"/v1/users/{m['id']}/disable", token=m["admin_a"]).status_code == 204
    assert_error(c.get("/v1/sessions/validate", token=in_a["access_token"]), 401)
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": in_a["refresh_token"]}), 401)
    assert c.get("/v1/sessions/validate", token=in_b["access_token"]).status_code == 200
    assert c.post("/v1/sessions/refresh", json={"refresh_token": in_b["refresh_token"]}).status_code == 200
    # The login no longer offers A: B is the one left, so it completes there; A by name is refused.
    tokens = login(srv, m["email"])
    assert claims_of(tokens["access_token"])["org"] == m["b"]
    c2, h = start(srv, m["email"], org=m["a"])
    r = c2.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=h)
    assert_error(r, 403, "org_not_available")
    listed = {u["id"]: u for u in c.get("/v1/users", token=m["admin_a"]).json()}
    assert listed[m["id"]]["status"] == "disabled"
    listed_b = {u["id"]: u for u in c.get("/v1/users", token=m["admin_b"]).json()}
    assert listed_b[m["id"]]["status"] == "active" and listed_b[m["id"]]["roles"] == ["editor"]
    # Enabled again by A: A can be picked again.
    assert c.post(f"/v1/users/{m['id']}/enable", token=m["admin_a"]).status_code == 204
    assert claims_of(login(srv, m["email"], org=m["a"])["access_token"])["org"] == m["a"]
    # Removal by A: the person leaves A, the account (and B) stay; they are told.
    mark = mail.mark()
    assert c.delete(f"/v1/users/{m['id']}", token=m["admin_a"]).status_code == 204
    assert "removed you" in mail.wait(m["email"], "removed", start=mark)["body"]
    assert m["id"] not in {u["id"] for u in c.get("/v1/users", token=m["admin_a"]).json()}
    assert_error(c.post(f"/v1/users/{m['id']}/enable", token=m["admin_a"]), 404, "user_not_found")
    tokens = login(srv, m["email"])
    assert claims_of(tokens["access_token"])["org"] == m["b"]
    me = c.get("/v1/me", token=tokens["access_token"]).json()
    assert [x["org_id"] for x in me["memberships"]] == [m["b"]]
    actions = [e["action"] for e in c.get("/v1/audit", token=m["admin_a"], params={"subject": m["id"]}).json()]
    assert "member.removed" in actions and "user.deleted" not in actions
    # Alone in B now: B's admin may edit the profile, and removing erases the account.
    assert c.req("PATCH", f"/v1/users/{m['id']}", json={"name": "Named by B"}, token=m["admin_b"]).status_code == 204
    assert c.delete(f"/v1/users/{m['id']}", token=m["admin_b"]).status_code == 204
    r = srv.client().post("/v1/auth/init", json={"email": m["email"]})
    r = srv.client().post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD},
                          headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")


def test_no_admin_reaches_a_person_outside_their_organisation(srv, mail):
    m = shared_member(srv, mail)
    _, other = admin_user(srv, roles=("admin",), org=new_org(srv, "Gamma"))
    o = other["access_token"]
    c = srv.client()
    for method, path, body in [
        ("PUT", f"/v1/users/{m['id']}/roles", {"roles": ["reader"]}),
        ("POST", f"/v1/users/{m['id']}/disable", None),
        ("POST", f"/v1/users/{m['id']}/enable", None),
        ("DELETE", f"/v1/users/{m['id']}", None),
        ("PATCH", f"/v1/users/{m['id']}", {"name": "x"}),
    ]:
        assert_error(c.req(method, path, token=o, json=body), 404, "user_not_found")
    assert m["id"] not in {u["id"] for u in c.get("/v1/users", token=o).json()}
    # The person's sessions are untouched.
    assert c.get("/v1/sessions/validate", token=m["session_a"]["access_token"]).status_code == 200


def test_a_token_never_carries_another_organisations_roles(srv, mail):
    """Admin in B, reader in A: a session in A holds no admin authority — not at the admin
    endpoints, not on an API key it creates."""
    m = shared_member(srv, mail, roles_a=("reader",), roles_b=("admin",))
    in_a = login(srv, m["email"], org=m["a"])["access_token"]
    assert claims_of(in_a)["roles"] == ["reader"]
    c = srv.client()
    assert_error(c.get("/v1/users", token=in_a), 403, "insufficient_role")
    r = c.post("/v1/api-keys", json={"name": "k", "roles": ["admin"]}, token=in_a)
    assert_error(r, 403, "role_not_held")
    # In B the same person holds admin, and may put it on a key made there.
    in_b = login(srv, m["email"], org=m["b"])["access_token"]
    requested, code = request_api_key(srv, mail, in_b, m["email"], ["admin"])
    # Its code is verified from a session of B only: from A it is unknown (and not spent).
    verify = {"verification_id": requested["verification_id"], "code": code}
    assert_error(c.post("/v1/api-keys/verify", json=verify, token=in_a), 400, "invalid_code")
    r = c.post("/v1/api-keys/verify", json=verify, token=in_b)
    assert r.status_code == 201, r.text
    key = r.json()
    v = c.get("/v1/sessions/validate", headers={"authorization": f"ApiKey {key['key_id']}.{key['secret']}"})
    assert v.status_code == 200 and v.json()["org"] == m["b"] and v.json()["roles"] == ["admin"], v.text
    # A's admin introspecting B's session token learns nothing (another organisation's).
    assert c.post("/v1/sessions/introspect", json={"token": in_b}, token=m["admin_a"]).json() == {"active": False}
    assert c.post("/v1/sessions/introspect", json={"token": in_a}, token=m["admin_a"]).json()["active"] is True


def test_platform_authority_only_in_operator_org_sessions(srv, mail):
    """A platform admin who also belongs to a tenant organisation: a session there carries no
    platform role, and acts as nobody's platform admin."""
    email, op = operator_user(srv)
    tenant = new_org(srv, "Tenant")
    srv.cli("admin", "add-member", "--email", email, "--org", tenant, "--role", "reader")
    c = srv.client()
    r = c.post("/v1/auth/init", json={"email": email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD},
               headers={"x-session-token": r.headers["x-session-token"]})
    assert r.json()["status"] == "choose_org"
    in_tenant = login(srv, email, org=tenant)["access_token"]
    assert claims_of(in_tenant)["roles"] == ["reader"] and claims_of(in_tenant)["org"] == tenant
    assert_error(c.get("/v1/orgs", token=in_tenant), 403, "insufficient_role")
    assert_error(c.get("/v1/audit", token=in_tenant), 403)
    in_operator = login(srv, email, org=OPERATOR_ORG)["access_token"]
    assert c.get("/v1/orgs", token=in_operator).status_code == 200
    # The operator's CLI: roles need --org once there are several; add-member refuses twice.
    r = srv.cli("admin", "grant-role", "--email", email, "--role", "editor", check=False)
    assert r.returncode != 0 and "several" in r.stderr
    out = json.loads(srv.cli("admin", "grant-role", "--email", email, "--role", "editor", "--org", tenant).stdout)
    assert out["org_id"] == tenant and out["roles"] == ["editor", "reader"]
    r = srv.cli("admin", "grant-role", "--email", email, "--role", "gateway", "--org", tenant, check=False)
    assert r.returncode != 0 and "platform role" in r.stderr
    r = srv.cli("admin", "add-member", "--email", email, "--org", tenant, check=False)
    assert r.returncode != 0 and "already belongs" in r.stderr


def test_joining_needs_the_invited_address_signed_in(srv, mail):
    org = new_org(srv, "Delta")
    _, admin = admin_user(srv, roles=("admin", "reader"), org=org)
    owner = sign_up(srv, mail)
    stranger = sign_up(srv, mail)
    mark = mail.mark()
    invite(srv, admin["access_token"], owner, ["reader"])
    token = emailed_token(mail, owner, mark)
    c = srv.client()
    # No session: refused. Another account's session: refused, and the link still works.
    assert_error(c.post("/v1/invitations/join", json={"token": token}), 401)
    assert_error(c.post("/v1/invitations/join", json={"token": token}, token=login(srv, stranger)["access_token"]), 403, "invitation_not_yours")
    # Choosing a password for an address that has an account changes nothing.
    assert_error(c.post("/v1/invitations/accept", json={"token": token, "password": "another password entirely 99"}), 409, "email_taken")
    mine = login(srv, owner)["access_token"]
    r = c.post("/v1/invitations/join", json={"token": token}, token=mine)
    assert r.status_code == 201 and r.json()["roles"] == ["reader"], r.text
    # Single use; and an account already in the organisation cannot join it twice.
    assert_error(c.post("/v1/invitations/join", json={"token": token}, token=mine), 400, "invalid_invitation")
    mark = mail.mark()
    invite(srv, admin["access_token"], owner, ["reader"])
    again = emailed_token(mail, owner, mark)
    assert_error(c.post("/v1/invitations/join", json={"token": again}, token=mine), 409, "already_member")
    actions = [e["action"] for e in c.get("/v1/audit", token=admin["access_token"], params={"action": "member."}).json()]
    assert actions == ["member.added"]
    # The old password still signs in, now with a choice.
    r = c.post("/v1/auth/init", json={"email": owner})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert r.json()["status"] == "choose_org"
