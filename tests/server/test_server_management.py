"""Managing accounts: invitations (an admin invites an address with roles; the emailed link's
holder chooses a password and joins — within the authority model, single use, cancellable,
never changing an account that exists), enabling a disabled member, the paged user list,
changing one's password, and erasure by an admin or by the person."""

import json
import re
import time

from authsrv import PASSWORD, OPERATOR_ORG, admin_user, assert_error, login, new_email, operator_user, sign_up


def invite(srv, admin, email, roles=(), expect=202):
    r = srv.client().post("/v1/invitations", json={"email": email, "roles": list(roles)}, token=admin)
    assert r.status_code == expect, r.text
    return r


def emailed_token(mail, email, start):
    m = mail.wait(email, "invited", start=start)
    found = re.search(r"/invite\?token=(inv_[A-Za-z0-9_-]+)", m["body"])
    assert found, m["body"]
    return found.group(1)


def test_an_invited_address_joins_with_the_roles_and_the_link_works_once(srv, mail):
    _, tokens = admin_user(srv, roles=("admin", "editor"))
    admin = tokens["access_token"]
    email = new_email("invitee")
    mark = mail.mark()
    sent = invite(srv, admin, email, ["editor"]).json()
    assert sent["status"] == "pending" and sent["roles"] == ["editor"]
    token = emailed_token(mail, email, mark)
    c = srv.client()
    view = c.post("/v1/invitations/lookup", json={"token": token})
    assert view.status_code == 200 and view.json()["email"] == email
    # A weak password is refused and the invitation stays usable.
    assert_error(c.post("/v1/invitations/accept", json={"token": token, "password": "short"}), 400, "weak_password")
    r = c.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["editor"]
    me = c.get("/v1/me", token=login(srv, email)["access_token"]).json()
    assert me["roles"] == ["editor"] and me["org_id"] == c.get("/v1/me", token=admin).json()["org_id"]
    # Single use.
    assert_error(c.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD}), 400, "invalid_invitation")
    assert_error(c.post("/v1/invitations/lookup", json={"token": token}), 400, "invalid_invitation")
    listed = {i["id"]: i for i in c.get("/v1/invitations", token=admin).json()}
    assert listed[sent["id"]]["status"] == "accepted"


def test_invitations_stay_within_the_authority_model(srv, mail):
    _, tokens = admin_user(srv, roles=("admin",))
    admin = tokens["access_token"]
    # Platform roles are never a tenant admin's to give; unknown roles nobody's.
    assert_error(invite(srv, admin, new_email(), ["platform_admin"], 403), 403, "role_not_grantable")
    assert_error(invite(srv, admin, new_email(), ["root"], 400), 400, "unknown_role")
    # Only admins invite; an API key or an app's token cannot.
    member = login(srv, sign_up(srv, mail))["access_token"]
    assert_error(invite(srv, member, new_email(), [], 403), 403, "insufficient_role")
    # Another organisation's admin cannot see or cancel this one's invitations.
    sent = invite(srv, admin, new_email(), ["reader"]).json()
    other_org = json.loads(srv.cli("admin", "create-org", "--name", "Elsewhere").stdout)["org_id"]
    _, other = admin_user(srv, roles=("admin",), org=other_org)
    assert sent["id"] not in [i["id"] for i in srv.client().get("/v1/invitations", token=other["access_token"]).json()]
    assert_error(srv.client().delete(f"/v1/invitations/{sent['id']}", token=other["access_token"]), 404, "invitation_not_found")


def test_cancelled_or_demoted_invitations_grant_nothing(srv, mail):
    admin_email, tokens = admin_user(srv, roles=("admin", "reader"))
    admin = tokens["access_token"]
    c = srv.client()
    email = new_email("cancelled")
    mark = mail.mark()
    sent = invite(srv, admin, email, ["reader"]).json()
    token = emailed_token(mail, email, mark)
    assert c.delete(f"/v1/invitations/{sent['id']}", token=admin).status_code == 204
    assert_error(c.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD}), 400, "invalid_invitation")
    # The inviter loses the admin role before the invitation is accepted: the account is made,
    # without the roles the inviter can no longer give.
    email = new_email("demoted")
    mark = mail.mark()
    invite(srv, admin, email, ["reader"])
    token = emailed_token(mail, email, mark)
    srv.cli("admin", "revoke-role", "--email", admin_email, "--role", "admin")
    r = c.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD})
    assert r.status_code == 201 and r.json()["roles"] == [], r.text


def test_an_invitation_never_changes_an_existing_account(srv, mail):
    _, tokens = admin_user(srv, roles=("admin", "editor"))
    existing = sign_up(srv, mail)
    mark = mail.mark()
    invite(srv, tokens["access_token"], existing, ["editor"])
    token = emailed_token(mail, existing, mark)
    before = srv.client().get("/v1/me", token=login(srv, existing)["access_token"]).json()
    r = srv.client().post("/v1/invitations/accept", json={"token": token, "password": "another password entirely 99"})
    assert_error(r, 409, "email_taken")
    after = srv.client().get("/v1/me", token=login(srv, existing, PASSWORD)["access_token"]).json()
    assert after == before


def test_operator_invites_platform_roles_only_into_the_operator_organisation(srv, mail):
    _, op = operator_user(srv)
    email = new_email("operator-invitee")
    mark = mail.mark()
    invite(srv, op["access_token"], email, ["gateway"])
    token = emailed_token(mail, email, mark)
    r = srv.client().post("/v1/invitations/accept", json={"token": token, "password": PASSWORD})
    assert r.status_code == 201 and r.json()["roles"] == ["gateway"] and r.json()["org_id"] == OPERATOR_ORG


def test_disabled_members_can_be_enabled_by_their_admin_only(srv, mail):
    _, tokens = admin_user(srv)
    admin = tokens["access_token"]
    email = sign_up(srv, mail)
    c = srv.client()
    uid = next(u["id"] for u in c.get("/v1/users", params={"email": email}, token=admin).json() if u["email"] == email)
    old = login(srv, email)["access_token"]
    assert c.post(f"/v1/users/{uid}/disable", token=admin).status_code == 204
    assert_error(c.get("/v1/me", token=old), 401)
    member = login(srv, sign_up(srv, mail))["access_token"]
    assert_error(c.post(f"/v1/users/{uid}/enable", token=member), 403, "insufficient_role")
    # (Tokens of the second of the disable stay cut off: enable from the next one.)
    time.sleep(1.1)
    assert c.post(f"/v1/users/{uid}/enable", token=admin).status_code == 204
    # Signing in works again; what was revoked while disabled stays revoked.
    assert c.get("/v1/me", token=login(srv, email)["access_token"]).status_code == 200
    assert_error(c.get("/v1/me", token=old), 401)
    assert_error(c.post(f"/v1/users/{uid}/enable", token=admin), 404, "user_not_found")


def test_the_user_list_pages_newest_first_and_filters(srv, mail):
    org = json.loads(srv.cli("admin", "create-org", "--name", "Paged").stdout)["org_id"]
    admin_email, tokens = admin_user(srv, org=org)
    admin = tokens["access_token"]
    made = [admin_email]
    for i in range(5):
        addr = new_email(f"paged{i}")
        srv.cli("admin", "create-user", "--email", addr, "--org", org, "--role", "reader", env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
        made.append(addr)
    c = srv.client()
    seen, path, pages = [], "/v1/users?limit=2", 0
    while path:
        r = c.get(path, token=admin)
        assert r.status_code == 200, r.text
        seen += r.json()
        pages += 1
        link = r.headers.get("link")
        path = re.search(r"<([^>]+)>; rel=\"next\"", link).group(1) if link else None
    assert pages == 3 and [u["email"] for u in seen] == [u["email"] for u in sorted(seen, key=lambda u: (u["created_at"], u["id"]), reverse=True)]
    assert sorted(u["email"] for u in seen) == sorted(made) and len({u["id"] for u in seen}) == 6
    assert all(u["roles"] == ["reader"] for u in seen if u["email"] != admin_email)
    # Filters: an address prefix (a LIKE wildcard in it is a plain character), a status.
    assert [u["email"] for u in c.get("/v1/users", params={"email": made[3][:12]}, token=admin).json()] == [made[3]]
    assert c.get("/v1/users", params={"email": "%"}, token=admin).json() == []
    assert c.get("/v1/users", params={"email": "_"}, token=admin).json() == []
    uid = next(u["id"] for u in seen if u["email"] == made[2])
    assert c.post(f"/v1/users/{uid}/disable", token=admin).status_code == 204
    assert [u["email"] for u in c.get("/v1/users", params={"status": "disabled"}, token=admin).json()] == [made[2]]
    # Bad input: a clear error naming the parameter.
    assert_error(c.get("/v1/users", params={"limit": "0"}, token=admin), 400, "invalid_limit")
    assert_error(c.get("/v1/users", params={"limit": "501"}, token=admin), 400, "invalid_limit")
    assert_error(c.get("/v1/users", params={"cursor": "not-ours"}, token=admin), 400, "invalid_cursor")
    assert_error(c.get("/v1/users", params={"status": "deleted"}, token=admin), 400, "invalid_status")


def test_changing_the_password_needs_the_current_one_and_a_recent_sign_in(srv, mail):
    email = sign_up(srv, mail)
    first = login(srv, email)
    other = login(srv, email)
    c = srv.client()
    new = "a brand new passphrase 77"
    assert_error(c.put("/v1/me/password", json={"current_password": "wrong one entirely", "new_password": new}, token=first["access_token"]),
                 400, "invalid_current_password")
    assert_error(c.put("/v1/me/password", json={"current_password": PASSWORD, "new_password": "short"}, token=first["access_token"]),
                 400, "weak_password")
    mark = mail.mark()
    r = c.put("/v1/me/password", json={"current_password": PASSWORD, "new_password": new}, token=first["access_token"])
    assert r.status_code == 204, r.text
    assert "every other session was signed out" in mail.wait(email, "password was changed", start=mark)["body"]
    # This session goes on; every other one is signed out; the old password is dead.
    assert c.get("/v1/me", token=first["access_token"]).status_code == 200
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": other["refresh_token"]}), 401, "session_revoked")
    r = c.post("/v1/auth/init", json={"email": email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")
    assert login(srv, email, new)["status"] == "complete"


def test_changing_the_password_is_refused_to_stale_sessions_and_keys(backend, mail):
    srv = backend.server(AUTHGATE_LOGIN__REAUTH_WINDOW_S="1")
    email = sign_up(srv, mail)
    tokens = login(srv, email)
    time.sleep(2.1)
    r = srv.client().put("/v1/me/password", json={"current_password": PASSWORD, "new_password": "another good passphrase 1"}, token=tokens["access_token"])
    assert_error(r, 403, "reauthentication_required")
    assert login(srv, email)["status"] == "complete"


def test_an_admin_erases_a_member_and_the_address_starts_afresh(srv, mail):
    _, tokens = admin_user(srv)
    admin = tokens["access_token"]
    email = sign_up(srv, mail)
    member = login(srv, email)
    c = srv.client()
    uid = c.get("/v1/me", token=member["access_token"]).json()["id"]
    assert c.put(f"/v1/users/{uid}/roles", json={"roles": ["reader"]}, token=admin).status_code == 204
    # Only admins, only their own organisation, never themselves through this route.
    assert_error(c.delete(f"/v1/users/{uid}", token=login(srv, sign_up(srv, mail))["access_token"]), 403, "insufficient_role")
    other_org = json.loads(srv.cli("admin", "create-org", "--name", "Far away").stdout)["org_id"]
    _, far = admin_user(srv, org=other_org)
    assert_error(c.delete(f"/v1/users/{uid}", token=far["access_token"]), 404, "user_not_found")
    admin_id = c.get("/v1/me", token=admin).json()["id"]
    assert_error(c.delete(f"/v1/users/{admin_id}", token=admin), 409, "cannot_delete_self")
    mark = mail.mark()
    assert c.delete(f"/v1/users/{uid}", token=admin).status_code == 204
    assert "deleted" in mail.wait(email, "deleted", start=mark)["body"]
    # Every credential is dead, the account is gone, and the address is free.
    assert_error(c.get("/v1/me", token=member["access_token"]), 401)
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": member["refresh_token"]}), 401)
    assert c.get("/v1/users", params={"email": email}, token=admin).json() == []
    r = c.post("/v1/auth/init", json={"email": email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")
    sign_up(srv, mail, email)
    fresh = c.get("/v1/me", token=login(srv, email)["access_token"]).json()
    assert fresh["id"] != uid and fresh["roles"] == []
    assert_error(c.delete(f"/v1/users/{uid}", token=admin), 404, "user_not_found")


def test_a_person_erases_their_own_account_with_a_recent_sign_in(srv, mail):
    email = sign_up(srv, mail)
    tokens = login(srv, email)
    c = srv.client()
    assert c.delete("/v1/me", token=tokens["access_token"]).status_code == 204
    assert_error(c.get("/v1/me", token=tokens["access_token"]), 401)
    r = c.post("/v1/auth/init", json={"email": email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")


def test_a_display_name_is_set_by_its_person_or_their_admin_only(srv, mail):
    org = json.loads(srv.cli("admin", "create-org", "--name", "Named").stdout)["org_id"]
    _, admin = admin_user(srv, roles=("admin",), org=org)
    member_email, member = admin_user(srv, roles=("reader",), org=org)
    c = srv.client()
    r = c.req("PATCH", "/v1/me", json={"name": "  Nina Smith  "}, token=member["access_token"])
    assert r.status_code == 200 and r.json()["name"] == "Nina Smith", r.text
    member_id = r.json()["id"]
    for bad in ["x" * 101, "a\u0000b", "line\nbreak"]:
        assert_error(c.req("PATCH", "/v1/me", json={"name": bad}, token=member["access_token"]), 400, "invalid_name")
    assert_error(c.req("PATCH", "/v1/me", json={"email": "x@example.com"}, token=member["access_token"]), 400, "invalid_request")
    # Its admin can set it; the listing shows it; an admin of another organisation cannot.
    assert c.req("PATCH", f"/v1/users/{member_id}", json={"name": "N. Smith"}, token=admin["access_token"]).status_code == 204
    listed = {u["id"]: u for u in c.get("/v1/users", token=admin["access_token"]).json()}
    assert listed[member_id]["name"] == "N. Smith"
    _, stranger = admin_user(srv, roles=("admin",))
    assert_error(c.req("PATCH", f"/v1/users/{member_id}", json={"name": "Mallory"}, token=stranger["access_token"]), 404, "user_not_found")
    assert_error(c.req("PATCH", f"/v1/users/{member_id}", json={"name": "Mallory"}, token=member["access_token"]), 403, "insufficient_role")
    # Removing it; the audit log records the change, never the name.
    r = c.req("PATCH", "/v1/me", json={"name": None}, token=member["access_token"])
    assert r.json()["name"] is None
    events = c.get("/v1/audit", token=admin["access_token"], params={"action": "user.profile_updated", "subject": member_id}).json()
    assert len(events) == 3 and "Smith" not in json.dumps(events)
    assert login(srv, member_email)["status"] == "complete"
