"""Attacks on accounts and codes: pre-hijacking a sign-up, guessing codes across many codes,
flooding an address with codes, telling accounts apart through login steps, racing the lockout,
rotating IPv6 addresses, changing login factors with a stolen session, reusing reset tokens."""

import threading
import time

from authsrv import PASSWORD, assert_error, login, new_email, sign_up, start_sign_up, totp_now


def shape(r):
    """Status and body with the random parts blanked."""
    body = r.json()
    return r.status_code, {k: ("<random>" if k in ("verification_id", "error_id") else v) for k, v in body.items()}


def wrong(code):
    return "%06d" % ((int(code) + 1) % 1_000_000)


def test_pre_hijack_the_verified_sign_up_sets_the_password_and_org(orgs_srv, mail):
    """An attacker signs up the victim's address first (or after the victim): whoever verifies
    the emailed code gets the account with their own password and organisation choice."""
    srv = orgs_srv
    attacker_pw, victim_pw = "attacker chosen passphrase 1", "victim own passphrase 22"
    for attacker_first in (True, False):
        victim = new_email("victim")
        c = srv.client()
        if attacker_first:
            start_sign_up(mail, c, victim, attacker_pw, org_name="Attacker Inc")
            vid, code = start_sign_up(mail, c, victim, victim_pw)
        else:
            vid, code = start_sign_up(mail, c, victim, victim_pw)
            start_sign_up(mail, c, victim, attacker_pw, org_name="Attacker Inc")
        assert c.post("/v1/users/verify", json={"verification_id": vid, "code": code}).status_code == 200
        tokens = login(srv, victim, victim_pw)
        assert_error(c.post("/v1/sessions", json={"email": victim, "password": attacker_pw}), 401, "invalid_credentials")
        me = c.get("/v1/me", token=tokens["access_token"]).json()
        assert me["org_id"] == "org_default" and me["roles"] == [], me


def test_wrong_codes_lock_the_account_across_codes_and_endpoints(backend, mail):
    """Asking for new codes gives no new guesses: wrong codes of the API-key, short-form and
    email_otp flows all count towards the one account lockout."""
    srv = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=4)
    addr = sign_up(srv, mail)
    session = login(srv, addr)["access_token"]
    c = srv.client()
    mark = mail.mark()
    key_vid = c.post("/v1/api-keys", json={"name": "k"}, token=session).json()["verification_id"]
    key_code = mail.code(addr, "api key", start=mark)
    short = []
    for _ in range(2):
        mark = mail.mark()
        short.append((c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}).json()["verification_id"], mail.code(addr, "sign-in", start=mark)))
    tok = {"x-session-token": c.post("/v1/auth/init", json={"email": addr}).headers["x-session-token"]}
    mark = mail.mark()
    assert c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers=tok).json()["status"] == "code_sent"
    otp_code = mail.code(addr, "sign-in", start=mark)
    # One wrong guess on each of four different codes: no code is near its own limit of 5 ...
    assert_error(c.post("/v1/api-keys/verify", json={"verification_id": key_vid, "code": wrong(key_code)}, token=session), 400, "invalid_code")
    assert_error(c.post("/v1/sessions/verify", json={"verification_id": short[0][0], "code": wrong(short[0][1])}), 401, "invalid_code")
    assert_error(c.post("/v1/auth/authenticate", json={"method": "email_otp", "code": wrong(otp_code)}, headers=tok), 401, "invalid_code")
    assert_error(c.post("/v1/sessions/verify", json={"verification_id": short[1][0], "code": wrong(short[1][1])}), 401, "invalid_code")
    # ... but the account is locked: right codes and the right password are refused now.
    assert_error(c.post("/v1/sessions/verify", json={"verification_id": short[1][0], "code": short[1][1]}), 429, "account_locked")
    assert_error(c.post("/v1/auth/authenticate", json={"method": "email_otp", "code": otp_code}, headers=tok), 429, "account_locked")
    assert_error(c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}), 429, "account_locked")
    srv.stop()


def test_codes_per_address_are_capped(backend, mail):
    """At most codes.issue_limit emailed secrets per address and window, for known and unknown
    addresses alike (decoys count the same); beyond it 429 and nothing is sent."""
    srv = backend.server(AUTHGATE_CODES__ISSUE_LIMIT=3)
    addr = sign_up(srv, mail)  # the sign-up code is the first
    c = srv.client()
    for _ in range(2):
        assert c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}).status_code == 202
    mail.wait(addr, "sign-in")
    r = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD})
    assert_error(r, 429, "too_many_codes")
    assert int(r.headers["retry-after"]) > 0
    assert_error(c.post("/v1/password/forgot", json={"email": addr}), 429, "too_many_codes")
    # Nothing was sent: one queue delivers in order, so once a later email arrived, an email
    # for the refused requests would have too.
    marker = new_email("marker")
    c.post("/v1/users", json={"email": marker, "password": PASSWORD})
    mail.wait(marker, "verify")
    assert mail.count_to(addr) == 3
    # An unknown address: the same cap after the same number of requests (same path, decoys).
    ghost = new_email("ghost")
    for _ in range(3):
        assert c.post("/v1/password/forgot", json={"email": ghost}).status_code == 202
    assert_error(c.post("/v1/password/forgot", json={"email": ghost}), 429, "too_many_codes")
    srv.stop()


def test_login_steps_answer_the_same_for_every_account_before_the_password(srv, mail):
    """Unknown, no second step, email_otp and TOTP accounts: every first step, with wrong or
    missing values, gets the same status and body."""
    plain = sign_up(srv, mail)
    otp = sign_up(srv, mail)
    c = srv.client()
    t = login(srv, otp)["access_token"]
    assert c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=t).status_code == 204
    totp = sign_up(srv, mail)
    t = login(srv, totp)["access_token"]
    secret = c.post("/v1/me/totp", token=t).json()["secret"]
    assert c.post("/v1/me/totp/confirm", json={"code": totp_now(secret, time.time() - 30)}, token=t).status_code == 204
    accounts = [new_email("ghost"), plain, otp, totp]
    bad_totp = "000000" if totp_now(secret) != "000000" else "111111"
    steps = [
        {"method": "password", "password": "wrong wrong wrong"},
        {"method": "password"},
        {"method": "totp", "code": bad_totp},
        {"method": "totp"},
        {"method": "email_otp", "code": "123456"},
        {"method": "email_otp"},
        {"method": "sms", "code": "123456"},
    ]
    for step in steps:
        answers = []
        for addr in accounts:
            tok = c.post("/v1/auth/init", json={"email": addr}).headers["x-session-token"]
            answers.append(shape(c.post("/v1/auth/authenticate", json=step, headers={"x-session-token": tok})))
        assert all(a == answers[0] for a in answers), (step, answers)


def test_parallel_wrong_passwords_never_exceed_the_lockout_threshold(backend, mail):
    """Many wrong passwords at once: at most lockout_threshold are checked (and answered
    invalid_credentials); every other is account_locked, and so is the right password after."""
    srv = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=3, AUTHGATE_PASSWORDS__ARGON2_MEMORY_KIB=8192, AUTHGATE_PASSWORDS__ARGON2_ITERATIONS=2)
    addr = sign_up(srv, mail)
    n = 16
    barrier = threading.Barrier(n)
    results = []
    lock = threading.Lock()

    def attempt(i):
        c = srv.client()
        barrier.wait()
        r = c.post("/v1/sessions", json={"email": addr, "password": f"wrong password number {i:04d}"})
        with lock:
            results.append((r.status_code, r.headers.get("x-error-code")))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count((401, "invalid_credentials")) == 3, results
    assert results.count((429, "account_locked")) == n - 3, results
    assert_error(srv.client().post("/v1/sessions", json={"email": addr, "password": PASSWORD}), 429, "account_locked")
    srv.stop()


def test_ipv6_clients_are_counted_by_their_64(backend):
    srv = backend.server(AUTHGATE_RATE_LIMITS__AUTH_PER_IP=3)
    a, b = srv.client("2001:db8:aa:1::1"), srv.client("2001:db8:aa:1:ffff:ffff:ffff:2")
    for cl in (a, b, a):
        assert cl.post("/v1/auth/init", json={"email": new_email()}).status_code == 200
    assert_error(b.post("/v1/auth/init", json={"email": new_email()}), 429, "rate_limited")
    # Another /64 has its own budget.
    assert srv.client("2001:db8:aa:2::1").post("/v1/auth/init", json={"email": new_email()}).status_code == 200
    srv.stop()


def test_changing_login_factors_needs_every_factor_of_the_account(srv, mail):
    """A session that did not log in with every factor the account requires now cannot switch
    factors off or enrol a TOTP of its own; a fresh full login can."""
    addr = sign_up(srv, mail)
    c = srv.client()
    pwd_only = login(srv, addr)["access_token"]
    assert c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=pwd_only).status_code == 204
    # The account now needs password + emailed code; the password-only session is not enough.
    assert_error(c.put("/v1/me/mfa", json={"method": "none", "password": PASSWORD}, token=pwd_only), 403, "reauthentication_required")
    assert_error(c.post("/v1/me/totp", token=pwd_only), 403, "reauthentication_required")
    tok = {"x-session-token": c.post("/v1/auth/init", json={"email": addr}).headers["x-session-token"]}
    c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=tok)
    mark = mail.mark()
    c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers=tok)
    full = c.post("/v1/auth/authenticate", json={"method": "email_otp", "code": mail.code(addr, "sign-in", start=mark)}, headers=tok).json()["access_token"]
    secret = c.post("/v1/me/totp", token=full).json()["secret"]
    assert_error(c.post("/v1/me/totp/confirm", json={"code": totp_now(secret)}, token=pwd_only), 403, "reauthentication_required")
    assert c.post("/v1/me/totp/confirm", json={"code": totp_now(secret, time.time() - 30)}, token=full).status_code == 204
    # Removing TOTP takes a fresh second factor: a current code of the secret.
    assert_error(c.delete("/v1/me/totp", json={"code": "000000" if totp_now(secret) != "000000" else "111111"}, token=full), 400, "invalid_code")
    assert c.delete("/v1/me/totp", json={"code": totp_now(secret)}, token=full).status_code == 204


def test_changing_login_factors_needs_a_recent_login(backend, mail):
    srv = backend.server(AUTHGATE_LOGIN__REAUTH_WINDOW_S=1)
    addr = sign_up(srv, mail)
    t = login(srv, addr)["access_token"]
    time.sleep(2.1)  # the login is now older than login.reauth_window_s
    c = srv.client()
    assert_error(c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=t), 403, "reauthentication_required")
    assert_error(c.post("/v1/me/totp", token=t), 403, "reauthentication_required")
    assert c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=login(srv, addr)["access_token"]).status_code == 204
    srv.stop()


def test_a_password_reset_invalidates_every_other_reset_token(srv, mail):
    addr = sign_up(srv, mail)
    c = srv.client()
    tokens = []
    for _ in range(2):
        mark = mail.mark()
        assert c.post("/v1/password/forgot", json={"email": addr}).status_code == 202
        tokens.append(next(w for w in mail.wait(addr, "reset", start=mark)["body"].split() if w.startswith("prt_")))
    new_pw = "a brand new passphrase 7"
    assert c.post("/v1/password/reset", json={"token": tokens[1], "password": new_pw}).status_code == 204
    assert_error(c.post("/v1/password/reset", json={"token": tokens[0], "password": "an attacker passphrase 8"}), 400, "invalid_reset_token")
    login(srv, addr, new_pw)
