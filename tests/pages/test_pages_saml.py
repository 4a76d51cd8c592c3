"""SAML sign-in in Chromium: the login page offers the organisation's SAML IdP for an address of
its domain; the browser goes to the IdP with the AuthnRequest, the IdP's page posts the signed
Response back from another site (`localhost` against the server's 127.0.0.1: the state's
SameSite=Lax cookie stays behind), our page posts it once more from here, and the account page
shows a session of that organisation."""

import json
import re
import secrets

import pytest

from pages_harness import log_in_in_browser, shot

from authsrv import admin_user
from saml_peer import Idp


@pytest.fixture(scope="module")
def saml_srv(backend):
    return backend.server(AUTHGATE_PAGES__PRODUCT_NAME="Acme Login", AUTHGATE_FEDERATION__ALLOW_HTTP="true")


@pytest.fixture(scope="module")
def saml_idp():
    idp = Idp(host="localhost")
    yield idp
    idp.stop()


def test_the_login_page_signs_in_through_the_organisations_saml_idp(page, saml_srv, saml_idp):
    srv, idp = saml_srv, saml_idp
    org = json.loads(srv.cli("admin", "create-org", "--name", "Globex").stdout)["org_id"]
    _, admin = admin_user(srv, roles=("admin",), org=org)
    r = srv.client().post(f"/v1/orgs/{org}/connections", json={"kind": "saml", "name": "Globex SAML", "saml": {"metadata": idp.metadata()}},
                          token=admin["access_token"])
    assert r.status_code == 201, r.text
    domain = f"globex-{secrets.token_hex(3)}.example"
    srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    email = f"hank@{domain}"
    idp.sign_in_as("hank-" + secrets.token_hex(3), attributes={"email": email, "displayName": "Hank Scorpio"})

    posts = []
    page.on("request", lambda rq: posts.append(rq.post_data or "") if rq.method == "POST" and "/acs" in rq.url else None)
    page.goto(srv.url + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/step"))
    page.get_by_role("link", name="Sign in with Globex SAML").click()
    page.wait_for_url(re.compile(re.escape(idp.url) + r"/sso\?SAMLRequest="))
    page.get_by_role("button", name="Continue to the service").click()
    page.wait_for_url(srv.url + "/account")
    # The IdP's post came without the state's cookie, so our page posted it again from here.
    assert len(posts) == 2 and "again=" not in posts[0] and "again=1" in posts[1], posts
    assert page.locator("#me-email").inner_text() == email
    assert page.locator("#me-org").inner_text() == "Globex"
    sessions = page.evaluate("fetch('/v1/sessions', {credentials: 'same-origin'}).then(r => r.json())")
    assert next(s for s in sessions if s["current"])["amr"] == ["fed"]
    shot(page, "account-saml")


def test_an_admin_adds_a_saml_idp_from_its_metadata_on_the_organisation_page(page, saml_srv, saml_idp):
    srv, idp = saml_srv, saml_idp
    org = json.loads(srv.cli("admin", "create-org", "--name", "Initech").stdout)["org_id"]
    admin_email, admin = admin_user(srv, roles=("admin",), org=org)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")
    page.goto(srv.url + "/organisation")
    form = page.locator("#connection-form")
    form.get_by_label("Provider", exact=True).select_option("saml")
    form.get_by_label("Button name").fill("Initech SAML")
    form.get_by_label("SAML: the IdP's metadata (XML)").fill(idp.metadata())
    form.get_by_role("button", name="Add the identity provider").click()
    page.wait_for_url(re.compile(r"/organisation\?done=connection_added$"))
    row = page.locator("#connections tr[data-connection='Initech SAML']")
    [conn] = srv.client().get(f"/v1/orgs/{org}/connections", token=admin["access_token"]).json()
    # What the IdP's admin needs, on the page: our entity id and ACS URL.
    assert "saml" in row.inner_text() and idp.entity_id in row.inner_text()
    assert conn["saml"]["sp_entity_id"] in row.inner_text() and conn["saml"]["acs_url"] in row.inner_text()
    shot(page, "organisation-saml")
