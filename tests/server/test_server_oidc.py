"""authgate as an OpenID Connect provider, driven by a real relying party (Authlib): code flow
with PKCE, ID tokens, userinfo, refresh, revocation, logout — and the attacks on each step
(redirect URIs, code replay and binding, PKCE, prompt, consent CSRF, mix-up, open redirects)."""

import base64
import json
import time
import urllib.parse as up

import pytest
import requests
from authsrv import PASSWORD, admin_user, assert_error, login, sign_up, within_recheck
from oidc_harness import RP_CALLBACK, RP_LOGGED_OUT, Browser, RelyingParty, assert_page_error, consent, form_fields, make_client


def query(location):
    return dict(up.parse_qsl(up.urlsplit(location).query))


def claims_of(jwt_text):
    part = jwt_text.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_of(jwt_text):
    part = jwt_text.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture(scope="module")
def admin(srv):
    return admin_user(srv)[1]["access_token"]


def code_for(browser, rp, **extra):
    """Runs the browser through the authorization URL (consenting if asked); returns the redirect
    back to the relying party."""
    r = browser.authorize(rp.authorization_url(**extra))
    if r.status_code == 200:
        r = consent(browser, r)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return r.headers["location"]


def test_authlib_code_flow_with_pkce_id_token_userinfo_refresh_and_logout(srv, mail, admin):
    client = make_client(srv, admin, post_logout_redirect_uris=[RP_LOGGED_OUT])
    assert client["grant_types"] == ["authorization_code", "refresh_token"] and client["require_pkce"] is True
    rp = RelyingParty(srv, client)
    disc = rp.disc
    assert disc["authorization_endpoint"] == srv.issuer + "/oauth2/authorize"
    assert disc["code_challenge_methods_supported"] == ["S256"] and disc["response_types_supported"] == ["code"]
    assert disc["authorization_response_iss_parameter_supported"] is True

    email = sign_up(srv, mail)
    browser = Browser(srv).log_in(email)
    # A third-party app: the person is asked first.
    page = browser.authorize(rp.authorization_url())
    assert "Relying Party" in page.text and "See your email address" in page.text
    assert "form-action 'self' https://rp.example" in page.headers["content-security-policy"]
    back = consent(browser, page)
    location = back.headers["location"]
    assert location.startswith(RP_CALLBACK + "?")
    q = query(location)
    # RFC 9207: the response names its issuer (mix-up defence); state comes back unchanged.
    assert q["iss"] == srv.issuer and q["state"] == rp.state and q["code"].startswith("ac_")

    token = rp.exchange(location)
    assert token["token_type"] == "Bearer" and token["scope"] == "openid email" and token["refresh_token"].startswith("rt_")
    claims = rp.validate_id_token(token["id_token"])
    assert claims["aud"] == client["client_id"] and claims["azp"] == client["client_id"] and claims["nonce"] == rp.nonce
    assert claims["email"] == email and claims["email_verified"] is True and claims["amr"] == ["pwd"] and claims["auth_time"] <= claims["iat"]
    assert header_of(token["id_token"])["typ"] == "JWT"
    # The nonce of another flow does not validate this ID token (replayed ID tokens are caught).
    with pytest.raises(Exception):
        rp.validate_id_token(token["id_token"], nonce="another-nonce")

    # The access token is the gateways' RFC 9068 token, naming the client and the scope, without
    # the person's roles (a third-party app acts with its scopes only).
    at = claims_of(token["access_token"])
    assert header_of(token["access_token"])["typ"] == "at+jwt"
    assert at["aud"] == "api" and at["client_id"] == client["client_id"] and at["scope"] == "openid email" and at["sub"] == claims["sub"]
    assert not at.get("roles")
    c = srv.client()
    info = c.get("/oauth2/userinfo", token=token["access_token"])
    assert info.status_code == 200 and info.json() == {"sub": claims["sub"], "org": at["org"], "email": email, "email_verified": True}
    # The app cannot manage the person's account with it, nor is an ID token an access token.
    assert_error(c.get("/v1/me", token=token["access_token"]), 403, "user_session_required")
    assert_error(c.get("/v1/me", token=token["id_token"]), 401)
    assert_error(c.get("/oauth2/userinfo", token=login(srv, email)["access_token"]), 403, "insufficient_scope")

    # Refresh through Authlib: rotated, and the spent token replayed revokes the session.
    old_refresh = token["refresh_token"]
    fresh = rp.session.refresh_token(disc["token_endpoint"], refresh_token=old_refresh)
    fresh_claims = claims_of(fresh["id_token"])
    assert fresh["refresh_token"] != old_refresh and fresh_claims["sub"] == claims["sub"] and "nonce" not in fresh_claims
    assert c.get("/oauth2/userinfo", token=fresh["access_token"]).status_code == 200
    r = requests.post(disc["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": old_refresh},
                      auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert_error(r, 400, "invalid_grant")
    r = requests.post(disc["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]},
                      auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert_error(r, 400, "invalid_grant")

    # Consent is remembered: the next sign-in goes straight back with a code.
    rp2 = RelyingParty(srv, client)
    r = browser.authorize(rp2.authorization_url())
    assert r.status_code == 303 and query(r.headers["location"])["state"] == rp2.state
    token2 = rp2.exchange(r.headers["location"])
    assert rp2.validate_id_token(token2["id_token"])["nonce"] == rp2.nonce != rp.nonce

    # RP-initiated logout: confirmed on our page, then back to the registered URI with state.
    logout = disc["end_session_endpoint"] + "?" + up.urlencode(
        {"post_logout_redirect_uri": RP_LOGGED_OUT, "id_token_hint": token2["id_token"], "state": "bye"})
    page = browser.get(logout)
    assert page.status_code == 200 and "Sign out" in page.text
    assert "form-action 'self' https://rp.example" in page.headers["content-security-policy"]
    f = form_fields(page.text)
    r = browser.post_form("/oauth2/logout", f)
    assert r.status_code == 303 and r.headers["location"] == RP_LOGGED_OUT + "?state=bye"
    # Signed out: a silent request now needs a login.
    rp3 = RelyingParty(srv, client)
    r = browser.authorize(rp3.authorization_url(prompt="none"))
    q = query(r.headers["location"])
    assert r.headers["location"].startswith(RP_CALLBACK) and q["error"] == "login_required" and q["state"] == rp3.state and q["iss"] == srv.issuer


def test_redirect_uri_must_match_exactly_and_errors_never_reach_other_sites(srv, mail, admin):
    client = make_client(srv, admin)
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client)
    base = rp.authorization_url()
    for bad in [
        "https://evil.example/callback",
        RP_CALLBACK + "/",
        RP_CALLBACK + "/../callback",
        RP_CALLBACK + "?next=https://evil.example",
        RP_CALLBACK + "extra",
        "https://rp.example/call",
        "https://RP.example/callback",
        "https://rp.example.evil.example/callback",
        "http://rp.example/callback",
    ]:
        url = base.replace(up.quote(RP_CALLBACK, safe=""), up.quote(bad, safe=""))
        assert up.quote(bad, safe="") in url
        r = browser.get(url)
        assert_page_error(r, 400, "invalid_redirect_uri")
        assert "location" not in r.headers
    # Another parameter repeated with an unregistered redirect URI: still a page, no redirect.
    evil = base.replace(up.quote(RP_CALLBACK, safe=""), up.quote("https://evil.example/cb", safe="")) + "&state=again"
    r = browser.get(evil)
    assert_page_error(r, 400, "invalid_redirect_uri")
    assert "location" not in r.headers
    # A repeated redirect_uri is refused outright too.
    r = browser.get(base + "&redirect_uri=" + up.quote("https://evil.example/cb", safe=""))
    assert_page_error(r, 400, "invalid_request")
    assert "location" not in r.headers
    # An unknown client: shown, not redirected.
    r = browser.get(base.replace(client["client_id"], "cli_unknown"))
    assert_page_error(r, 400, "invalid_client")
    # Registration refuses what could never be matched safely.
    for uri in ["http://rp.example/cb", "https://rp.example/cb#x", "javascript:alert(1)", "https://u@rp.example/cb", "myapp:/cb"]:
        r = srv.client().post("/v1/clients", json={"name": "x", "redirect_uris": [uri]}, token=admin)
        assert_error(r, 400, "invalid_redirect_uri")
    for field, value, code in [("id_token_alg", "none", "invalid_id_token_alg"), ("id_token_alg", "HS256", "invalid_id_token_alg"),
                               ("grant_types", ["implicit"], "invalid_grant_types"), ("access_ttl_s", 10**9, "invalid_ttl")]:
        r = srv.client().post("/v1/clients", json={"name": "x", "redirect_uris": [RP_CALLBACK], field: value}, token=admin)
        assert_error(r, 400, code)


def test_errors_after_the_redirect_uri_go_back_with_state_and_iss(srv, mail, admin):
    client = make_client(srv, admin)
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client)
    for params, error in [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid platform_admin"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"prompt": "none login"}, "invalid_request"),
    ]:
        url = rp.authorization_url()
        parts = dict(up.parse_qsl(up.urlsplit(url).query))
        parts.update(params)
        r = browser.get(rp.disc["authorization_endpoint"] + "?" + up.urlencode(parts))
        assert r.status_code == 303, (params, r.status_code, r.text[:200])
        q = query(r.headers["location"])
        assert r.headers["location"].startswith(RP_CALLBACK + "?") and q["error"] == error and q["state"] == rp.state and q["iss"] == srv.issuer
        assert "code" not in q
    # Without PKCE: refused for every client by default.
    parts = dict(up.parse_qsl(up.urlsplit(rp.authorization_url()).query))
    del parts["code_challenge"], parts["code_challenge_method"]
    r = browser.get(rp.disc["authorization_endpoint"] + "?" + up.urlencode(parts))
    assert query(r.headers["location"])["error"] == "invalid_request"


def test_code_is_single_use_bound_to_client_redirect_and_verifier(srv, mail, admin):
    client = make_client(srv, admin)
    other = make_client(srv, admin, name="Other app")
    email = sign_up(srv, mail)
    browser = Browser(srv).log_in(email)
    token_url = srv.url + "/oauth2/token"

    def exchange(c, code, verifier, redirect_uri=RP_CALLBACK):
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            data["code_verifier"] = verifier
        return requests.post(token_url, data=data, auth=(c["client_id"], c["client_secret"]), timeout=10)

    # Replay: the second exchange fails and what the first one got is revoked.
    rp = RelyingParty(srv, client)
    code = query(code_for(browser, rp))["code"]
    first = exchange(client, code, rp.verifier)
    assert first.status_code == 200, first.text
    assert_error(exchange(client, code, rp.verifier), 400, "invalid_grant")
    assert_error(srv.client().get("/oauth2/userinfo", token=first.json()["access_token"]), 401, "session_revoked")
    r = requests.post(token_url, data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
                      auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert_error(r, 400, "invalid_grant")

    # Each binding, on a fresh code each time (a failed exchange spends the code).
    for attempt in ["other_client", "no_verifier", "wrong_verifier", "challenge_as_verifier", "other_redirect", "no_redirect"]:
        rp = RelyingParty(srv, client)
        location = code_for(browser, rp)
        code = query(location)["code"]
        challenge = dict(up.parse_qsl(up.urlsplit(rp.session.create_authorization_url("x", code_verifier=rp.verifier)[0]).query))["code_challenge"]
        r = {
            "other_client": lambda: exchange(other, code, rp.verifier),
            "no_verifier": lambda: exchange(client, code, None),
            "wrong_verifier": lambda: exchange(client, code, rp.verifier[:-1] + ("A" if rp.verifier[-1] != "A" else "B")),
            "challenge_as_verifier": lambda: exchange(client, code, challenge),
            "other_redirect": lambda: exchange(client, code, rp.verifier, redirect_uri="https://rp.example/other"),
            "no_redirect": lambda: exchange(client, code, rp.verifier, redirect_uri=""),
        }[attempt]()
        assert_error(r, 400, "invalid_grant")
        # And the code is gone for its rightful owner too.
        assert_error(exchange(client, code, rp.verifier), 400, "invalid_grant")
    # Wrong secret, or a secret for a public client: invalid_client (401).
    r = requests.post(token_url, data={"grant_type": "authorization_code", "code": "ac_x", "redirect_uri": RP_CALLBACK},
                      auth=(client["client_id"], "cs_wrong"), timeout=10)
    assert_error(r, 401, "invalid_client")
    r = requests.post(token_url, data={"grant_type": "authorization_code", "code": "ac_x", "client_id": client["client_id"]}, timeout=10)
    assert_error(r, 401, "invalid_client")
    r = requests.post(token_url, data="grant_type=authorization_code&grant_type=client_credentials",
                      headers={"content-type": "application/x-www-form-urlencoded"}, auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert_error(r, 400, "invalid_request")


def test_public_client_uses_pkce_without_a_secret(srv, mail, admin):
    client = make_client(srv, admin, public=True)
    assert "client_secret" not in client and client["public"] is True
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client)
    token = rp.exchange(code_for(browser, rp))
    assert rp.validate_id_token(token["id_token"])["aud"] == client["client_id"]
    # Its refresh token works with its client_id alone, and only for it.
    r = requests.post(srv.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                                                       "client_id": client["client_id"]}, timeout=10)
    assert r.status_code == 200, r.text
    refreshed = r.json()["refresh_token"]
    # A public client cannot use client_credentials (no secret to prove anything).
    r = requests.post(srv.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": client["client_id"]}, timeout=10)
    assert_error(r, 400, "unauthorized_client")
    # A login session's refresh token is not a client's, and a client's is not a login's.
    own = login(srv, sign_up(srv, mail))
    r = requests.post(srv.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": own["refresh_token"],
                                                       "client_id": client["client_id"]}, timeout=10)
    assert_error(r, 400, "invalid_grant")
    assert_error(srv.client().post("/v1/sessions/refresh", json={"refresh_token": refreshed}), 401, "invalid_refresh_token")


def test_prompt_none_login_and_the_login_pages(srv, mail, admin):
    client = make_client(srv, admin)
    email = sign_up(srv, mail)
    anonymous = Browser(srv)
    rp = RelyingParty(srv, client)
    r = anonymous.authorize(rp.authorization_url(prompt="none"))
    assert query(r.headers["location"])["error"] == "login_required"
    # Without a session: the login page, which returns to the kept request.
    r = anonymous.authorize(rp.authorization_url(login_hint=email))
    assert r.status_code == 200 and 'action="/login"' in r.text and f'value="{email}"' in r.text
    assert "form-action 'self' https://rp.example" in r.headers["content-security-policy"]
    return_to = form_fields(r.text)["return_to"]
    assert return_to.startswith("/oauth2/continue?id=")
    # Signed in: prompt=login still asks for a new sign-in, and then continues.
    browser = Browser(srv).log_in(email)
    rp = RelyingParty(srv, client)
    r = browser.get(rp.authorization_url(prompt="login"))
    assert r.status_code == 303 and r.headers["location"].startswith("/login?return_to=%2Foauth2%2Fcontinue")
    cont = query(r.headers["location"])["return_to"]
    r = browser.get(cont)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?"), "the old sign-in does not satisfy prompt=login"
    browser.log_in(email)
    r = browser.authorize(cont)
    r = consent(browser, r)
    assert query(r.headers["location"])["state"] == rp.state
    # A kept request is single use.
    assert_page_error(browser.get(cont), 400, "authorization_request_expired")
    # prompt=none with a session but no consent: consent_required.
    other = make_client(srv, admin, name="Never consented")
    rp = RelyingParty(srv, other)
    r = browser.authorize(rp.authorization_url(prompt="none"))
    assert query(r.headers["location"])["error"] == "consent_required"


def test_consent_form_refuses_csrf_and_deny_goes_back_with_access_denied(srv, mail, admin):
    client = make_client(srv, admin)
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client)
    page = browser.authorize(rp.authorization_url())
    f = form_fields(page.text)
    assert_page_error(browser.post_form("/oauth2/consent", {**f, "decision": "allow"}, origin="https://evil.example", site="cross-site"), 403, "csrf_origin_mismatch")
    assert_page_error(browser.post_form("/oauth2/consent", {**f, "decision": "allow", "csrf": "forged"}), 403, "csrf_token_invalid")
    # Another person's session cannot answer this person's consent with their own token.
    intruder = Browser(srv).log_in(sign_up(srv, mail))
    assert_page_error(intruder.post_form("/oauth2/consent", {**f, "decision": "allow"}), 403, "csrf_token_invalid")
    r = browser.post_form("/oauth2/consent", {**f, "decision": "deny"})
    q = query(r.headers["location"])
    assert q["error"] == "access_denied" and q["state"] == rp.state and "code" not in q


def test_first_party_apps_skip_consent_for_their_own_members_only(srv, mail):
    admin_email, admin_tokens = admin_user(srv, roles=("admin", "editor"))
    client = make_client(srv, admin_tokens["access_token"], first_party=True, name="Our own app")
    # A member of the same organisation: no consent, and the token carries their roles.
    browser = Browser(srv).log_in(admin_email)
    rp = RelyingParty(srv, client)
    r = browser.authorize(rp.authorization_url())
    assert r.status_code == 303, r.text[:300]
    at = claims_of(rp.exchange(r.headers["location"])["access_token"])
    assert sorted(at["roles"]) == ["admin", "editor"]
    # Someone of another organisation is asked, and their token carries no roles.
    other_org = json.loads(srv.cli("admin", "create-org", "--name", "Other organisation").stdout)["org_id"]
    outsider_email, _ = admin_user(srv, roles=("admin",), org=other_org)
    outsider = Browser(srv).log_in(outsider_email)
    rp2 = RelyingParty(srv, client)
    page = outsider.authorize(rp2.authorization_url())
    assert page.status_code == 200 and "wants to sign you in" in page.text
    at = claims_of(rp2.exchange(consent(outsider, page).headers["location"])["access_token"])
    assert not at.get("roles") and at["org"] != claims_of(admin_tokens["access_token"])["org"]


def test_consent_and_client_revocation_end_the_apps_sessions(srv, mail, admin):
    client = make_client(srv, admin)
    email = sign_up(srv, mail)
    browser = Browser(srv).log_in(email)
    rp = RelyingParty(srv, client)
    token = rp.exchange(code_for(browser, rp))
    me = login(srv, email)["access_token"]
    c = srv.client()
    listed = c.get("/v1/me/consents", token=me).json()
    assert [x["client_id"] for x in listed] == [client["client_id"]] and listed[0]["scope"] == "openid email"
    assert c.delete(f"/v1/me/consents/{client['client_id']}", token=me).status_code == 204
    assert_error(c.get("/oauth2/userinfo", token=token["access_token"]), 401, "session_revoked")
    assert_error(c.delete(f"/v1/me/consents/{client['client_id']}", token=me), 404, "consent_not_found")
    # RFC 7009: a client revokes its own refresh token; another client's token is left alone.
    rp = RelyingParty(srv, client)
    token = rp.exchange(code_for(browser, rp))
    other = make_client(srv, admin, name="Other")
    r = requests.post(srv.url + "/oauth2/revoke", data={"token": token["refresh_token"]}, auth=(other["client_id"], other["client_secret"]), timeout=10)
    assert r.status_code == 200
    assert c.get("/oauth2/userinfo", token=token["access_token"]).status_code == 200
    r = requests.post(srv.url + "/oauth2/revoke", data={"token": token["refresh_token"]}, auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert r.status_code == 200
    assert_error(c.get("/oauth2/userinfo", token=token["access_token"]), 401, "session_revoked")
    # Revoking the client ends every session it holds.
    rp = RelyingParty(srv, client)
    token = rp.exchange(code_for(browser, rp))
    assert c.delete(f"/v1/clients/{client['client_id']}", token=admin).status_code == 204
    assert_error(c.get("/oauth2/userinfo", token=token["access_token"]), 401, "session_revoked")
    assert_page_error(browser.get(rp.authorization_url()), 400, "invalid_client")


def test_post_logout_redirect_must_be_registered(srv, mail, admin):
    client = make_client(srv, admin, post_logout_redirect_uris=[RP_LOGGED_OUT])
    browser = Browser(srv).log_in(sign_up(srv, mail))
    for uri in ["https://evil.example/", RP_LOGGED_OUT + "/x", RP_CALLBACK]:
        r = browser.get("/oauth2/logout?" + up.urlencode({"post_logout_redirect_uri": uri, "client_id": client["client_id"]}))
        assert_page_error(r, 400, "invalid_post_logout_redirect_uri")
    r = browser.get("/oauth2/logout?" + up.urlencode({"post_logout_redirect_uri": RP_LOGGED_OUT}))
    assert_page_error(r, 400, "invalid_post_logout_redirect_uri")
    # A cross-site form cannot sign anyone out.
    page = browser.get("/oauth2/logout?" + up.urlencode({"post_logout_redirect_uri": RP_LOGGED_OUT, "client_id": client["client_id"]}))
    f = form_fields(page.text)
    assert_page_error(browser.post_form("/oauth2/logout", f, origin="https://evil.example", site="cross-site"), 403, "csrf_origin_mismatch")
    assert browser.get("/v1/me").status_code == 200


def test_id_tokens_in_each_clients_algorithm_and_their_keys_rotate(backend, mail):
    srv = backend.isolated().server(AUTHGATE_OIDC__ID_TOKEN_ALGS='["ES256", "RS256"]')
    admin = admin_user(srv)[1]["access_token"]
    disc = requests.get(srv.url + "/.well-known/openid-configuration", timeout=10).json()
    assert disc["id_token_signing_alg_values_supported"] == ["ES256", "EdDSA", "RS256"]
    assert disc["access_token_signing_alg_values_supported"] == ["EdDSA"]
    browser = Browser(srv).log_in(sign_up(srv, mail))
    kids = {}
    for alg in ["ES256", "RS256", None]:
        client = make_client(srv, admin, **({"id_token_alg": alg} if alg else {}))
        rp = RelyingParty(srv, client)
        token = rp.exchange(code_for(browser, rp))
        rp.validate_id_token(token["id_token"])
        header = header_of(token["id_token"])
        assert header["alg"] == (alg or "EdDSA"), header
        # Access tokens keep the server's algorithm whatever the client's ID tokens use.
        assert header_of(token["access_token"])["alg"] == "EdDSA"
        kids[alg] = (client, header["kid"])
    # Rotation replaces the ID-token keys too; the old ones stay published for what they signed.
    out = json.loads(srv.cli("keys", "rotate", "--activate-in", "0").stdout)
    assert out["alg"] == "EdDSA"
    deadline = time.time() + 10
    while True:
        client, old_kid = kids["ES256"]
        rp = RelyingParty(srv, client)
        token = rp.exchange(code_for(browser, rp))
        if header_of(token["id_token"])["kid"] != old_kid or time.time() > deadline:
            break
        time.sleep(0.5)
    assert header_of(token["id_token"])["kid"] != old_kid and header_of(token["id_token"])["alg"] == "ES256"
    rp.validate_id_token(token["id_token"])
    published = {k["kid"] for k in requests.get(disc["jwks_uri"], timeout=10).json()["keys"]}
    assert old_kid in published and header_of(token["id_token"])["kid"] in published


def test_native_app_with_a_private_use_scheme(srv, mail, admin):
    callback = "com.example.notes:/oauth/callback"
    client = make_client(srv, admin, public=True, redirect_uris=[callback], name="Notes for phones")
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client, redirect_uri=callback)
    page = browser.authorize(rp.authorization_url())
    # The consent form's redirect ends in the app's scheme: allowed as a form target, nothing wider.
    assert "form-action 'self' com.example.notes:;" in page.headers["content-security-policy"]
    location = consent(browser, page).headers["location"]
    assert location.startswith(callback + "?code=ac_")
    token = rp.exchange(location)
    assert rp.validate_id_token(token["id_token"])["aud"] == client["client_id"] and "refresh_token" in token


def test_the_operator_manages_clients_of_any_organisation_with_the_cli(srv, mail):
    org = json.loads(srv.cli("admin", "create-org", "--name", "Client org").stdout)["org_id"]
    out = srv.cli("clients", "create", "--org", org, "--name", "CLI app", "--redirect-uri", RP_CALLBACK, "--scope", "notes:read")
    client = json.loads(out.stdout)
    assert client["client_secret"].startswith("cs_") and client["redirect_uris"] == [RP_CALLBACK] and client["scopes"] == ["notes:read"]
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client, scope="openid notes:read")
    token = rp.exchange(code_for(browser, rp))
    assert claims_of(token["access_token"])["scope"] == "openid notes:read"
    listed = json.loads(srv.cli("clients", "list", "--org", org).stdout)
    assert [c["client_id"] for c in listed] == [client["client_id"]] and "client_secret" not in listed[0]
    # Bad input: a clear error naming what is wrong, nothing registered.
    bad = srv.cli("clients", "create", "--org", org, "--name", "x", "--redirect-uri", "http://evil.example/cb", check=False)
    assert bad.returncode != 0 and "redirect_uris[0]" in bad.stderr
    bad = srv.cli("clients", "create", "--org", org, "--name", "x", "--role", "platform_admin", check=False)
    assert bad.returncode != 0 and "platform role" in bad.stderr
    bad = srv.cli("clients", "create", "--org", "org_nope", "--name", "x", check=False)
    assert bad.returncode != 0 and "--org" in bad.stderr
    assert len(json.loads(srv.cli("clients", "list", "--org", org).stdout)) == 1
    srv.cli("clients", "revoke", "--id", client["client_id"])
    userinfo = lambda: srv.client().get("/oauth2/userinfo", token=token["access_token"])  # noqa: E731
    assert_error(within_recheck(userinfo, 401), 401, "session_revoked")
    assert srv.cli("clients", "revoke", "--id", client["client_id"], check=False).returncode != 0


def test_a_code_raced_by_parallel_exchanges_gives_at_most_one_and_then_nothing_lives(srv, mail, admin):
    import concurrent.futures

    client = make_client(srv, admin)
    browser = Browser(srv).log_in(sign_up(srv, mail))
    rp = RelyingParty(srv, client)
    code = query(code_for(browser, rp))["code"]

    def exchange(_):
        return requests.post(srv.url + "/oauth2/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": RP_CALLBACK,
                                                              "code_verifier": rp.verifier},
                             auth=(client["client_id"], client["client_secret"]), timeout=20)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(exchange, range(6)))
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) <= 1 and all(r.status_code in (200, 400) for r in answers), [r.status_code for r in answers]
    assert all(r.json()["error"] == "invalid_grant" for r in answers if r.status_code == 400)
    # The code was presented more than once: whatever one exchange got is revoked.
    for r in ok:
        assert_error(srv.client().get("/oauth2/userinfo", token=r.json()["access_token"]), 401, "session_revoked")


def test_token_endpoint_limits_failed_client_authentication_not_busy_servers(backend, srv, admin):
    # The client is registered on the shared server; the strict replica shares its database.
    r = srv.client().post("/v1/clients", json={"name": "busy backend"}, token=admin)
    assert r.status_code == 201, r.text
    machine = r.json()
    srv = backend.server(AUTHGATE_RATE_LIMITS__AUTH_PER_IP="3")
    busy, guesser = srv.client(), srv.client()
    # A server exchanging for many people from one address is not limited by its volume.
    for _ in range(8):
        r = busy.req("POST", "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(machine["client_id"], machine["client_secret"]))
        assert r.status_code == 200, r.text
    for _ in range(3):
        r = guesser.req("POST", "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(machine["client_id"], "cs_guess"))
        assert_error(r, 401, "invalid_client")
    # Then even the right secret is refused from that address for the window; others go on.
    r = guesser.req("POST", "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(machine["client_id"], machine["client_secret"]))
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    r = guesser.req("POST", "/oauth2/revoke", data={"token": "x"}, auth=(machine["client_id"], machine["client_secret"]))
    assert_error(r, 429, "rate_limited")
    r = busy.req("POST", "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(machine["client_id"], machine["client_secret"]))
    assert r.status_code == 200


def test_max_age_asks_for_a_recent_sign_in(srv, mail, admin):
    client = make_client(srv, admin, first_party=True)
    email = sign_up(srv, mail)
    browser = Browser(srv).log_in(email)
    time.sleep(1.1)
    rp = RelyingParty(srv, client)
    r = browser.get(rp.authorization_url(max_age="0"))
    assert r.status_code == 303 and r.headers["location"].startswith("/login?return_to=%2Foauth2%2Fcontinue"), r.headers.get("location")
    cont = query(r.headers["location"])["return_to"]
    browser.log_in(email)
    r = browser.authorize(cont)
    assert r.status_code == 303 and r.headers["location"].startswith(RP_CALLBACK)
    token = rp.exchange(r.headers["location"])
    claims = rp.validate_id_token(token["id_token"])
    assert claims["auth_time"] >= claims["iat"] - 5
    # prompt=none with a sign-in older than max_age: login_required, no page.
    time.sleep(1.1)
    rp = RelyingParty(srv, client)
    r = browser.get(rp.authorization_url(max_age="0", prompt="none"))
    assert query(r.headers["location"])["error"] == "login_required"


def test_the_profile_scope_gives_the_display_name_at_userinfo(srv, mail, admin):
    client = make_client(srv, admin, public=True)
    email = sign_up(srv, mail)
    own = login(srv, email)["access_token"]
    assert srv.client().req("PATCH", "/v1/me", json={"name": "Ada L."}, token=own).status_code == 200
    browser = Browser(srv).log_in(email)
    with_profile = RelyingParty(srv, client, scope="openid profile")
    token = with_profile.exchange(code_for(browser, with_profile))
    info = srv.client().get("/oauth2/userinfo", token=token["access_token"]).json()
    assert info["name"] == "Ada L." and "email" not in info
    # Without the scope, no name.
    without = RelyingParty(srv, client, scope="openid email")
    token = without.exchange(code_for(browser, without))
    assert "name" not in srv.client().get("/oauth2/userinfo", token=token["access_token"]).json()
