"""Passkeys in Chromium with its virtual authenticator (DevTools WebAuthn domain): registered on
the account page, then signing in alone (user verification: multi-factor); a passkey of another
account refused; nothing in a challenge tells whether an address has passkeys; with user
verification only preferred, a security key without a PIN is a second step, never the first."""

import re

import pytest
import requests
from pages_harness import localhost_server, log_in_in_browser, shot, sign_up_in_browser

from authsrv import PASSWORD, api_key, key_headers, login, new_email, sign_up


def with_authenticator(browser, options):
    """A page whose browser has a virtual authenticator with these options (automatic presence);
    `page.credentials()` lists what it holds. Returns (page, context)."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(15000)
    cdp = ctx.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    auth_id = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**options, "protocol": "ctap2", "automaticPresenceSimulation": True}})["authenticatorId"]
    page.credentials = lambda: cdp.send("WebAuthn.getCredentials", {"authenticatorId": auth_id})["credentials"]
    return page, ctx


@pytest.fixture
def authenticator(browser):
    """A platform authenticator with user verification (as a laptop's fingerprint reader) and
    discoverable credentials."""
    page, ctx = with_authenticator(browser, {"transport": "internal", "hasResidentKey": True, "hasUserVerification": True, "isUserVerified": True})
    yield page
    ctx.close()


def add_passkey(page, name):
    page.get_by_label("Name of the new passkey").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(re.compile(r"/account\?done=passkey_added$"))


def sign_in_with_passkey(page, srv, email_addr):
    page.goto(srv.url + "/login")
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/step"))
    page.get_by_role("button", name="Sign in with a passkey").click()


def test_passkey_added_on_the_account_page_signs_in_alone(authenticator, localhost_srv, mail):
    page, srv = authenticator, localhost_srv
    email_addr = new_email("passkey")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    add_passkey(page, "laptop")
    row = page.locator("tr[data-passkey='laptop']")
    assert row.count() == 1 and "never" in row.inner_text()
    creds = page.credentials()
    assert len(creds) == 1 and creds[0]["isResidentCredential"], creds
    assert creds[0]["rpId"] == "localhost"
    shot(page, "account-passkeys")

    page.get_by_role("button", name="Sign out").first.click()
    page.wait_for_url(re.compile(r"/login\?done=logout$"))
    sign_in_with_passkey(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email_addr
    # The session says how: a user-verified passkey, multi-factor.
    sessions = page.evaluate("fetch('/v1/sessions', {credentials: 'same-origin'}).then(r => r.json())")
    current = next(s for s in sessions if s["current"])
    assert current["amr"] == ["hwk", "mfa"], current
    # The signature counter moved and the use is recorded.
    assert page.credentials()[0]["signCount"] >= 2
    assert "never" not in page.locator("tr[data-passkey='laptop']").inner_text()

    # Removing it needs the recent login this session has; then it no longer signs in.
    page.get_by_role("button", name="Remove passkey laptop").click()
    page.wait_for_url(re.compile(r"/account\?done=passkey_removed$"))
    page.get_by_role("button", name="Sign out").first.click()
    page.wait_for_url(re.compile(r"/login\?done=logout$"))
    sign_in_with_passkey(page, srv, email_addr)
    page.wait_for_selector("[role=alert]")
    assert "passkey was not accepted" in page.locator("[role=alert]").inner_text()


def test_a_passkey_of_another_account_does_not_sign_in_this_address(authenticator, localhost_srv, mail):
    page, srv = authenticator, localhost_srv
    owner, victim = new_email("pkowner"), new_email("pkvictim")
    sign_up_in_browser(page, srv, mail, victim)
    sign_up_in_browser(page, srv, mail, owner)
    log_in_in_browser(page, srv, owner)
    page.wait_for_url(srv.url + "/account")
    add_passkey(page, "mine")
    page.get_by_role("button", name="Sign out").first.click()
    page.wait_for_url(re.compile(r"/login\?done=logout$"))
    # The login started for the victim's address; the authenticator holds only the owner's passkey.
    with page.expect_response(lambda r: r.url.endswith("/login/step") and r.request.method == "POST") as info:
        sign_in_with_passkey(page, srv, victim)
    assert info.value.status == 401 and info.value.headers["x-error-code"] == "invalid_credentials"
    page.wait_for_selector("[role=alert]")
    page.goto(srv.url + "/account")
    assert "/login?return_to=" in page.url


def test_passkey_challenges_are_the_same_for_every_address(localhost_srv, mail):
    """Discoverable sign-in: no account's credential ids are ever sent, so a challenge says
    nothing about whether an address exists or has passkeys; a forged answer is refused."""
    c = localhost_srv.client()

    def challenge(email_addr):
        r = c.post("/v1/auth/init", json={"email": email_addr})
        assert r.status_code == 200 and "passkey" in r.json()["methods"], r.text
        tok = r.headers["x-session-token"]
        r = c.post("/v1/auth/authenticate", json={"method": "passkey"}, headers={"x-session-token": tok})
        assert r.status_code == 200 and r.json()["status"] == "passkey_challenge", r.text
        return tok, r.json()["options"]["publicKey"]

    _, unknown = challenge(new_email("nobody"))
    tok, known = challenge(new_email("someone"))
    for opts in (unknown, known):
        assert not opts.get("allowCredentials") and opts["userVerification"] == "required" and opts["rpId"] == "localhost", opts
    assert set(unknown) == set(known)
    forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
              "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA", "userHandle": "AAAA"}, "extensions": {}}
    r = c.post("/v1/auth/authenticate", json={"method": "passkey", "credential": forged}, headers={"x-session-token": tok})
    assert r.status_code == 401 and r.headers["x-error-code"] == "invalid_credentials", r.text
    # The challenge was spent by that answer.
    r = c.post("/v1/auth/authenticate", json={"method": "passkey", "credential": forged}, headers={"x-session-token": tok})
    assert r.status_code == 400 and r.headers["x-error-code"] == "challenge_not_requested", r.text


def test_passkeys_are_off_when_the_host_is_an_ip_address(srv):
    r = requests.post(srv.url + "/v1/auth/init", json={"email": new_email("ip")}, timeout=10)
    assert "passkey" not in r.json()["methods"]


def test_passkeys_are_managed_only_by_their_own_account_with_a_user_session(authenticator, localhost_srv, mail):
    page, srv = authenticator, localhost_srv
    owner = new_email("pkself")
    sign_up_in_browser(page, srv, mail, owner)
    log_in_in_browser(page, srv, owner)
    page.wait_for_url(srv.url + "/account")
    add_passkey(page, "owned")
    action = page.locator("tr[data-passkey='owned'] form").get_attribute("action")
    passkey_id = re.search(r"/account/passkeys/([^/]+)/remove$", action).group(1)

    # Another account cannot remove it (404, as for an id that does not exist), nor finish a
    # registration started by someone else.
    other = sign_up(srv, mail)
    other_token = login(srv, other)["access_token"]
    c = srv.client()
    r = c.delete(f"/v1/me/passkeys/{passkey_id}", token=other_token)
    assert r.status_code == 404 and r.headers["x-error-code"] == "not_found", r.text
    third = sign_up(srv, mail)
    third_token = login(srv, third)["access_token"]
    started = c.post("/v1/me/passkeys/challenge", json={}, token=third_token)
    assert started.status_code == 200, started.text
    r = c.post("/v1/me/passkeys", json={"registration_id": started.json()["registration_id"], "name": "stolen", "credential": {}}, token=other_token)
    assert r.status_code == 400 and r.headers["x-error-code"] == "passkey_registration_invalid", r.text
    # An API key is not a person's session: it cannot list, add or remove passkeys.
    owner_token = login(srv, owner)["access_token"]
    key = api_key(srv, mail, owner_token, owner, [])
    for method, path in [("GET", "/v1/me/passkeys"), ("POST", "/v1/me/passkeys/challenge"), ("DELETE", f"/v1/me/passkeys/{passkey_id}")]:
        r = c.req(method, path, headers=key_headers(key), json={} if method == "POST" else None)
        assert r.status_code == 403 and r.headers["x-error-code"] == "user_session_required", (method, path, r.text)
    page.goto(srv.url + "/account")
    assert page.locator("tr[data-passkey='owned']").count() == 1


@pytest.fixture(scope="module")
def preferred_srv(backend):
    """A replica whose passkeys need not verify their user (`passkeys.user_verification =
    "preferred"`): security keys without a PIN are accepted, as one factor."""
    return localhost_server(backend, "work-localhost-preferred", AUTHGATE_PASSKEYS__USER_VERIFICATION="preferred")


@pytest.fixture
def security_key(browser):
    """A USB security key without user verification (no PIN) that keeps no discoverable
    credentials."""
    page, ctx = with_authenticator(browser, {"transport": "usb", "hasResidentKey": False, "hasUserVerification": False})
    yield page
    ctx.close()


def test_without_user_verification_a_passkey_is_a_second_step_only(security_key, preferred_srv, mail):
    page, srv = security_key, preferred_srv
    email_addr = new_email("seckey")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    add_passkey(page, "usb key")
    assert len(page.credentials()) == 1
    # The account's second step is the emailed code; the key may stand for it.
    tokens = login(srv, email_addr)
    r = requests.put(srv.url + "/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD},
                     headers={"authorization": f"Bearer {tokens['access_token']}"}, timeout=10)
    assert r.status_code == 204, r.text
    page.get_by_role("button", name="Sign out").first.click()
    page.wait_for_url(re.compile(r"/login\?done=logout$"))

    # Not offered first (by the API or the page), and refused if asked for first.
    r = requests.post(srv.url + "/v1/auth/init", json={"email": email_addr}, timeout=10)
    assert "passkey" not in r.json()["methods"]
    r = requests.post(srv.url + "/v1/auth/authenticate", json={"method": "passkey"}, headers={"x-session-token": r.headers["x-session-token"]}, timeout=10)
    assert r.status_code == 400 and r.headers["x-error-code"] == "method_not_allowed_now"
    page.goto(srv.url + "/login")
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/step"))
    assert page.get_by_role("button", name="Sign in with a passkey").count() == 0
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/login/step"))
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(srv.url + "/account")
    sessions = page.evaluate("fetch('/v1/sessions', {credentials: 'same-origin'}).then(r => r.json())")
    current = next(s for s in sessions if s["current"])
    assert current["amr"] == ["pwd", "hwk", "mfa"], current
