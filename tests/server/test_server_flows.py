"""Core flows over HTTP: sign-up, multi-step and short-form login, tokens, sessions, API keys,
machine clients, admin. Each test runs against SQLite and against PostgreSQL + Redis."""

import base64
import json
import time

import jwt
import requests
from authsrv import PASSWORD, admin_user, api_key, assert_error, key_headers, login, new_email, operator_user, request_api_key, sign_up, totp_now


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token):
    return jwt.get_unverified_header(token)


def verify_with_jwks(srv, token):
    """Verifies an access token with PyJWT against the published JWKS (an independent verifier)."""
    jwks = requests.get(srv.url + "/.well-known/jwks.json", timeout=10).json()
    kid = header_of(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    return jwt.decode(token, key.key, algorithms=[jwk["alg"]], audience="api", issuer=srv.issuer)


def test_sign_up_verify_and_multi_step_login(srv, mail):
    addr = new_email()
    c = srv.client()
    mark = mail.mark()
    r = c.post("/v1/users", json={"email": addr, "password": PASSWORD})
    assert r.status_code == 202
    vid = r.json()["verification_id"]
    # Not verified yet: no login.
    r0 = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD})
    assert_error(r0, 401, "invalid_credentials")
    code = mail.code(addr, "verify", start=mark)
    assert_error(c.post("/v1/users/verify", json={"verification_id": vid, "code": "000000" if code != "000000" else "111111"}), 400, "invalid_code")
    r = c.post("/v1/users/verify", json={"verification_id": vid, "code": code})
    assert r.status_code == 200 and r.json()["status"] == "active"
    # Codes are single use.
    assert_error(c.post("/v1/users/verify", json={"verification_id": vid, "code": code}), 400, "invalid_code")

    r = c.post("/v1/auth/init", json={"email": addr})
    assert r.status_code == 200
    assert set(r.json()["methods"]) == {"password", "email_otp", "totp"}
    tok = r.headers["x-session-token"]
    assert len(tok) >= 43  # 256 bits, base64url
    assert_error(c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD + "x"}, headers={"x-session-token": tok}), 401, "invalid_credentials")
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": tok})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "complete" and body["token_type"] == "Bearer"
    assert body["refresh_token"].startswith("rt_")
    claims = verify_with_jwks(srv, body["access_token"])
    assert header_of(body["access_token"])["typ"] == "at+jwt"
    assert header_of(body["access_token"])["alg"] == "EdDSA"
    assert claims["sub"].startswith("usr_") and claims["email"] == addr and claims["sid"] == body["session_id"]
    assert claims["exp"] - claims["iat"] == 600 and claims["amr"] == ["pwd"]
    # The login session token is spent.
    assert_error(c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": tok}), 401, "login_session_invalid")

    me = c.get("/v1/me", token=body["access_token"])
    assert me.status_code == 200 and me.json()["email"] == addr and me.json()["mfa"] == "none"


def test_short_form_login(srv, mail):
    addr = sign_up(srv, mail)
    c = srv.client()
    assert_error(c.post("/v1/sessions", json={"email": addr, "password": "wrong password here"}), 401, "invalid_credentials")
    mark = mail.mark()
    r = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD})
    assert r.status_code == 202, r.text
    vid = r.json()["verification_id"]
    code = mail.code(addr, "sign-in", start=mark)
    r = c.post("/v1/sessions/verify", json={"verification_id": vid, "code": code})
    assert r.status_code == 200, r.text
    claims = verify_with_jwks(srv, r.json()["access_token"])
    assert claims["amr"] == ["pwd", "email", "mfa"]
    assert_error(c.post("/v1/sessions/verify", json={"verification_id": vid, "code": code}), 401, "invalid_code")


def test_email_otp_as_second_step_and_passwordless(srv, mail):
    addr = sign_up(srv, mail)
    tokens = login(srv, addr)
    c = srv.client()
    assert_error(c.put("/v1/me/mfa", json={"method": "email_otp", "password": "nope nope nope"}, token=tokens["access_token"]), 401)
    assert c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=tokens["access_token"]).status_code == 204

    r = c.post("/v1/auth/init", json={"email": addr})
    tok = {"x-session-token": r.headers["x-session-token"]}
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=tok)
    assert r.json() == {"status": "continue", "completed": ["password"], "next": ["email_otp"]}
    mark = mail.mark()
    r = c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers=tok)
    assert r.status_code == 200 and r.json()["status"] == "code_sent"
    code = mail.code(addr, "sign-in", start=mark)
    r = c.post("/v1/auth/authenticate", json={"method": "email_otp", "code": code}, headers=tok)
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    assert claims_of(r.json()["access_token"])["amr"] == ["pwd", "email", "mfa"]

    # An account without a second step can sign in with the emailed code alone.
    other = sign_up(srv, mail)
    r = c.post("/v1/auth/init", json={"email": other})
    tok = {"x-session-token": r.headers["x-session-token"]}
    mark = mail.mark()
    assert c.post("/v1/auth/authenticate", json={"method": "email_otp"}, headers=tok).status_code == 200
    code = mail.code(other, "sign-in", start=mark)
    r = c.post("/v1/auth/authenticate", json={"method": "email_otp", "code": code}, headers=tok)
    assert r.json()["status"] == "complete" and claims_of(r.json()["access_token"])["amr"] == ["email"]


def test_totp_enrolment_and_login(srv, mail):
    addr = sign_up(srv, mail)
    tokens = login(srv, addr)
    c = srv.client()
    r = c.post("/v1/me/totp", token=tokens["access_token"])
    assert r.status_code == 200
    enrol = r.json()
    assert enrol["otpauth_uri"].startswith("otpauth://totp/") and "secret=" + enrol["secret"] in enrol["otpauth_uri"]
    assert_error(c.post("/v1/me/totp/confirm", json={"code": "000000"}, token=tokens["access_token"]), 400, "invalid_code")
    # The code of the previous step is accepted too (clock skew); use it so the login below can use the current one.
    assert c.post("/v1/me/totp/confirm", json={"code": totp_now(enrol["secret"], time.time() - 30)}, token=tokens["access_token"]).status_code == 204
    assert c.get("/v1/me", token=tokens["access_token"]).json()["mfa"] == "totp"

    r = c.post("/v1/auth/init", json={"email": addr})
    tok = {"x-session-token": r.headers["x-session-token"]}
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=tok)
    assert r.json()["next"] == ["totp"]
    assert_error(c.post("/v1/auth/authenticate", json={"method": "totp", "code": "123456" if totp_now(enrol["secret"]) != "123456" else "654321"}, headers=tok), 401, "invalid_code")
    code = totp_now(enrol["secret"])
    r = c.post("/v1/auth/authenticate", json={"method": "totp", "code": code}, headers=tok)
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    assert claims_of(r.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    # A TOTP code is accepted once (replay refused).
    r = c.post("/v1/auth/init", json={"email": addr})
    tok = {"x-session-token": r.headers["x-session-token"]}
    c.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers=tok)
    assert_error(c.post("/v1/auth/authenticate", json={"method": "totp", "code": code}, headers=tok), 401, "invalid_code")


def test_refresh_rotation_and_reuse_detection(srv, mail):
    addr = sign_up(srv, mail)
    t0 = login(srv, addr)
    c = srv.client()
    r = c.post("/v1/sessions/refresh", json={"refresh_token": t0["refresh_token"]})
    assert r.status_code == 200, r.text
    t1 = r.json()
    assert t1["refresh_token"] != t0["refresh_token"] and t1["session_id"] == t0["session_id"]
    assert claims_of(t1["access_token"])["jti"] != claims_of(t0["access_token"])["jti"]
    r = c.post("/v1/sessions/refresh", json={"refresh_token": t1["refresh_token"]})
    assert r.status_code == 200
    t2 = r.json()
    # Reusing the rotated t1 token: the whole session is revoked.
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": t1["refresh_token"]}), 401, "refresh_token_reused")
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": t2["refresh_token"]}), 401, "session_revoked")
    r = c.get("/v1/me", token=t2["access_token"])
    assert_error(r, 401, "session_revoked")
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": "rt_not-a-token"}), 401, "invalid_refresh_token")


def test_sessions_list_revoke_logout_validate(srv, mail):
    addr = sign_up(srv, mail)
    a, b, d = login(srv, addr), login(srv, addr), login(srv, addr)
    c = srv.client()
    r = c.get("/v1/sessions", token=a["access_token"])
    ids = {s["id"]: s for s in r.json()}
    assert {a["session_id"], b["session_id"], d["session_id"]} <= set(ids)
    assert ids[a["session_id"]]["current"] and not ids[b["session_id"]]["current"]
    v = c.get("/v1/sessions/validate", token=b["access_token"])
    assert v.status_code == 200 and v.json()["active"] and v.json()["sid"] == b["session_id"]

    assert c.delete(f"/v1/sessions/{b['session_id']}", token=a["access_token"]).status_code == 204
    assert_error(c.get("/v1/sessions/validate", token=b["access_token"]), 401, "session_revoked")
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": b["refresh_token"]}), 401, "session_revoked")

    # Someone else's session: 404, not revoked.
    other = login(srv, sign_up(srv, mail))
    assert_error(c.delete(f"/v1/sessions/{other['session_id']}", token=a["access_token"]), 404, "session_not_found")
    assert c.get("/v1/sessions/validate", token=other["access_token"]).status_code == 200

    assert c.post("/v1/sessions/logout", token=d["access_token"]).status_code == 204
    assert_error(c.get("/v1/me", token=d["access_token"]), 401, "session_revoked")

    r = c.delete("/v1/sessions?keep_current=true", token=a["access_token"])
    assert r.status_code == 200
    assert c.get("/v1/me", token=a["access_token"]).status_code == 200
    assert c.delete("/v1/sessions", token=a["access_token"]).status_code == 200
    assert_error(c.get("/v1/me", token=a["access_token"]), 401, "session_revoked")


def test_password_reset_is_single_use_and_revokes_sessions(srv, mail):
    addr = sign_up(srv, mail)
    s = login(srv, addr)
    c = srv.client()
    mark = mail.mark()
    assert c.post("/v1/password/forgot", json={"email": addr}).status_code == 202
    body = mail.wait(addr, "reset", start=mark)["body"]
    token = next(w for w in body.split() if w.startswith("prt_"))
    assert_error(c.post("/v1/password/reset", json={"token": token, "password": "short"}), 400, "weak_password")
    new_pw = "a brand new passphrase 7"
    assert c.post("/v1/password/reset", json={"token": token, "password": new_pw}).status_code == 204
    assert_error(c.post("/v1/password/reset", json={"token": token, "password": new_pw + "x"}), 400, "invalid_reset_token")
    assert_error(c.get("/v1/me", token=s["access_token"]), 401, "session_revoked")
    assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": s["refresh_token"]}), 401, "session_revoked")
    assert_error(c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}), 401, "invalid_credentials")
    login(srv, addr, new_pw)


def key_claims(k):
    raw = k["key_id"][4:]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def test_api_key_lifecycle(srv, mail):
    admin_addr, admin = admin_user(srv, roles=("admin", "reader"))
    c = srv.client()
    t = admin["access_token"]
    assert_error(c.post("/v1/api-keys", json={"name": "x", "roles": ["superuser"]}, token=t), 403, "role_not_held")
    assert_error(c.post("/v1/api-keys", json={"name": "x", "expires_in": 366 * 86400}, token=t), 400, "invalid_expiry")
    # Asking for a key mints nothing: an emailed code and a verification id.
    requested, code = request_api_key(srv, mail, t, admin_addr, ["reader"], name="ci", expires_in=3600)
    assert requested["name"] == "ci" and requested["roles"] == ["reader"] and requested["lifetime_s"] == 3600
    assert c.get("/v1/api-keys", token=t).json() == []
    # Another user holding the code gets nothing, and the code stays the owner's.
    other = login(srv, sign_up(srv, mail))["access_token"]
    assert_error(c.post("/v1/api-keys/verify", json={"verification_id": requested["verification_id"], "code": code}, token=other), 400, "invalid_code")
    # The creator's verification mints the key, active at once; the secret is shown here only.
    r = c.post("/v1/api-keys/verify", json={"verification_id": requested["verification_id"], "code": code}, token=t)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store", r.text
    k = r.json()
    assert k["status"] == "active" and k["key_id"].startswith("agk_") and k["secret"]
    claims = key_claims(k)
    assert claims["roles"] == ["reader"] and claims["id"] == k["id"] and claims["exp"] - claims["iat"] == 3600 and k["expires_at"] == claims["exp"]
    assert_error(c.post("/v1/api-keys/verify", json={"verification_id": requested["verification_id"], "code": code}, token=t), 400, "invalid_code")
    v = c.get("/v1/sessions/validate", headers=key_headers(k))
    assert v.status_code == 200 and v.json()["method"] == "api_key" and v.json()["roles"] == ["reader"]
    # The combined header form.
    assert c.get("/v1/sessions/validate", headers={"authorization": f"ApiKey {k['key_id']}.{k['secret']}"}).status_code == 200
    # Without expires_in a key lives api_keys.max_lifetime_s (365 days by default).
    k2 = api_key(srv, mail, t, admin_addr, [])
    assert key_claims(k2)["exp"] - key_claims(k2)["iat"] == 365 * 86400
    # A forged secret / escalated claims fail.
    assert_error(c.get("/v1/sessions/validate", headers={"x-api-key": k["key_id"], "x-api-secret": k2["secret"]}), 401, "api_key_invalid")
    listed = c.get("/v1/api-keys", token=t).json()
    assert {x["id"] for x in listed} == {k["id"], k2["id"]} and all(x["status"] == "active" for x in listed)
    assert all("secret" not in x for x in listed)
    assert c.delete(f"/v1/api-keys/{k['id']}", token=t).status_code == 204
    assert_error(c.get("/v1/sessions/validate", headers=key_headers(k)), 401, "api_key_revoked")
    assert [x for x in c.get("/v1/api-keys", token=t).json() if x["id"] == k["id"]][0]["status"] == "revoked"


def test_api_key_caps_and_rate_limit(backend, mail):
    """Per user: at most max_pending_per_user requests waiting, max_per_user keys active or
    revoked-but-unexpired (checked again when a key is minted), api_keys_per_user requests per
    window on the two endpoints."""
    srv = backend.server(AUTHGATE_API_KEYS__MAX_PER_USER=2, AUTHGATE_API_KEYS__MAX_PENDING_PER_USER=2, AUTHGATE_RATE_LIMITS__API_KEYS_PER_USER=7)
    addr, admin = admin_user(srv, roles=("admin", "reader"))
    t = admin["access_token"]
    c = srv.client()
    (a, code_a), (b, code_b) = (request_api_key(srv, mail, t, addr, ["reader"], name=n) for n in "ab")
    assert_error(c.post("/v1/api-keys", json={"name": "c"}, token=t), 409, "too_many_pending_api_keys")
    verify = lambda req, code: c.post("/v1/api-keys/verify", json={"verification_id": req["verification_id"], "code": code}, token=t)  # noqa: E731
    ka = verify(a, code_a).json()
    assert verify(b, code_b).status_code == 201
    assert_error(c.post("/v1/api-keys", json={"name": "d"}, token=t), 409, "too_many_api_keys")
    # A revoked key still counts until it expires: the feed lists it until then.
    assert c.delete(f"/v1/api-keys/{ka['id']}", token=t).status_code == 204
    assert_error(c.post("/v1/api-keys", json={"name": "e"}, token=t), 409, "too_many_api_keys")
    # The rate limit covers both endpoints (7 requests per window here; this is the 8th).
    r = c.post("/v1/api-keys/verify", json={"verification_id": a["verification_id"], "code": code_a}, token=t)
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    # Another user is not affected.
    other_addr, other = admin_user(srv, roles=("admin",))
    assert c.post("/v1/api-keys", json={"name": "x"}, token=other["access_token"]).status_code == 202
    srv.stop()


def test_api_key_cap_is_checked_again_when_the_key_is_minted(backend, mail):
    srv = backend.server(AUTHGATE_API_KEYS__MAX_PER_USER=1)
    addr, admin = admin_user(srv, roles=("admin",))
    t = admin["access_token"]
    c = srv.client()
    (a, code_a), (b, code_b) = (request_api_key(srv, mail, t, addr, [], name=n) for n in "ab")
    assert c.post("/v1/api-keys/verify", json={"verification_id": a["verification_id"], "code": code_a}, token=t).status_code == 201
    assert_error(c.post("/v1/api-keys/verify", json={"verification_id": b["verification_id"], "code": code_b}, token=t), 409, "too_many_api_keys")
    assert len(c.get("/v1/api-keys", token=t).json()) == 1
    srv.stop()


def test_client_credentials(srv, mail):
    _, admin = admin_user(srv, roles=("admin", "reader"))
    c = srv.client()
    r = c.post("/v1/clients", json={"name": "billing", "roles": ["reader"], "scopes": ["invoices:read", "invoices:write"]}, token=admin["access_token"])
    assert r.status_code == 201, r.text
    cl = r.json()
    basic = requests.auth.HTTPBasicAuth(cl["client_id"], cl["client_secret"])
    r = c.s.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials", "scope": "invoices:read"}, auth=basic, timeout=10)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["scope"] == "invoices:read" and r.headers["cache-control"] == "no-store"
    claims = verify_with_jwks(srv, tok["access_token"])
    assert claims["client_id"] == cl["client_id"] and claims["sub"] == cl["client_id"] and claims["roles"] == ["reader"] and "sid" not in claims
    r = c.s.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": cl["client_id"], "client_secret": cl["client_secret"]}, timeout=10)
    assert r.json()["scope"] == "invoices:read invoices:write"
    assert_error(c.s.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=basic, timeout=10), 400, "invalid_scope")
    assert_error(c.s.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=requests.auth.HTTPBasicAuth(cl["client_id"], "cs_wrong"), timeout=10), 401, "invalid_client")
    assert_error(c.s.post(srv.url + "/oauth2/token", data={"grant_type": "password"}, auth=basic, timeout=10), 400, "unsupported_grant_type")
    assert c.get("/v1/sessions/validate", token=tok["access_token"]).json()["client_id"] == cl["client_id"]
    assert c.delete(f"/v1/clients/{cl['client_id']}", token=admin["access_token"]).status_code == 204
    assert_error(c.get("/v1/sessions/validate", token=tok["access_token"]), 401, "subject_revoked")
    assert_error(c.s.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=basic, timeout=10), 401, "invalid_client")


def test_introspection(srv, mail):
    # A resource server's key with the platform role introspect, made by a platform admin.
    op_addr, op = operator_user(srv, roles=("platform_admin", "introspect"))
    k = api_key(srv, mail, op["access_token"], op_addr, ["introspect"])
    h = key_headers(k)
    user = login(srv, sign_up(srv, mail))
    c = srv.client()
    r = c.post("/v1/sessions/introspect", json={"token": user["access_token"]}, headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is True and body["sid"] == user["session_id"] and body["iss"] == srv.issuer and body["token_type"] == "Bearer"
    # RFC 7662 form encoding.
    r = c.s.post(srv.url + "/v1/sessions/introspect", data={"token": user["refresh_token"]}, headers=h, timeout=10)
    assert r.json()["active"] is True and r.json()["token_type"] == "refresh_token"
    assert c.post("/v1/sessions/introspect", json={"token": "garbage"}, headers=h).json() == {"active": False}
    assert c.post("/v1/sessions/logout", token=user["access_token"]).status_code == 204
    assert c.post("/v1/sessions/introspect", json={"token": user["access_token"]}, headers=h).json() == {"active": False}
    assert c.post("/v1/sessions/introspect", json={"token": user["refresh_token"]}, headers=h).json() == {"active": False}
    # Callers without the role are refused.
    plain = login(srv, sign_up(srv, mail))
    assert_error(c.post("/v1/sessions/introspect", json={"token": plain["access_token"]}, token=plain["access_token"]), 403, "insufficient_role")
    # Platform administration alone is not the introspect role.
    _, pa = operator_user(srv, roles=("platform_admin",))
    assert_error(c.post("/v1/sessions/introspect", json={"token": plain["access_token"]}, token=pa["access_token"]), 403, "insufficient_role")
    assert_error(c.post("/v1/sessions/introspect", json={"token": plain["access_token"]}), 401, "credential_missing")


def test_admin_roles_orgs_and_disable(orgs_srv, mail):
    srv = orgs_srv
    admin_addr, admin = admin_user(srv)
    c = srv.client()
    addr = sign_up(srv, mail)
    user = login(srv, addr)
    uid = claims_of(user["access_token"])["sub"]
    assert_error(c.get("/v1/users", token=user["access_token"]), 403, "insufficient_role")
    users = c.get("/v1/users", params={"email": addr}, token=admin["access_token"]).json()
    assert [u["id"] for u in users] == [uid]
    assert c.put(f"/v1/users/{uid}/roles", json={"roles": ["editor", "reader"]}, token=admin["access_token"]).status_code == 204
    r = c.post("/v1/sessions/refresh", json={"refresh_token": user["refresh_token"]})
    assert claims_of(r.json()["access_token"])["roles"] == ["editor", "reader"]
    user = r.json()
    assert_error(c.put(f"/v1/users/{uid}/roles", json={"roles": ["a,b"]}, token=admin["access_token"]), 400, "invalid_role")

    # A tenant: sign-up with org_name makes an org whose creator is its admin; other orgs' users are invisible.
    tenant_addr = sign_up(srv, mail, org_name="Acme")
    tenant = login(srv, tenant_addr)
    tc = claims_of(tenant["access_token"])
    assert tc["roles"] == ["admin"] and tc["org"] != claims_of(admin["access_token"])["org"]
    assert c.get("/v1/orgs/current", token=tenant["access_token"]).json()["name"] == "Acme"
    assert_error(c.put(f"/v1/users/{uid}/roles", json={"roles": ["x"]}, token=tenant["access_token"]), 404, "user_not_found")
    assert uid not in {u["id"] for u in c.get("/v1/users", params={"email": addr}, token=tenant["access_token"]).json()}

    assert c.post(f"/v1/users/{uid}/disable", token=admin["access_token"]).status_code == 204
    r = c.get("/v1/me", token=user["access_token"])
    assert r.status_code == 401 and r.headers["x-error-code"] in ("session_revoked", "subject_revoked")
    assert_error(c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}), 401, "invalid_credentials")





def test_concurrent_use_of_one_refresh_token(srv, mail):
    """Two requests racing with the same refresh token: at most one rotation succeeds, the other
    is a reuse, and the session ends revoked."""
    import threading

    t = login(srv, sign_up(srv, mail))
    results = []
    barrier = threading.Barrier(4)

    def go():
        c = srv.client()
        barrier.wait()
        results.append(c.post("/v1/sessions/refresh", json={"refresh_token": t["refresh_token"]}))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) <= 1, [r.text for r in results]
    assert any(r.status_code == 401 and r.headers["x-error-code"] == "refresh_token_reused" for r in results)
    for r in ok:
        assert_error(srv.client().post("/v1/sessions/refresh", json={"refresh_token": r.json()["refresh_token"]}), 401, "session_revoked")
