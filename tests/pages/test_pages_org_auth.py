"""The organisation page's sign-in rules in Chromium: an admin takes passkeys off and requires
two factors, asks for an email domain and sees the TXT record to publish; the organisation's
members are then asked for a second factor when they sign in."""

import json
import re
import secrets

from pages_harness import SHOTS, log_in_in_browser, sign_in_on_the_login_page

from authsrv import admin_user


def test_an_admin_sets_the_sign_in_rules_and_members_meet_them(page, browser, srv, mail):
    org = json.loads(srv.cli("admin", "create-org", "--name", "Ruled").stdout)["org_id"]
    admin_email, _ = admin_user(srv, roles=("admin",), org=org)
    member, _ = admin_user(srv, roles=("reader",), org=org)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.goto(srv.url + "/organisation")
    rules = page.locator("#auth-rules")
    assert rules.get_by_label("a passkey", exact=True).is_checked()
    rules.get_by_label("a passkey", exact=True).uncheck()
    rules.get_by_label("Require two factors").check()
    rules.get_by_role("button", name="Save the rules").click()
    page.wait_for_url(re.compile(r"/organisation\?done=auth_saved$"))
    assert not page.locator("#auth-rules").get_by_label("a passkey", exact=True).is_checked()
    assert page.locator("#auth-rules").get_by_label("a password", exact=True).is_checked()
    assert page.locator("#auth-rules").get_by_label("Require two factors").is_checked()

    domain = f"ruled-{secrets.token_hex(3)}.example"
    page.get_by_label("Claim an email domain").fill(domain.upper())
    page.get_by_role("button", name="Ask for the domain").click()
    page.wait_for_url(re.compile(r"/organisation\?done=domain_added$"))
    row = page.locator(f"tr[data-domain='{domain}']")
    assert "waiting for verification" in row.inner_text() and f"_authgate.{domain}" in row.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("section[aria-labelledby='signin-h']").screenshot(path=str(SHOTS / "organisation-sign-in-rules.png"))
    # Nothing but the rules' own check stops a method outside the list: with none left, the API refuses.
    page.locator("#auth-rules").get_by_label("a code by email", exact=True).uncheck()
    page.locator("#auth-rules").get_by_label("a password", exact=True).uncheck()
    page.locator("#auth-rules").get_by_label("the organisation's identity providers", exact=True).uncheck()
    with page.expect_response(lambda r: r.url.endswith("/organisation/auth")) as info:
        page.locator("#auth-rules").get_by_role("button", name="Save the rules").click()
    assert info.value.status == 400 and info.value.headers["x-error-code"] == "invalid_auth_rules"
    page.goto(srv.url + "/organisation")
    row = page.locator(f"tr[data-domain='{domain}']")
    row.get_by_role("button", name=f"Remove the domain {domain}").click()
    page.wait_for_url(re.compile(r"/organisation\?done=domain_removed$"))
    assert page.locator(f"tr[data-domain='{domain}']").count() == 0

    # The member's account needs a password only; the organisation wants a second factor too.
    ctx = browser.new_context()
    other = ctx.new_page()
    other.goto(srv.url + "/login")
    sign_in_on_the_login_page(other, member)
    other.wait_for_url(re.compile(r"/login/step"))
    assert "One more step" in other.content()
    mark = mail.mark()
    other.get_by_role("button", name="Email me a code").click()
    other.get_by_label("Code from your email").fill(mail.code(member, "sign-in", start=mark))
    other.get_by_role("button", name="Verify the code").click()
    other.wait_for_url(srv.url + "/account")
    ctx.close()


def test_an_admin_proves_a_domain_by_its_txt_record(page, backend, mail):
    from test_server_org_auth import Zone

    zone = Zone()
    try:
        srv = backend.server(AUTHGATE_DOMAINS__RESOLVER=f"127.0.0.1:{zone.port}")
        org = json.loads(srv.cli("admin", "create-org", "--name", "Provers").stdout)["org_id"]
        admin_email, _ = admin_user(srv, roles=("admin",), org=org)
        log_in_in_browser(page, srv, admin_email)
        page.wait_for_url(srv.url + "/account")
        page.goto(srv.url + "/organisation")
        domain = f"proof-{secrets.token_hex(3)}.example"
        page.get_by_label("Claim an email domain").fill(domain)
        page.get_by_role("button", name="Ask for the domain").click()
        page.wait_for_url(re.compile(r"/organisation\?done=domain_added$"))
        row = page.locator(f"tr[data-domain='{domain}']")
        name, value = row.locator("code").all_inner_texts()
        # Not published yet: the page says so and nothing changes.
        row.get_by_role("button", name=f"Check the TXT record of {domain}").click()
        assert "not published" in page.locator("[role=alert]").inner_text()
        assert "waiting for verification" in page.locator(f"tr[data-domain='{domain}']").inner_text()
        zone.txt[name] = [value]
        page.locator(f"tr[data-domain='{domain}']").get_by_role("button", name=f"Check the TXT record of {domain}").click()
        page.wait_for_url(re.compile(r"/organisation\?done=domain_verified$"))
        row = page.locator(f"tr[data-domain='{domain}']")
        assert "verified" in row.inner_text() and "waiting" not in row.inner_text()
        assert row.get_by_role("button", name=f"Check the TXT record of {domain}").count() == 0
    finally:
        zone.stop()
