"""Attack tests: user enumeration, brute force (lockout, rate limits, code attempts), refresh
reuse, CSRF in cookie mode, secrets in logs, error headers everywhere, injection attempts."""

import re
import statistics
import time

import jwt
from authsrv import PASSWORD, admin_user, api_key, assert_error, login, new_email, operator_user, sign_up


def shape(r):
    """Status and body with the random parts blanked."""
    body = r.json()
    return r.status_code, {k: ("<random>" if k in ("verification_id", "error_id") else v) for k, v in body.items()}


def test_no_user_enumeration(srv, mail):
    known = sign_up(srv, mail)
    unknown = new_email("ghost")
    c = srv.client()
    # init: same status, same body, a session token either way.
    a, b = c.post("/v1/auth/init", json={"email": known}), c.post("/v1/auth/init", json={"email": unknown})
    assert shape(a) == shape(b) and a.headers["x-session-token"] and b.headers["x-session-token"]
    # authenticate with a wrong password: same answer.
    ra = c.post("/v1/auth/authenticate", json={"method": "password", "password": "wrong wrong wrong"}, headers={"x-session-token": a.headers["x-session-token"]})
    rb = c.post("/v1/auth/authenticate", json={"method": "password", "password": "wrong wrong wrong"}, headers={"x-session-token": b.headers["x-session-token"]})
    assert shape(ra) == shape(rb) and ra.status_code == 401
    # email_otp: "code_sent" either way (nothing is sent to an unknown address).
    ra = c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers={"x-session-token": a.headers["x-session-token"]})
    rb = c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers={"x-session-token": b.headers["x-session-token"]})
    assert shape(ra) == shape(rb) and ra.json()["status"] == "code_sent"
    # short form, sign-up, resend, forgot: same answers.
    assert shape(c.post("/v1/sessions", json={"email": known, "password": "nope nope nope"})) == shape(c.post("/v1/sessions", json={"email": unknown, "password": "nope nope nope"}))
    mark = mail.mark()
    sa = c.post("/v1/users", json={"email": known, "password": PASSWORD + "!"})
    sb = c.post("/v1/users", json={"email": new_email("fresh"), "password": PASSWORD + "!"})
    assert shape(sa) == shape(sb) and sa.status_code == 202
    assert "sign-up attempt" in mail.wait(known, "sign-up attempt", start=mark)["subject"].lower()
    # Resending the code of either sign-up, or of an id that never existed: the same answer.
    ra, rb = (c.post("/v1/users/verify/resend", json={"verification_id": r.json()["verification_id"]}) for r in (sa, sb))
    rc = c.post("/v1/users/verify/resend", json={"verification_id": "ver_" + "0" * 32})
    assert shape(ra) == shape(rb) == shape(rc) and ra.status_code == 202
    assert shape(c.post("/v1/password/forgot", json={"email": known})) == shape(c.post("/v1/password/forgot", json={"email": unknown}))

    # Timing: a wrong password costs the same argon2 work for known and unknown accounts.
    def timed(addr):
        cl = srv.client()
        t0 = time.perf_counter()
        r = cl.post("/v1/sessions", json={"email": addr, "password": "definitely wrong 1"})
        assert r.status_code in (401, 429)
        return time.perf_counter() - t0

    kt, ut = [], []
    for i in range(8):
        kt.append(timed(known if i < 4 else sign_up(srv, mail)))
        ut.append(timed(new_email("ghost")))
    mk, mu = statistics.median(kt), statistics.median(ut)
    assert abs(mk - mu) < max(0.5 * max(mk, mu), 0.01), (kt, ut)


def test_lockout_429_with_retry_after(backend, mail):
    srv = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=3, AUTHGATE_LOGIN__LOCKOUT_S=60)
    known = sign_up(srv, mail)
    for addr in (known, new_email("ghost")):
        c = srv.client()
        for _ in range(3):
            assert_error(c.post("/v1/sessions", json={"email": addr, "password": "wrong wrong wrong"}), 401, "invalid_credentials")
        # Locked: even the right password is refused, from any address, for known and unknown accounts alike.
        r = srv.client().post("/v1/sessions", json={"email": addr, "password": PASSWORD})
        assert_error(r, 429, "account_locked")
        assert 0 < int(r.headers["retry-after"]) <= 60
        r = srv.client().post("/v1/auth/init", json={"email": addr})
        r = srv.client().post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
        assert_error(r, 429, "account_locked")
    srv.stop()


def test_ip_and_account_rate_limits(backend, mail):
    srv = backend.server(AUTHGATE_RATE_LIMITS__AUTH_PER_IP=5, AUTHGATE_RATE_LIMITS__AUTH_PER_ACCOUNT=3, AUTHGATE_RATE_LIMITS__WINDOW_S=60)
    c = srv.client()
    for i in range(5):
        assert c.post("/v1/auth/init", json={"email": new_email()}).status_code == 200
    r = c.post("/v1/auth/init", json={"email": new_email()})
    assert_error(r, 429, "rate_limited")
    assert 0 < int(r.headers["retry-after"]) <= 60
    # Another address is not affected; one account hammered from many addresses is.
    assert srv.client().post("/v1/auth/init", json={"email": new_email()}).status_code == 200
    target = new_email("target")
    for _ in range(3):
        assert srv.client().post("/v1/auth/init", json={"email": target}).status_code == 200
    assert_error(srv.client().post("/v1/auth/init", json={"email": target}), 429, "rate_limited")
    srv.stop()


def test_code_attempts_are_limited_and_single_use(backend, mail):
    # A high lockout threshold: this is about one code's own attempts.
    srv = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=20)
    addr = new_email()
    c = srv.client()
    mark = mail.mark()
    vid = c.post("/v1/users", json={"email": addr, "password": PASSWORD}).json()["verification_id"]
    code = mail.code(addr, "verify", start=mark)
    wrong = "%06d" % ((int(code) + 1) % 1_000_000)
    for _ in range(5):
        assert_error(c.post("/v1/users/verify", json={"verification_id": vid, "code": wrong}), 400, "invalid_code")
    # The 6th attempt is refused even with the right code: the code is burnt.
    assert_error(c.post("/v1/users/verify", json={"verification_id": vid, "code": code}), 400, "code_attempts_exceeded")
    assert_error(c.post("/v1/users/verify", json={"verification_id": vid, "code": code}), 400, "invalid_code")
    # A burnt code's sign-up cannot be resent (`resend` answers a decoy id): sign up again, and
    # have that sign-up's code resent; the new code works once.
    mark = mail.mark()
    vid = c.post("/v1/users", json={"email": addr, "password": PASSWORD}).json()["verification_id"]
    mail.code(addr, "verify", start=mark)
    mark = mail.mark()
    vid2 = c.post("/v1/users/verify/resend", json={"verification_id": vid}).json()["verification_id"]
    code = mail.code(addr, "verify", start=mark)
    assert vid2 != vid
    assert c.post("/v1/users/verify", json={"verification_id": vid2, "code": code}).status_code == 200
    assert_error(c.post("/v1/users/verify", json={"verification_id": vid2, "code": code}), 400, "invalid_code")
    srv.stop()


def path_of(attrs):
    return next(a.split("=", 1)[1] for a in (x.strip() for x in attrs.split(";")) if a.startswith("Path="))


def set_cookies(r):
    """name -> (value, attribute string) of each Set-Cookie."""
    out = {}
    for raw in r.raw.headers.get_all("set-cookie"):
        name, rest = raw.split("=", 1)
        value, _, attrs = rest.partition(";")
        out[name] = (value, attrs)
    return out


def test_cookie_mode_and_csrf(srv, mail):
    addr = sign_up(srv, mail)
    c = srv.client()
    r = c.post("/v1/auth/init", json={"email": addr})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD, "cookie": True}, headers={"x-session-token": r.headers["x-session-token"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "access_token" not in body and "refresh_token" not in body and body["token_type"] == "cookie"
    cookies = set_cookies(r)
    at, rt, csrf = cookies["__Host-authgate_at"], cookies["__Secure-authgate_rt"], cookies["__Host-authgate_csrf"]
    for _, attrs in (at, rt, csrf):
        assert "Secure" in attrs and "SameSite=Strict" in attrs and "Domain" not in attrs
    assert "HttpOnly" in at[1] and "HttpOnly" in rt[1] and "HttpOnly" not in csrf[1] and csrf[0] == body["csrf_token"]
    # The refresh token goes only to the refresh endpoint (never to upstreams on the same host).
    assert path_of(at[1]) == "/" and path_of(csrf[1]) == "/" and path_of(rt[1]) == "/v1/sessions/refresh"
    jar = {"cookie": f"__Host-authgate_at={at[0]}; __Secure-authgate_rt={rt[0]}; __Host-authgate_csrf={csrf[0]}"}

    # Reads work with the cookie alone.
    assert c.get("/v1/me", headers=jar).json()["email"] == addr
    # State changes need the CSRF header (a cross-site form cannot send it) ...
    assert_error(c.post("/v1/sessions/refresh", headers=jar), 403, "csrf_token_invalid")
    assert_error(c.post("/v1/sessions/refresh", headers={**jar, "x-csrf-token": "forged"}), 403, "csrf_token_invalid")
    other = login(srv, sign_up(srv, mail), client=srv.client())
    assert_error(c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, headers=jar), 403, "csrf_token_invalid")
    # ... and a foreign Origin is refused even with it.
    assert_error(c.post("/v1/sessions/refresh", headers={**jar, "x-csrf-token": csrf[0], "origin": "https://evil.example"}), 403, "csrf_origin_mismatch")
    r = c.post("/v1/sessions/refresh", headers={**jar, "x-csrf-token": csrf[0], "origin": srv.issuer})
    assert r.status_code == 200, r.text
    new = set_cookies(r)
    assert new["__Secure-authgate_rt"][0] != rt[0] and "access_token" not in r.json()
    assert path_of(new["__Secure-authgate_rt"][1]) == "/v1/sessions/refresh"
    jar2 = {"cookie": f"__Host-authgate_at={new['__Host-authgate_at'][0]}; __Secure-authgate_rt={new['__Secure-authgate_rt'][0]}"}
    # The old refresh cookie is spent: replaying it revokes the session.
    assert_error(c.post("/v1/sessions/refresh", headers={**jar, "x-csrf-token": csrf[0]}), 401, "refresh_token_reused")
    assert_error(c.get("/v1/me", headers=jar2), 401, "session_revoked")
    assert c.get("/v1/me", token=other["access_token"]).status_code == 200

    # Logout in cookie mode clears the cookies.
    r = c.post("/v1/auth/init", json={"email": addr})
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD, "cookie": True}, headers={"x-session-token": r.headers["x-session-token"]})
    ck = set_cookies(r)
    jar3 = {"cookie": f"__Host-authgate_at={ck['__Host-authgate_at'][0]}", "x-csrf-token": r.json()["csrf_token"]}
    r = c.post("/v1/sessions/logout", headers=jar3)
    assert r.status_code == 204
    cleared = set_cookies(r)
    assert set(cleared) == {"__Host-authgate_at", "__Secure-authgate_rt", "__Host-authgate_csrf"}
    assert all("Max-Age=0" in attrs for _, attrs in cleared.values())
    # A cookie is cleared only with the path it was set with.
    assert path_of(cleared["__Secure-authgate_rt"][1]) == "/v1/sessions/refresh" and path_of(cleared["__Host-authgate_at"][1]) == "/"


def test_error_headers_on_every_error(srv):
    c = srv.client()
    ids = set()
    for r, status in [
        (c.get("/nope"), 404),
        (c.req("PUT", "/v1/me"), 405),
        (c.req("POST", "/v1/auth/init", data="{not json", headers={"content-type": "application/json"}), 400),
        (c.req("POST", "/v1/auth/init", data="x=1"), 400),
        (c.post("/v1/auth/init", json={"email": "not-an-email"}), 400),
        (c.get("/v1/me"), 401),
        (c.get("/v1/me", token="abc.def.ghi"), 401),
        (c.get("/v1/me", headers={"authorization": "Basic Zm9vOmJhcg=="}), 401),
        (c.get("/v1/me", headers={"authorization": "Bearer x", "x-api-key": "agk_x"}), 400),
        (c.req("POST", "/v1/auth/init", data="x" * 70000, headers={"content-type": "application/json"}), 413),
    ]:
        assert_error(r, status)
        assert r.headers["x-error-id"] not in ids
        ids.add(r.headers["x-error-id"])
    r = c.get("/v1/me", token="abc.def.ghi")
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token", error_description=')
    time.sleep(0.3)
    logs = srv.logs()
    assert all(i in logs for i in ids), "every x-error-id is in the log"


def test_injection_attempts_are_inert(srv, mail):
    c = srv.client()
    for evil in ["' OR '1'='1", "a@b.c'; DROP TABLE users; --", "\" OR 1=1 --@x.y"]:
        r = c.post("/v1/auth/init", json={"email": evil})
        assert r.status_code in (200, 400)
        r = c.post("/v1/sessions", json={"email": evil, "password": evil})
        assert r.status_code in (400, 401)
    addr = sign_up(srv, mail)
    t = login(srv, addr)
    assert_error(c.delete("/v1/sessions/' OR '1'='1", token=t["access_token"]), 404, "session_not_found")
    assert c.get("/v1/me", token=t["access_token"]).status_code == 200


def test_secrets_never_reach_the_log(backend, mail):
    srv = backend.server()
    addr = new_email()
    c = srv.client()
    mark = mail.mark()
    vid = c.post("/v1/users", json={"email": addr, "password": PASSWORD}).json()["verification_id"]
    signup_code = mail.code(addr, "verify", start=mark)
    assert c.post("/v1/users/verify", json={"verification_id": vid, "code": signup_code}).status_code == 200
    r = c.post("/v1/auth/init", json={"email": addr})
    session_token = r.headers["x-session-token"]
    c.post("/v1/auth/authenticate", json={"method": "password", "password": "a wrong password 9"}, headers={"x-session-token": session_token})
    tokens = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": session_token}).json()
    refreshed = c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    mark = mail.mark()
    short = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}).json()
    login_code = mail.code(addr, "sign-in", start=mark)
    c.post("/v1/sessions/verify", json={"verification_id": short["verification_id"], "code": login_code})
    mark = mail.mark()
    c.post("/v1/password/forgot", json={"email": addr})
    reset = next(w for w in mail.wait(addr, "reset", start=mark)["body"].split() if w.startswith("prt_"))
    admin_addr, admin = admin_user(srv, roles=("admin", "reader"))
    key = api_key(srv, mail, admin["access_token"], admin_addr, ["reader"])
    cl = c.post("/v1/clients", json={"name": "x"}, token=admin["access_token"]).json()
    time.sleep(0.5)
    logs = srv.logs()
    assert '"message":"request"' in logs  # the log is JSON lines
    secrets_ = {
        "password": PASSWORD, "wrong password": "a wrong password 9", "signup code": signup_code, "login code": login_code,
        "session token": session_token, "access token": tokens["access_token"], "refresh token": tokens["refresh_token"],
        "rotated refresh token": refreshed["refresh_token"], "reset token": reset, "api secret": key["secret"],
        "client secret": cl["client_secret"], "master key": backend.master_key,
    }
    for name, value in secrets_.items():
        assert value not in logs, f"{name} found in the log"
    # The access token's signature part alone must not be there either.
    assert tokens["access_token"].split(".")[2] not in logs
    assert not re.search(r"\bagk_[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{43}\b", logs)
    srv.stop()


def test_tampered_and_foreign_tokens_are_refused(srv, mail):
    t = login(srv, sign_up(srv, mail))["access_token"]
    c = srv.client()
    h, p, s = t.split(".")
    claims = jwt.decode(t, options={"verify_signature": False})
    claims["roles"] = ["admin"]
    import base64
    import json

    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_error(c.get("/v1/me", token=f"{h}.{forged_payload}.{s}"), 401, "signature_invalid")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    assert c.get("/v1/me", token=f"{none_header}.{p}.").status_code == 401
    # An HS256 token made with the public key as secret (alg confusion) is refused.
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": jwt.get_unverified_header(t)["kid"], "typ": "at+jwt"})
    assert_error(c.get("/v1/me", token=forged), 401, "key_alg_mismatch")


def test_bodies_are_json_objects_never_arrays_of_fields(srv, mail):
    """serde reads a struct from an array of its fields in order; the API takes JSON objects
    only. A sign-up, a login start or a password login written as an array is refused (400
    invalid_request, in JSON's words) and does nothing: no account, no email, no session."""
    c = srv.client()
    addr = new_email("arrays")
    for path, fields in [("/v1/users", [addr, PASSWORD + "!"]), ("/v1/auth/init", [addr]), ("/v1/sessions", [addr, PASSWORD + "!"])]:
        r = c.post(path, json=fields)
        assert_error(r, 400, "invalid_request")
        assert "invalid type: array, expected object" in r.json()["message"], r.text
        assert "x-session-token" not in r.headers and "access_token" not in r.json()
    time.sleep(0.5)
    assert mail.count_to(addr) == 0, "an array-written sign-up sent an email"
    mark = mail.mark()
    assert c.post("/v1/users", json={"email": addr, "password": PASSWORD + "!"}).status_code == 202
    mail.wait(addr, start=mark)
    # The handlers that read their body's bytes themselves: a refresh token sent as an array is
    # refused and not spent (its object form still rotates it); introspection likewise.
    tokens = login(srv, sign_up(srv, mail))
    assert_error(c.post("/v1/sessions/refresh", json=[tokens["refresh_token"]]), 400, "invalid_request")
    assert c.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    _, inspector = operator_user(srv, roles=("introspect",))
    assert_error(c.post("/v1/sessions/introspect", json=[tokens["access_token"]], token=inspector["access_token"]), 400, "invalid_request")
    assert c.post("/v1/sessions/introspect", json={"token": tokens["access_token"]}, token=inspector["access_token"]).json()["active"] is True
