"""The hosted pages clicked through in Chromium: sign-up with the emailed code, login, the
account page, an API key created, used and revoked; and the attacks a page invites — forms sent
from another origin, forms without their token, `return_to` open redirects, framing."""

import http.server
import re
import threading
import time

import pytest
import requests

from pages_harness import log_in_in_browser, shot, sign_up_in_browser

from authsrv import PASSWORD, admin_user, new_email, sign_up, totp_now


def test_sign_up_log_in_create_use_and_revoke_an_api_key(page, srv, mail):
    email_addr = new_email("pages")
    sign_up_in_browser(page, srv, mail, email_addr, shots=True)
    assert "Your email address is verified" in page.locator("[role=status]").inner_text()
    # The address is filled in from the sign-up.
    assert page.get_by_label("Email address").input_value() == email_addr

    log_in_in_browser(page, srv, email_addr, shots=True)
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email_addr
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["__Host-authgate_at"]["httpOnly"] and cookies["__Host-authgate_at"]["secure"]
    assert cookies["__Secure-authgate_rt"]["path"] == "/v1/sessions/refresh"
    assert "__Host-authgate_login" not in cookies, "the login cookie ends with the login"
    # The session the browser holds is this device's.
    assert page.get_by_text("this device").count() == 1

    page.get_by_label("Name", exact=True).fill("ci deploys")
    page.get_by_label("Lifetime in days").fill("7")
    mark = mail.mark()
    page.get_by_role("button", name="Create key").click()
    page.wait_for_url(re.compile(r"/account/api-keys/verify$"))
    shot(page, "api-key-verify")
    page.get_by_label("Code").fill(mail.code(email_addr, "", start=mark))
    page.get_by_role("button", name="Create the key").click()
    secret_field = page.locator("#secret")
    value = secret_field.input_value()
    assert value.startswith("ApiKey ")
    shot(page, "api-key-secret")

    # The key works as a credential...
    r = requests.get(srv.url + "/v1/sessions/validate", headers={"authorization": value}, timeout=10)
    assert r.status_code == 200 and r.json()["method"] == "api_key", r.text
    # ...the secret is never shown again...
    page.goto(srv.url + "/account")
    assert value.split(".", 1)[1] not in page.content()
    shot(page, "account")
    key_id = secret_field_key_id = value.split(" ", 1)[1].split(".", 1)[0]
    row = page.locator(f"tr[data-key-id='{secret_field_key_id}']")
    assert row.locator(".status").inner_text() == "active"
    # ...and revoking it from the page refuses it.
    row.get_by_role("button", name="Revoke ci deploys").click()
    page.wait_for_url(re.compile(r"/account\?done=key_revoked$"))
    assert page.locator(f"tr[data-key-id='{key_id}'] .status").inner_text() == "revoked"
    r = requests.get(srv.url + "/v1/sessions/validate", headers={"authorization": value}, timeout=10)
    assert r.status_code == 401 and r.headers["x-error-code"] == "api_key_revoked", r.text

    # Sign out: the session is revoked, the account page sends to the login.
    access = next(c["value"] for c in page.context.cookies() if c["name"] == "__Host-authgate_at")
    page.get_by_role("button", name="Sign out").first.click()
    page.wait_for_url(re.compile(r"/login\?done=logout$"))
    r = requests.get(srv.url + "/v1/me", headers={"authorization": f"Bearer {access}"}, timeout=10)
    assert r.status_code == 401
    page.goto(srv.url + "/account")
    assert "/login?return_to=%2Faccount" in page.url


def test_wrong_password_shows_the_api_error_with_its_headers(page, srv, mail):
    email_addr = new_email("wrongpw")
    sign_up_in_browser(page, srv, mail, email_addr)
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill("not the password at all")
    with page.expect_response(lambda r: r.url.endswith("/login/step") and r.request.method == "POST") as info:
        page.get_by_role("button", name="Sign in", exact=True).click()
    resp = info.value
    assert resp.status == 401
    assert resp.headers["x-error-code"] == "invalid_credentials" and resp.headers["x-error-id"]
    assert "email or password is wrong" in page.locator("[role=alert]").inner_text()
    # The password field is described by the error for screen readers.
    assert page.get_by_label("Password").get_attribute("aria-describedby") == "error"


def test_unknown_address_walks_the_same_pages(page, srv):
    log_in_in_browser(page, srv, new_email("nobody"), password="whatever it is 123")
    page.wait_for_url(re.compile(r"/login/step"))
    assert "email or password is wrong" in page.locator("[role=alert]").inner_text()


def test_keyboard_only_sign_in(page, srv, mail):
    email_addr = new_email("keys")
    sign_up_in_browser(page, srv, mail, email_addr)
    page.goto(srv.url + "/login")
    # The address field has focus on arrival (autofocus is applied on a later frame: wait for
    # it, not for a time); Enter submits; the password field has focus next.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'email'")
    page.keyboard.type(email_addr)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/login/step"))
    page.wait_for_function("document.activeElement && document.activeElement.id === 'password'")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(srv.url + "/account")
    # Tab reaches the skip link first, then the profile's buttons in reading order.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for control in ["totp-on", "name", "name-save", "new-email", "email-password", "email-send", "logout"]:
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == control


def test_return_to_goes_back_to_allowed_places_only(page, srv, mail):
    email_addr = new_email("rt")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr, return_to="/account?from=app")
    page.wait_for_url(srv.url + "/account?from=app")
    for bad in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http://127.0.0.1:9@evil.example/", "javascript:alert(1)"]:
        r = requests.get(srv.url + "/login", params={"return_to": bad}, timeout=10, allow_redirects=False)
        assert r.status_code == 400 and r.headers["x-error-code"] == "invalid_return_to", bad
        # Also when smuggled into the form after the page was served.
        r = requests.post(srv.url + "/login/step", data={"return_to": bad, "method": "password"}, timeout=10, allow_redirects=False)
        assert r.status_code == 400 and "location" not in r.headers, bad
    r = requests.get(srv.url + "/login", params={"return_to": "http://127.0.0.1:9/app"}, timeout=10)
    assert r.status_code == 200


class AttackerSite:
    """Another origin (same host, another port: same-site, so SameSite cookies do go along)
    serving pages that post forms at the auth-server."""

    def __init__(self, target):
        pages = {
            "/logout": f'<form method=post action="{target}/account/logout"><input name=csrf value=x></form>',
            "/key": f'<form method=post action="{target}/account/api-keys"><input name=name value=evil><input name=days value=1></form>',
            "/login": f'<form method=post action="{target}/login"><input name=email value=victim@example.com></form>',
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = (pages[self.path] + "<script>document.forms[0].submit()</script>").encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def attacker(srv):
    site = AttackerSite(srv.url)
    yield site
    site.close()


def test_forms_from_another_origin_are_refused(page, srv, mail, attacker):
    email_addr = new_email("csrf")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    for path, target in [("/logout", "/account/logout"), ("/key", "/account/api-keys"), ("/login", "/login")]:
        with page.expect_response(lambda r: r.url.endswith(target) and r.request.method == "POST") as info:
            page.goto(attacker.url + path)
        assert info.value.status == 403 and info.value.headers["x-error-code"] == "csrf_origin_mismatch", path
    # Still signed in, and no key was asked for.
    page.goto(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email_addr
    assert page.get_by_text("No API keys yet.").count() == 1


def test_forms_without_their_token_are_refused(srv):
    # No browser: no Origin, no form cookie. The login form needs the browser's form token.
    r = requests.post(srv.url + "/login", data={"email": "a@example.com"}, timeout=10, allow_redirects=False)
    assert r.status_code == 403 and r.headers["x-error-code"] == "csrf_token_invalid"
    r = requests.post(srv.url + "/signup", data={"email": "a@example.com", "password": PASSWORD, "csrf": "guess"}, cookies={"__Host-authgate_form": "other"}, timeout=10)
    assert r.status_code == 403 and r.headers["x-error-code"] == "csrf_token_invalid"


def test_pages_cannot_be_framed_and_run_only_our_scripts(srv):
    r = requests.get(srv.url + "/login", timeout=10)
    csp = r.headers["content-security-policy"]
    for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self' http://127.0.0.1:9", "base-uri 'none'"]:
        assert part in csp, csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "<title>Sign in · Acme Login</title>" in r.text


def test_pages_on_a_phone(browser, srv):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(srv.url + "/signup")
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "signup-phone")
    ctx.close()


def test_forgotten_password_reset_from_the_emailed_link(page, srv, mail):
    email_addr = new_email("forgot")
    sign_up_in_browser(page, srv, mail, email_addr)
    page.goto(srv.url + "/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email address").fill(email_addr)
    mark = mail.mark()
    page.get_by_role("button", name="Email me a reset link").click()
    assert "a reset link is on its way" in page.locator("[role=status]").inner_text()
    link = re.search(r"(http\S+/reset-password\?token=\S+)", mail.wait(email_addr, "password", start=mark)["body"]).group(1)
    page.goto(link)
    shot(page, "reset-password")
    page.get_by_label("New password").fill("a brand new passphrase 77")
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url(re.compile(r"/login\?done=reset$"))
    # The link works once.
    page.goto(link)
    page.get_by_label("New password").fill("yet another passphrase 88")
    page.get_by_role("button", name="Set the new password").click()
    assert page.locator("[role=alert]").inner_text(), "a used reset link must be refused"
    # The old password no longer signs in; the new one does.
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_selector("[role=alert]")
    log_in_in_browser(page, srv, email_addr, password="a brand new passphrase 77")
    page.wait_for_url(srv.url + "/account")


def test_authenticator_app_set_up_from_the_qr_page_then_asked_at_sign_in(page, srv, mail):
    email_addr = new_email("totp")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    page.get_by_role("button", name="Set up an authenticator app").click()
    qr = page.get_by_role("img", name="QR code of your authenticator secret")
    assert qr.get_attribute("src").startswith("data:image/svg+xml;base64,")
    assert qr.evaluate("img => img.naturalWidth") >= 200, "the QR code must render"
    secret = page.locator("#totp-secret").inner_text()
    shot(page, "totp-setup")
    # A wrong code keeps the page (and the QR code) with the API's error.
    page.get_by_label("The code your app shows now").fill("000000" if totp_now(secret) != "000000" else "111111")
    page.get_by_role("button", name="Turn on").click()
    assert page.locator("[role=alert]").inner_text() and page.locator("#totp-secret").inner_text() == secret
    page.get_by_label("The code your app shows now").fill(totp_now(secret))
    page.get_by_role("button", name="Turn on").click()
    page.wait_for_url(re.compile(r"/account\?done=totp_on$"))
    assert "authenticator app" in page.locator(".facts").inner_text()

    page.get_by_role("button", name="Sign out").first.click()
    log_in_in_browser(page, srv, email_addr)
    # After the password, the page asks for the app's code (a step the enrolment has not used).
    code_field = page.get_by_label("Code from your authenticator app")
    code_field.fill(totp_now(secret, at=time.time() + 30))
    page.get_by_role("button", name="Verify", exact=True).click()
    page.wait_for_url(srv.url + "/account")
    # Turning it off needs a current code: the steps up to this one are spent (each is accepted
    # once), so a replayed one is refused with the API's error and the app stays on.
    page.get_by_label("Turn off the authenticator app: a current code").fill(totp_now(secret, at=time.time() + 30))
    with page.expect_response(lambda r: r.url.endswith("/account/totp/disable")) as info:
        page.get_by_role("button", name="Turn off").click()
    assert info.value.status == 400 and info.value.headers["x-error-code"] == "invalid_code"
    assert "authenticator app" in page.locator(".facts").inner_text()


def test_a_session_continues_when_its_access_cookie_has_expired(page, srv, mail):
    email_addr = new_email("resume")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    old = {c["name"]: c["value"] for c in page.context.cookies()}
    # The browser drops the access cookie when it expires (its Max-Age is the token's lifetime).
    page.context.clear_cookies(name="__Host-authgate_at")
    page.goto(srv.url + "/account")
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email_addr
    new = {c["name"]: c["value"] for c in page.context.cookies()}
    assert new["__Host-authgate_at"] and new["__Secure-authgate_rt"] != old["__Secure-authgate_rt"], "the refresh token rotates"
    # Without the refresh cookie the session cannot continue: the login, and the cookies go.
    page.context.clear_cookies(name="__Host-authgate_at")
    page.context.clear_cookies(name="__Secure-authgate_rt")
    page.goto(srv.url + "/account")
    page.wait_for_url(re.compile(r"/login\?return_to="))
    assert "__Host-authgate_csrf" not in {c["name"] for c in page.context.cookies()}


def test_organisation_admin_changes_roles_and_disables_within_the_authority_model(page, srv, mail):
    admin_email, _ = admin_user(srv)
    member = sign_up(srv, mail)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.get_by_role("link", name="Manage your organisation").click()
    page.wait_for_url(srv.url + "/organisation")
    row = page.locator(f"tr[data-member='{member}']")
    row.get_by_label("reader").check()
    row.get_by_role("button", name=f"Save the roles of {member}").click()
    page.wait_for_url(re.compile(r"/organisation\?done=roles_changed$"))
    assert page.locator(f"tr[data-member='{member}']").get_by_label("reader").is_checked()
    shot(page, "organisation")

    # A platform role smuggled into the form: the API refuses it (tenant authority never
    # becomes platform authority), and nothing changes.
    row = page.locator(f"tr[data-member='{member}']")
    row.locator("form.roles").evaluate(
        "f => { const i = document.createElement('input'); i.type = 'hidden'; i.name = 'roles'; i.value = 'platform_admin'; f.appendChild(i); }")
    with page.expect_response(lambda r: r.url.endswith("/roles") and r.request.method == "POST") as info:
        row.get_by_role("button", name=f"Save the roles of {member}").click()
    assert info.value.status == 403 and info.value.headers["x-error-code"] == "role_not_grantable"
    assert page.locator("[role=alert]").inner_text()
    r = requests.post(srv.url + "/v1/auth/init", json={"email": member}, timeout=10)
    tok = r.headers["x-session-token"]
    r = requests.post(srv.url + "/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": tok}, timeout=10)
    claims = r.json()
    assert claims["status"] == "complete"
    me = requests.get(srv.url + "/v1/me", headers={"authorization": f"Bearer {claims['access_token']}"}, timeout=10).json()
    assert me["roles"] == ["reader"], me

    page.locator(f"tr[data-member='{member}']").get_by_role("button", name=f"Disable {member}").click()
    page.wait_for_url(re.compile(r"/organisation\?done=member_disabled$"))
    assert page.locator(f"tr[data-member='{member}'] .status").inner_text() == "disabled"
    r = requests.get(srv.url + "/v1/me", headers={"authorization": f"Bearer {claims['access_token']}"}, timeout=10)
    assert r.status_code == 401
    # The page's recent activity shows it, newest first, by and to whom (by their addresses).
    latest = page.locator("#activity tbody tr").first
    assert latest.get_attribute("data-action") == "user.disabled"
    cells = latest.locator("td").all_inner_texts()
    assert cells[2] == admin_email and cells[3] == member, cells
    assert page.locator("#activity tr[data-action='user.roles_changed']").count() >= 1


def test_the_organisation_page_is_for_admins_only(page, srv, mail):
    email_addr = new_email("notadmin")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")
    assert page.get_by_role("link", name="Manage your organisation").count() == 0
    resp = page.goto(srv.url + "/organisation")
    assert resp.status == 403 and resp.headers["x-error-code"] == "insufficient_role"


def test_emails_have_an_html_part_in_the_operators_look(page, srv, mail):
    email_addr = new_email("htmlmail")
    mark = mail.mark()
    sign_up_in_browser(page, srv, mail, email_addr)
    msg = mail.wait(email_addr, "verify", start=mark)
    code = re.search(r"\b(\d{6,10})\b", msg["body"]).group(1)
    html = msg["html"]
    assert html and "Acme Login" in html and f">{code}</strong>" in html, html
    # The HTML part is the text part's words: shown in a mail reader (a blank page here, not
    # one under the pages' CSP, which allows no inline style), it reads the same.
    reader = page.context.new_page()
    reader.set_viewport_size({"width": 600, "height": 360})
    reader.set_content(html)
    shot(reader, "email-signup")
    assert code in reader.inner_text("body")
    # The words name the operator's product too, not ours.
    assert "Your Acme Login verification code is" in msg["body"], msg["body"]


def test_the_account_page_sets_a_name_and_changes_the_address_with_a_code(page, srv, mail):
    old = sign_up(srv, mail)
    log_in_in_browser(page, srv, old)
    page.wait_for_url(srv.url + "/account")
    page.get_by_label("Your name").fill("Grace H.")
    page.get_by_role("button", name="Save the name").click()
    page.wait_for_url(re.compile(r"/account\?done=name_saved$"))
    assert page.locator("#me-name").inner_text() == "Grace H."
    new = new_email("moved")
    # A wrong password is shown and changes nothing.
    page.get_by_label("New email address").fill(new)
    page.get_by_label("Your current password").fill("not-" + PASSWORD)
    page.get_by_role("button", name="Send a code to the new address").click()
    assert "password" in page.locator("[role=alert]").inner_text().lower()
    mark = mail.mark()
    page.get_by_label("New email address").fill(new)
    page.get_by_label("Your current password").fill(PASSWORD)
    page.get_by_role("button", name="Send a code to the new address").click()
    page.wait_for_url(srv.url + "/account/email/verify")
    shot(page, "account-email-verify")
    page.get_by_label("Code").fill("000000" if mail.code(new, "confirm your new address", start=mark) != "000000" else "111111")
    page.get_by_role("button", name="Change my address").click()
    assert page.locator("[role=alert]").inner_text()
    page.get_by_label("Code").fill(mail.code(new, "confirm your new address", start=mark))
    page.get_by_role("button", name="Change my address").click()
    page.wait_for_url(re.compile(r"/account\?done=email_changed$"))
    assert page.locator("#me-email").inner_text() == new
    assert "address was changed" in mail.wait(old, "address was changed", start=mark)["subject"]
    # The code page is gone once used; the new address signs in.
    page.goto(srv.url + "/account/email/verify")
    page.wait_for_url(srv.url + "/account")
    r = requests.post(srv.url + "/v1/auth/init", json={"email": new}, timeout=10)
    r = requests.post(srv.url + "/v1/auth/authenticate", json={"method": "password", "password": PASSWORD},
                      headers={"x-session-token": r.headers["x-session-token"]}, timeout=10)
    assert r.json()["status"] == "complete"


def test_an_admin_adds_a_webhook_sees_its_secret_once_and_deletes_it(page, srv, mail):
    admin_email, _ = admin_user(srv)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.goto(srv.url + "/organisation")
    # The server's own network is refused (this server keeps the defaults: https, public addresses).
    page.get_by_label("Send this organisation's events to").fill("https://169.254.169.254/latest/meta-data")
    page.get_by_role("button", name="Add the webhook").click()
    assert "non-public" in page.locator("[role=alert]").inner_text()
    assert page.locator("#webhooks").count() == 0
    page.get_by_label("Send this organisation's events to").fill("https://93.184.216.34/hooks/authgate")
    page.get_by_label("Only these events").fill("login. user.disabled")
    page.get_by_role("button", name="Add the webhook").click()
    secret = page.locator("#webhook-secret").input_value()
    assert secret.startswith("whsec_") and len(secret) > 40
    shot(page, "organisation-webhook-created")
    page.get_by_role("link", name="Back to your organisation").click()
    row = page.locator("tr[data-webhook='https://93.184.216.34/hooks/authgate']")
    assert row.locator("td").nth(1).inner_text() == "login., user.disabled"
    assert secret not in page.content()
    row.get_by_role("button", name="Delete the webhook https://93.184.216.34/hooks/authgate").click()
    page.wait_for_url(re.compile(r"/organisation\?done=webhook_deleted$"))
    assert page.locator("#webhooks").count() == 0
