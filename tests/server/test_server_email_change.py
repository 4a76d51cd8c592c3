"""Changing the account's address: a recent sign-in and the current password to ask, a code sent
to the new address to confirm; the old address is told, other sessions are signed out, and the
account signs in with the new address only. An address that has an account is never taken over
and is not revealed to anyone but its reader; another account's code does nothing."""

import base64
import json
import time

from authsrv import PASSWORD, admin_user, api_key, assert_error, key_headers, login, new_email, sign_up


def ask(srv, token, new, password=PASSWORD):
    return srv.client().post("/v1/me/email", json={"new_email": new, "password": password}, token=token)


def confirm(srv, token, vid, code):
    return srv.client().post("/v1/me/email/verify", json={"verification_id": vid, "code": code}, token=token)


def test_the_address_changes_after_the_new_one_confirms(srv, mail):
    old = sign_up(srv, mail)
    here = login(srv, old)
    elsewhere = login(srv, old)
    new = new_email("moved").upper()
    mark = mail.mark()
    r = ask(srv, here["access_token"], new)
    assert r.status_code == 202, r.text
    code = mail.code(new.lower(), "confirm your new address", start=mark)
    r = confirm(srv, here["access_token"], r.json()["verification_id"], code)
    assert r.status_code == 200, r.text
    assert r.json() == {"email": new.lower(), "sessions_revoked": 1}
    # The old address is told (the new one masked), and only that.
    notice = mail.wait(old, "address was changed", start=mark)
    assert new.lower() not in notice["body"] and new.lower()[0] + "•••@example.com" in notice["body"]
    me = srv.client().get("/v1/me", token=here["access_token"]).json()
    assert me["email"] == new.lower()
    # Other sessions are signed out; this one goes on, and its refreshed token names the new address.
    assert_error(srv.client().post("/v1/sessions/refresh", json={"refresh_token": elsewhere["refresh_token"]}), 401)
    refreshed = srv.client().post("/v1/sessions/refresh", json={"refresh_token": here["refresh_token"]}).json()
    claims = json.loads(base64.urlsafe_b64decode(refreshed["access_token"].split(".")[1] + "=="))
    assert claims["email"] == new.lower()
    assert login(srv, new.lower())["status"] == "complete"
    r = srv.client().post("/v1/auth/init", json={"email": old})
    r = srv.client().post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert_error(r, 401, "invalid_credentials")
    # The code is spent.
    assert_error(confirm(srv, here["access_token"], "ver_x", code), 400, "invalid_code")


def test_an_address_with_an_account_is_never_taken_or_revealed(srv, mail):
    taken = sign_up(srv, mail)
    me = sign_up(srv, mail)
    t = login(srv, me)["access_token"]
    mark = mail.mark()
    r = ask(srv, t, taken)
    # The same answer as for a free address: a code goes to that mailbox.
    assert r.status_code == 202, r.text
    code = mail.code(taken, "confirm your new address", start=mark)
    # Only its reader learns that it has an account, and nothing changes.
    assert_error(confirm(srv, t, r.json()["verification_id"], code), 409, "email_taken")
    assert srv.client().get("/v1/me", token=t).json()["email"] == me
    assert login(srv, taken)["status"] == "complete"


def test_asking_needs_a_recent_sign_in_and_the_password(srv, mail, backend):
    email = sign_up(srv, mail)
    t = login(srv, email)["access_token"]
    assert_error(ask(srv, t, new_email(), "wrong-" + PASSWORD), 400, "invalid_current_password")
    assert_error(ask(srv, t, email), 400, "same_email")
    assert_error(ask(srv, t, "not an address"), 400, "invalid_email")
    assert_error(srv.client().post("/v1/me/email", json={"new_email": new_email()}, token=t), 400, "invalid_request")
    # An API key is not a session.
    admin_email, admin = admin_user(srv, roles=("admin",))
    key = api_key(srv, mail, admin["access_token"], admin_email, ["admin"])
    r = srv.client().post("/v1/me/email", json={"new_email": new_email(), "password": PASSWORD}, headers=key_headers(key))
    assert_error(r, 403, "user_session_required")
    # A session whose sign-in is older than login.reauth_window_s cannot.
    stale = backend.server(AUTHGATE_LOGIN__REAUTH_WINDOW_S="1")
    st = login(stale, email)["access_token"]
    time.sleep(2.1)
    assert_error(ask(stale, st, new_email()), 403, "reauthentication_required")


def test_another_accounts_code_does_nothing(srv, mail):
    victim = sign_up(srv, mail)
    attacker = sign_up(srv, mail)
    vt = login(srv, victim)["access_token"]
    at = login(srv, attacker)["access_token"]
    target = new_email("target")
    mark = mail.mark()
    r = ask(srv, vt, target)
    vid = r.json()["verification_id"]
    code = mail.code(target, "confirm your new address", start=mark)
    # The attacker holds the victim's id and code (say, reading the target mailbox): refused, and
    # the code is not spent for its owner.
    assert_error(confirm(srv, at, vid, code), 400, "invalid_code")
    assert srv.client().get("/v1/me", token=at).json()["email"] == attacker
    assert confirm(srv, vt, vid, code).status_code == 200
    # Two accounts racing to the same new address: one wins, the other is told it is taken.
    a, b = sign_up(srv, mail), sign_up(srv, mail)
    ta, tb = login(srv, a)["access_token"], login(srv, b)["access_token"]
    contested = new_email("contested")
    mark = mail.mark()
    ra = ask(srv, ta, contested).json()["verification_id"]
    code_a = mail.code(contested, "confirm your new address", start=mark)
    mark = mail.mark()
    rb = ask(srv, tb, contested).json()["verification_id"]
    code_b = mail.code(contested, "confirm your new address", start=mark)
    assert confirm(srv, ta, ra, code_a).status_code == 200
    assert_error(confirm(srv, tb, rb, code_b), 409, "email_taken")
    assert srv.client().get("/v1/me", token=tb).json()["email"] == b
