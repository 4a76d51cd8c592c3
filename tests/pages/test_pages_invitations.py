"""Invitations in the browser: an admin invites an address with a role on the organisation page,
the invitee opens the emailed link, chooses a password, signs in and holds the role; the admin
sees the invitation accepted. An address that has an account signs in and joins instead, and
then picks the organisation at sign-in."""

import json
import re

from pages_harness import log_in_in_browser, shot, sign_in_on_the_login_page

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


def test_an_existing_account_signs_in_joins_and_then_picks_the_organisation(page, browser, srv, mail):
    """The invited address has an account: the link asks it to sign in, brings it back, and one
    button joins; the next sign-in asks which organisation, and the account page says where."""
    org = json.loads(srv.cli("admin", "create-org", "--name", "Orchard").stdout)["org_id"]
    _, admin = admin_user(srv, roles=("admin", "reader"), org=org)
    person, _ = admin_user(srv, roles=())
    mark = mail.mark()
    r = srv.client().post("/v1/invitations", json={"email": person, "roles": ["reader"]}, token=admin["access_token"])
    assert r.status_code == 202, r.text
    link = re.search(r"(http://\S+/invite\?token=inv_[A-Za-z0-9_-]+)", mail.wait(person, "invited", start=mark)["body"]).group(1)

    page.goto(link)
    join = page.locator("#join")
    assert "already has an account" in join.inner_text()
    assert page.get_by_label("Choose a password").count() == 0
    page.get_by_role("link", name=f"Sign in as {person}").click()
    page.wait_for_url(re.compile(r"/login\?"))
    assert page.get_by_label("Email address").input_value() == person
    sign_in_on_the_login_page(page, person)
    page.wait_for_url(link)
    shot(page, "invite-existing-account")
    page.get_by_role("button", name="Join Orchard").click()
    page.wait_for_url(re.compile(r"/login\?done=joined"))

    sign_in_on_the_login_page(page, person)
    page.wait_for_url(re.compile(r"/login/step"))
    assert page.get_by_role("group", name="Which organisation?").is_visible()
    shot(page, "login-choose-organisation")
    page.get_by_label("Orchard").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-org").inner_text() == "Orchard"
    assert page.locator("dt:has-text('Roles') + dd").inner_text() == "reader"
    assert "default" in page.locator("#me-other-orgs").inner_text()
    # The link is spent.
    again = page.goto(link)
    assert again.status == 400 and again.headers["x-error-code"] == "invalid_invitation"
