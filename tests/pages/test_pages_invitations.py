"""Invitations in the browser: an admin invites an address with a role on the organisation page,
the invitee opens the emailed link, chooses a password, signs in and holds the role; the admin
sees the invitation accepted."""

import re

from pages_harness import log_in_in_browser, shot

from authsrv import PASSWORD, admin_user, new_email


def test_admin_invites_and_the_invitee_joins_from_the_emailed_link(page, browser, srv, mail):
    admin_email, _ = admin_user(srv, roles=("admin", "reader"))
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.goto(srv.url + "/organisation")
    invitee = new_email("invited")
    page.get_by_label("Invite an email address").fill(invitee)
    page.locator("form:has(#invite-email)").get_by_label("reader").check()
    mark = mail.mark()
    page.get_by_role("button", name="Send the invitation").click()
    page.wait_for_url(re.compile(r"/organisation\?done=invitation_sent$"))
    assert "pending" in page.locator(f"tr[data-invitation='{invitee}']").inner_text()

    link = re.search(r"(http://\S+/invite\?token=inv_[A-Za-z0-9_-]+)", mail.wait(invitee, "invited", start=mark)["body"]).group(1)
    ctx = browser.new_context()
    other = ctx.new_page()
    other.goto(link)
    assert invitee in other.locator("form.card").inner_text()
    shot(other, "invite")
    other.get_by_label("Choose a password").fill(PASSWORD)
    other.get_by_role("button", name="Join").click()
    other.wait_for_url(re.compile(r"/login\?done=invited"))
    assert other.get_by_label("Email address").input_value() == invitee
    other.get_by_role("button", name="Continue").click()
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in", exact=True).click()
    other.wait_for_url(srv.url + "/account")
    assert other.locator("dt:has-text('Roles') + dd").inner_text() == "reader"
    # The link works once.
    again = other.goto(link)
    assert again.status == 400 and again.headers["x-error-code"] == "invalid_invitation"
    ctx.close()

    page.goto(srv.url + "/organisation")
    assert "accepted" in page.locator(f"tr[data-invitation='{invitee}']").inner_text()
    assert page.locator(f"tr[data-member='{invitee}']").count() == 1
