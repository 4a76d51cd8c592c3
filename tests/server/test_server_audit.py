"""The audit log: security-relevant events written with the change they record, read by an
organisation's admins for their organisation only and by platform admins for all; paged,
filtered, exported as JSON lines (API and CLI); never holding an email address or a secret;
nothing written for a change that was refused."""

import json
import re

from authsrv import (
    PASSWORD,
    admin_user,
    api_key,
    assert_error,
    login,
    new_email,
    operator_user,
    sign_up,
)


def new_org(srv, name="Audited"):
    return json.loads(srv.cli("admin", "create-org", "--name", name).stdout)["org_id"]


def events(srv, token, **params):
    r = srv.client().get("/v1/audit", token=token, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def actions(evts):
    return [e["action"] for e in evts]


def test_a_members_life_is_recorded_for_its_organisation(srv, mail):
    org = new_org(srv)
    admin_email, tokens = admin_user(srv, roles=("admin",), org=org)
    admin = tokens["access_token"]
    admin_id = srv.client().get("/v1/me", token=admin).json()["id"]
    # An invitation accepted, a sign-in from a known address, a wrong password, roles changed,
    # disabled, enabled, erased.
    member_email = new_email("member")
    mark = mail.mark()
    r = srv.client().post("/v1/invitations", json={"email": member_email, "roles": ["reader"]}, token=admin)
    assert r.status_code == 202, r.text
    invitation = r.json()["id"]
    token = re.search(r"token=(inv_[A-Za-z0-9_-]+)", mail.wait(member_email, "invited", start=mark)["body"]).group(1)
    member = srv.client().post("/v1/invitations/accept", json={"token": token, "password": PASSWORD}).json()["user_id"]
    c = srv.client(ip="10.77.1.2")
    login(srv, member_email, client=c)
    r = c.post("/v1/auth/init", json={"email": member_email})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": "wrong-" + PASSWORD},
               headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")
    c = srv.client()
    assert c.put(f"/v1/users/{member}/roles", json={"roles": ["editor"]}, token=admin).status_code == 204
    assert c.post(f"/v1/users/{member}/disable", token=admin).status_code == 204
    assert c.post(f"/v1/users/{member}/enable", token=admin).status_code == 204
    assert c.delete(f"/v1/users/{member}", token=admin).status_code == 204

    about = events(srv, admin, subject=member)
    assert actions(about) == [
        "user.deleted", "user.enabled", "user.disabled", "user.roles_changed",
        "login.failed", "login.succeeded", "user.created",
    ], actions(about)
    by_action = {e["action"]: e for e in about}
    assert all(e["org_id"] == org for e in about)
    created = by_action["user.created"]
    assert created["data"] == {"via": "invitation", "invitation_id": invitation, "invited_by": admin_id, "roles": ["reader"]}
    signed_in = by_action["login.succeeded"]
    assert (signed_in["actor_type"], signed_in["actor_id"], signed_in["ip"]) == ("user", member, "10.77.1.2")
    assert signed_in["target_type"] == "session" and signed_in["data"]["amr"] == ["pwd"]
    assert by_action["login.failed"]["target_id"] == member and by_action["login.failed"]["ip"] == "10.77.1.2"
    changed = by_action["user.roles_changed"]
    assert (changed["actor_type"], changed["actor_id"]) == ("user", admin_id)
    assert changed["data"]["added"] == ["editor"] and changed["data"]["removed"] == ["reader"]
    for action in ("user.disabled", "user.enabled", "user.deleted"):
        assert (by_action[action]["actor_id"], by_action[action]["target_id"]) == (admin_id, member)
    # Ids sort by time: the listing is newest first by id.
    ids = [e["id"] for e in about]
    assert ids == sorted(ids, reverse=True)
    # The invitation itself, by its admin.
    assert invitation in [e["target_id"] for e in events(srv, admin, action="invitation.created")]
    # No email address, no password, anywhere in the organisation's log.
    text = json.dumps(events(srv, admin, limit=1000))
    assert "@" not in text and PASSWORD not in text


def test_each_organisation_reads_only_its_own_events(srv, mail):
    org_a, org_b = new_org(srv, "A"), new_org(srv, "B")
    _, a = admin_user(srv, roles=("admin",), org=org_a)
    _, b = admin_user(srv, roles=("admin",), org=org_b)
    a_events = events(srv, a["access_token"])
    b_events = events(srv, b["access_token"])
    assert a_events and {e["org_id"] for e in a_events} == {org_a}
    assert b_events and {e["org_id"] for e in b_events} == {org_b}
    # Asking for another organisation's log by name is refused, whether it exists or not.
    for other in (org_b, "org_nonexistent"):
        assert_error(srv.client().get("/v1/audit", token=a["access_token"], params={"org": other}), 403, "insufficient_role")
    # Members who are not admins, API keys and anonymous callers read nothing.
    member_email = sign_up(srv, mail)
    member = login(srv, member_email)["access_token"]
    assert_error(srv.client().get("/v1/audit", token=member), 403, "insufficient_role")
    admin_email, admin_tokens = admin_user(srv, roles=("admin",), org=org_a)
    key = api_key(srv, mail, admin_tokens["access_token"], admin_email, ["admin"])
    r = srv.client().get("/v1/audit", headers={"x-api-key": key["key_id"], "x-api-secret": key["secret"]})
    assert_error(r, 403, "user_session_required")
    assert_error(srv.client().get("/v1/audit"), 401)
    # A tenant admin's token claiming another organisation's platform role changes nothing: the
    # platform view is for platform admins of the operator organisation only.
    _, platform = operator_user(srv)
    everything = events(srv, platform["access_token"], limit=1000)
    assert {org_a, org_b} <= {e["org_id"] for e in everything}
    only_b = events(srv, platform["access_token"], org=org_b)
    assert only_b and {e["org_id"] for e in only_b} == {org_b}


def test_refused_changes_leave_no_event(srv, mail):
    org = new_org(srv)
    _, tokens = admin_user(srv, roles=("admin",), org=org)
    admin = tokens["access_token"]
    _, member_tokens = admin_user(srv, roles=("reader",), org=org)
    member = srv.client().get("/v1/me", token=member_tokens["access_token"]).json()["id"]
    before = events(srv, admin, limit=1000)
    # A platform role smuggled in, an unknown role, a user of another organisation.
    assert_error(srv.client().put(f"/v1/users/{member}/roles", json={"roles": ["platform_admin"]}, token=admin), 403, "role_not_grantable")
    assert_error(srv.client().put(f"/v1/users/{member}/roles", json={"roles": ["root"]}, token=admin), 400, "unknown_role")
    _, stranger = admin_user(srv, roles=("reader",))
    stranger_id = srv.client().get("/v1/me", token=stranger["access_token"]).json()["id"]
    assert_error(srv.client().post(f"/v1/users/{stranger_id}/disable", token=admin), 404, "user_not_found")
    # Setting the roles a member already holds changes nothing, so records nothing.
    assert srv.client().put(f"/v1/users/{member}/roles", json={"roles": ["reader"]}, token=admin).status_code == 204
    assert events(srv, admin, limit=1000) == before


def test_lockout_and_refresh_reuse_are_recorded_as_the_servers_doing(srv, mail):
    org = new_org(srv)
    _, tokens = admin_user(srv, roles=("admin",), org=org)
    admin = tokens["access_token"]
    email, victim_tokens = admin_user(srv, roles=("reader",), org=org)
    victim = srv.client().get("/v1/me", token=victim_tokens["access_token"]).json()["id"]
    c = srv.client()
    rt = victim_tokens["refresh_token"]
    assert c.post("/v1/sessions/refresh", json={"refresh_token": rt}).status_code == 200
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": rt}), 401, "refresh_token_reused")
    reused = events(srv, admin, action="session.refresh_reused")
    assert [(e["actor_type"], e["target_id"], e["data"]["user_id"]) for e in reused] == [("system", victim_tokens["session_id"], victim)]
    for _ in range(5):
        r = c.post("/v1/auth/init", json={"email": email})
        r = c.post("/v1/auth/authenticate", json={"method": "password", "password": "nope-" + PASSWORD},
                   headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")
    failed = events(srv, admin, action="login.failed", subject=victim)
    assert [e["data"]["failures"] for e in failed] == [5, 4, 3, 2, 1]
    # The family filter: failures and the one lockout together.
    family = events(srv, admin, action="login.", subject=victim)
    assert actions(family).count("login.locked") == 1 and actions(family).count("login.failed") == 5
    assert_error(srv.client().get("/v1/audit", token=admin, params={"action": "login"}), 400, "invalid_action")
    assert_error(srv.client().get("/v1/audit", token=admin, params={"action": "login.%"}), 400, "invalid_action")


def test_pages_link_on_and_the_export_streams_every_event(srv, mail):
    org = new_org(srv)
    _, tokens = admin_user(srv, roles=("admin",), org=org)
    admin = tokens["access_token"]
    for _ in range(4):
        admin_user(srv, roles=("reader",), org=org)
    c = srv.client()
    everything = events(srv, admin, limit=1000)
    assert len(everything) >= 9  # org, 5 accounts and their sign-ins
    seen, url, pages = [], "/v1/audit?limit=3", 0
    while url:
        r = c.get(url, token=admin)
        assert r.status_code == 200, r.text
        page = r.json()
        assert 1 <= len(page) <= 3
        seen += page
        pages += 1
        url = r.links.get("next", {}).get("url")
        if url:
            url = url[len(srv.url):] if url.startswith(srv.url) else url
    assert [e["id"] for e in seen] == [e["id"] for e in everything] and pages == -(-len(everything) // 3)
    r = c.get("/v1/audit", token=admin, params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == everything
    # The operator's export of the same organisation says the same.
    out = srv.cli("audit", "export", "--org", org).stdout
    assert [json.loads(line) for line in out.splitlines()] == everything
    for bad, code in [({"cursor": "evt_' OR 1=1"}, "invalid_cursor"), ({"limit": "0"}, "invalid_limit"),
                      ({"limit": "1001"}, "invalid_limit"), ({"format": "csv"}, "invalid_format")]:
        assert_error(c.get("/v1/audit", token=admin, params=bad), 400, code)
    assert_error(c.get("/v1/audit", token=admin, params={"colour": "red"}), 400)
    # A time window.
    t = everything[0]["at"]
    assert all(e["at"] >= t for e in events(srv, admin, since=t))
    assert events(srv, admin, until=everything[-1]["at"] - 1) == []


def test_platform_events_and_retention_are_the_operators(backend, mail):
    srv = backend.isolated().server()
    _, platform = operator_user(srv)
    srv.cli("keys", "rotate")
    rotated = events(srv, platform["access_token"], action="signing_keys.rotated")
    assert len(rotated) == 1 and rotated[0]["org_id"] is None and rotated[0]["actor_type"] == "operator"
    org = new_org(srv)
    _, tenant = admin_user(srv, roles=("admin",), org=org)
    assert events(srv, tenant["access_token"], action="signing_keys.rotated") == []
    r = srv.cli("audit", "export", "--action", "nope.", check=False)
    assert r.returncode != 0 and "--action" in r.stderr
    r = srv.cli("migrate", env={"AUTHGATE_AUDIT__RETENTION_DAYS": "0"}, check=False)
    assert r.returncode != 0 and "audit.retention_days" in r.stderr
