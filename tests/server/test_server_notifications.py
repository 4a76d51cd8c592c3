"""Security notifications by email: a sign-in from a new device or network, a lockout, a refresh
token used twice, the password, sign-in factors or an API key changed — each sent once per
event, only to an existing account, and not at all when the operator turns its kind off."""

import concurrent.futures

from authsrv import PASSWORD, api_key, assert_error, login, new_email, sign_up


def flushed(srv, mail, addr, start):
    """Every email queued for `addr` so far, in order: the server sends from one queue, so once
    a reset email asked for now has arrived, everything queued before it has too."""
    mark = mail.mark()
    assert srv.client().post("/v1/password/forgot", json={"email": addr}).status_code == 202
    mail.wait(addr, "reset your password", start=mark)
    return [m for m in mail.messages[start:] if addr.lower() in m["to"] and "reset your password" not in (m["subject"] or "").lower()]


def subjects(messages):
    return [m["subject"] for m in messages]


def test_a_sign_in_from_a_new_device_or_network_is_told_once(srv, mail):
    email = sign_up(srv, mail)
    home, phone = srv.client(ip="10.20.30.1"), srv.client(ip="10.99.1.7")
    start = mail.mark()
    login(srv, email, client=home)  # the first sign-in: nothing to compare with
    login(srv, email, client=home)
    login(srv, email, client=srv.client(ip="10.20.30.200"))  # the same /24
    assert subjects(flushed(srv, mail, email, start)) == []
    start = mail.mark()
    login(srv, email, client=phone)
    login(srv, email, client=phone)
    told = flushed(srv, mail, email, start)
    assert subjects(told) == ["New sign-in to your account"] and "10.99.1.0/24" in told[0]["body"]
    # Another browser on a known network is a new device too; two sign-ins racing tell once.
    start = mail.mark()
    clients = [srv.client(ip="10.20.30.1") for _ in range(4)]
    for c in clients:
        c.s.headers["user-agent"] = "NotesApp/2.0 (iPhone)"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: login(srv, email, client=c), clients))
    told = flushed(srv, mail, email, start)
    assert subjects(told) == ["New sign-in to your account"] and "NotesApp/2.0" in told[0]["body"]


def test_a_lockout_is_told_to_the_account_and_to_nobody_for_an_unknown_address(backend, mail):
    srv = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD="3")
    email = sign_up(srv, mail)
    c = srv.client()
    start = mail.mark()
    for address in [email, new_email("ghost")]:
        for _ in range(5):
            r = c.post("/v1/auth/init", json={"email": address})
            c.post("/v1/auth/authenticate", json={"method": "password", "password": "wrong wrong wrong"},
                   headers={"x-session-token": r.headers["x-session-token"]})
    assert subjects(flushed(srv, mail, email, start)) == ["Your account is locked for a while"]
    ghosts = [m for m in mail.messages[start:] if "ghost" in m["to"][0]]
    assert ghosts == []


def test_refresh_reuse_password_factors_and_api_keys_are_told(srv, mail):
    email = sign_up(srv, mail)
    c = srv.client()  # one device and network throughout: no new-device notices here
    tokens = login(srv, email, client=c)
    start = mail.mark()
    fresh = c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    for _ in range(2):  # the session is revoked once: told once
        assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": fresh["refresh_token"]}), 401, "session_revoked")
    assert subjects(flushed(srv, mail, email, start)) == ["A session of yours was signed out"]

    me = login(srv, email, client=c)["access_token"]
    start = mail.mark()
    r = c.put("/v1/me/mfa", json={"method": "none", "password": PASSWORD}, token=me)
    assert r.status_code == 204, r.text  # no change: no notice
    new_password = "a fresh passphrase for notices"
    assert c.put("/v1/me/password", json={"current_password": PASSWORD, "new_password": new_password}, token=me).status_code == 204
    r = c.put("/v1/me/mfa", json={"method": "email_otp", "password": new_password}, token=me)
    assert r.status_code == 204, r.text
    told = flushed(srv, mail, email, start)
    assert subjects(told) == ["Your password was changed", "How you sign in changed"]
    assert "code by email" in told[1]["body"]


def test_api_key_notices_name_the_key(srv, mail):
    email = sign_up(srv, mail)
    me = login(srv, email)["access_token"]
    start = mail.mark()
    key = api_key(srv, mail, me, email, [], name="deploy bot")
    assert srv.client().delete(f"/v1/api-keys/{key['id']}", token=me).status_code == 204
    told = [m for m in flushed(srv, mail, email, start) if not (m["subject"] or "").startswith("Confirm")]
    assert subjects(told) == ["A new API key", "An API key was revoked"] and all("deploy bot" in m["body"] for m in told)


def test_the_operator_turns_notices_off(backend, mail):
    srv = backend.server(AUTHGATE_NOTIFICATIONS__NEW_DEVICE="false", AUTHGATE_NOTIFICATIONS__REFRESH_REUSE="false")
    email = sign_up(srv, mail)
    start = mail.mark()
    login(srv, email, client=srv.client(ip="10.1.1.1"))
    tokens = login(srv, email, client=srv.client(ip="10.2.2.2"))
    c = srv.client()
    c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "refresh_token_reused")
    assert subjects(flushed(srv, mail, email, start)) == []
