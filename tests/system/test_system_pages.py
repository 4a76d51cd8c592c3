"""A person with a browser and no curl: signs up on the hosted pages, signs in, creates an API
key on the account page, calls an API through Envoy and through the edge worker with it, revokes
it on the page, and is refused at both gateways within the feed's bound."""

import re

from pages_harness import log_in_in_browser, shot, sign_up_in_browser
from system_harness import seen_by_upstream, until_status
from test_system_flows import REVOKE_BOUND_S, denied_within

from authsrv import new_email


def test_api_key_made_in_the_browser_passes_both_gateways_until_revoked_there(system, gateways, mail, browser):
    srv = system.server
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(15000)
    email_addr = new_email("browser")
    sign_up_in_browser(page, srv, mail, email_addr)
    log_in_in_browser(page, srv, email_addr)
    page.wait_for_url(srv.url + "/account")

    page.get_by_label("Name", exact=True).fill("from the browser")
    mark = mail.mark()
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("Code").fill(mail.code(email_addr, "", start=mark))
    page.get_by_role("button", name="Create the key").click()
    value = page.locator("#secret").input_value()
    key_id = value.split(" ", 1)[1].split(".", 1)[0]
    headers = [("authorization", value)]
    for gw in gateways:
        # Usable once the gateway's feed covers the key's creation (within one feed interval).
        until_status(gw, "/hello", headers, 200, REVOKE_BOUND_S + 2)
        seen = seen_by_upstream(gw, "GET", "/hello", headers)
        assert seen["x-auth-method"] == "api_key" and seen["x-auth-subject"].startswith("usr_"), (gw, seen)

    page.goto(srv.url + "/account")
    page.locator(f"tr[data-key-id='{key_id}']").get_by_role("button", name="Revoke from the browser").click()
    page.wait_for_url(re.compile(r"/account\?done=key_revoked$"))
    shot(page, "system-account-key-revoked")
    for gw in gateways:
        denied_within(gw, "/hello", headers, "api_key_revoked")
    ctx.close()
