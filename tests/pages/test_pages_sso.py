"""Sign-in through an organisation's identity provider in Chromium: the login page offers the
provider of the organisation holding the address's domain; the browser goes there (a real
provider the test starts, PyPI `oidc-provider-mock`), signs in, comes back and lands on the
account page with a session of that organisation."""

import json
import re
import secrets

import pytest
import requests

from pages_harness import shot

from authsrv import admin_user, idp  # noqa: F401  (idp: a fixture)


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
