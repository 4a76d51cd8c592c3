"""Sign-in through an organisation's identity provider in Chromium: the login page offers the
provider of the organisation holding the address's domain; the browser goes there (a real
provider the test starts, PyPI `oidc-provider-mock`), signs in, comes back and lands on the
account page with a session of that organisation."""

import json
import re
import secrets

import pytest
import requests

from pages_harness import SHOTS, log_in_in_browser, shot

from authsrv import PASSWORD, admin_user, idp  # noqa: F401  (idp: a fixture)


@pytest.fixture(scope="module")
def sso_srv(backend):
    return backend.server(AUTHGATE_PAGES__PRODUCT_NAME="Acme Login", AUTHGATE_FEDERATION__ALLOW_HTTP="true",
                          AUTHGATE_FEDERATION__ALLOW_PRIVATE_ADDRESSES="true")


def test_the_login_page_signs_in_through_the_organisations_provider(page, sso_srv, idp):
    srv = sso_srv
    org = json.loads(srv.cli("admin", "create-org", "--name", "Orbit").stdout)["org_id"]
    _, admin = admin_user(srv, roles=("admin",), org=org)
    r = srv.client().post(f"/v1/orgs/{org}/connections", json={"name": "Orbit SSO", "issuer": idp, "client_id": "orbit", "client_secret": "s3cret"},
                          token=admin["access_token"])
    assert r.status_code == 201, r.text
    domain = f"orbit-{secrets.token_hex(3)}.example"
    srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    email = f"dana@{domain}"
    sub = "dana-" + secrets.token_hex(3)
    assert requests.put(f"{idp}/users/{sub}", json={"email": email, "email_verified": True, "name": "Dana"}, timeout=10).status_code == 204

    page.goto(srv.url + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/step"))
    shot(page, "login-sso")
    page.get_by_role("link", name="Sign in with Orbit SSO").click()
    page.wait_for_url(re.compile(re.escape(idp) + r"/oauth2/authorize"))
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email
    assert page.locator("#me-org").inner_text() == "Orbit"
    sessions = page.evaluate("fetch('/v1/sessions', {credentials: 'same-origin'}).then(r => r.json())")
    assert next(s for s in sessions if s["current"])["amr"] == ["fed"]


def test_the_account_page_links_and_unlinks_a_provider(page, sso_srv, idp):
    srv = sso_srv
    org = json.loads(srv.cli("admin", "create-org", "--name", "Linkage").stdout)["org_id"]
    _, admin = admin_user(srv, roles=("admin",), org=org)
    r = srv.client().post(f"/v1/orgs/{org}/connections", json={"name": "Linkage SSO", "issuer": idp, "client_id": "linkage", "client_secret": "s3cret",
                          "create_accounts": False}, token=admin["access_token"])
    assert r.status_code == 201, r.text
    email = f"erin-{secrets.token_hex(3)}@example.com"
    srv.cli("admin", "create-user", "--email", email, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    sub = "erin-" + secrets.token_hex(3)
    # The provider's address is not this account's: linking rests on both sign-ins.
    assert requests.put(f"{idp}/users/{sub}", json={"email": "erin@elsewhere.example", "email_verified": True}, timeout=10).status_code == 204

    log_in_in_browser(page, srv, email)
    page.wait_for_url(srv.url + "/account")
    page.get_by_role("button", name="Link Linkage SSO", exact=True).click()
    page.wait_for_url(re.compile(re.escape(idp) + r"/oauth2/authorize"))
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(srv.url + "/account?done=identity_linked")
    row = page.locator("#identities tr[data-identity='Linkage SSO']")
    assert row.count() == 1
    assert page.get_by_role("button", name="Link Linkage SSO", exact=True).count() == 0
    shot(page, "account-identities")
    # The identity now signs this account in.
    page.context.clear_cookies()
    page.goto(srv.url + f"/login/sso/{r.json()['id']}")
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(srv.url + "/account")
    assert page.locator("#me-email").inner_text() == email
    page.get_by_role("button", name="Unlink Linkage SSO", exact=True).click()
    page.wait_for_url(srv.url + "/account?done=identity_unlinked")
    assert page.locator("#identities").count() == 0
    assert page.get_by_role("button", name="Link Linkage SSO", exact=True).count() == 1


def test_an_admin_adds_and_removes_an_identity_provider_on_the_organisation_page(page, sso_srv, idp):
    srv = sso_srv
    org = json.loads(srv.cli("admin", "create-org", "--name", "Providers").stdout)["org_id"]
    admin_email, admin = admin_user(srv, roles=("admin",), org=org)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.goto(srv.url + "/organisation")
    section = page.locator("section[aria-labelledby='idps-h']")
    assert f"{srv.issuer}/login/sso/callback" in section.inner_text()
    form = page.locator("#connection-form")
    form.get_by_label("Provider", exact=True).select_option("oidc")
    form.get_by_label("Button name").fill("Providers SSO")
    form.get_by_label("Client id").fill("providers")
    form.get_by_label("Client secret").fill("s3cret")
    # A generic provider without its issuer: the API's refusal, shown, nothing added.
    form.get_by_role("button", name="Add the identity provider").click()
    assert "issuer" in page.locator("[role=alert]").inner_text()
    assert page.locator("#connections").count() == 0
    form = page.locator("#connection-form")
    form.get_by_label("Issuer URL", exact=False).fill(idp)
    form.get_by_label("Button name").fill("Providers SSO")
    form.get_by_label("Client id").fill("providers")
    form.get_by_label("Client secret").fill("s3cret")
    form.get_by_label("admin", exact=True).check()
    form.get_by_role("button", name="Add the identity provider").click()
    page.wait_for_url(re.compile(r"/organisation\?done=connection_added$"))
    row = page.locator("#connections tr[data-connection='Providers SSO']")
    assert "oidc" in row.inner_text() and idp in row.inner_text() and "get an account (admin)" in row.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    section.screenshot(path=str(SHOTS / "organisation-identity-providers.png"))
    listed = srv.client().get(f"/v1/orgs/{org}/connections", token=admin["access_token"]).json()
    assert [(c["name"], c["has_client_secret"], c["roles"]) for c in listed] == [("Providers SSO", True, ["admin"])]
    row.get_by_role("button", name="Remove the identity provider Providers SSO").click()
    page.wait_for_url(re.compile(r"/organisation\?done=connection_removed$"))
    assert page.locator("#connections").count() == 0
