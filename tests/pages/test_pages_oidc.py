"""The OpenID Connect provider in Chromium: a relying party (Authlib, served on 127.0.0.1 by the
test) sends the browser to authgate, the person signs in through the login pages, consents,
and lands back at the app signed in — every redirect and CSP rule as a real browser applies
them (forms whose redirect chain ends at the app need it as a `form-action` source)."""

import http.server
import threading
import urllib.parse as up

import pytest

import re

import requests

from pages_harness import log_in_in_browser, shot, sign_in_on_the_login_page, sign_up_in_browser

from authsrv import admin_user, new_email
from oidc_harness import RelyingParty, make_client


class AppServer:
    """A web app with "Sign in with authgate": `/login` starts the flow, `/callback` exchanges
    the code (Authlib), checks `iss` (RFC 9207) and the ID token, and greets the person."""

    def __init__(self, srv, admin_token=None, register=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # Registered through the API, or by `register(redirect_uri)` (the organisation page).
        self.client = register(self.url + "/callback") if register else make_client(
            srv, admin_token, name="Acme Notes", redirect_uris=[self.url + "/callback"])
        self.rp = RelyingParty(srv, self.client, redirect_uri=self.url + "/callback")
        self.srv = srv
        self.signed_in = None
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(app):  # noqa: N805  (the app, seen from its handler class)
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/login":
                    self.send_response(302)
                    self.send_header("location", app.rp.authorization_url())
                    self.end_headers()
                    return
                callback = app.url + self.path
                q = dict(up.parse_qsl(up.urlsplit(callback).query))
                assert q.get("iss") == app.srv.issuer, q
                token = app.rp.exchange(callback)
                claims = app.rp.validate_id_token(token["id_token"])
                app.signed_in = claims
                body = f"<p id=hello>Signed in as {claims['email']}</p>".encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def app(srv):
    a = AppServer(srv, admin_user(srv)[1]["access_token"])
    yield a
    a.close()


def test_an_app_signs_a_person_in_through_the_login_pages(page, srv, mail, app):
    email_addr = new_email("oidc")
    sign_up_in_browser(page, srv, mail, email_addr)
    page.goto(app.url + "/login")
    # Sent to authgate's login, which will return to the kept authorization request.
    page.wait_for_url(lambda u: u.startswith(srv.url + "/login?return_to=%2Foauth2%2Fcontinue"))
    sign_in_on_the_login_page(page, email_addr)
    # A third-party app: asked once.
    page.get_by_role("button", name="Allow").wait_for()
    assert "Acme Notes" in page.content()
    shot(page, "oidc-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(lambda u: u.startswith(app.url + "/callback?"))
    assert page.locator("#hello").inner_text() == f"Signed in as {email_addr}"
    assert app.signed_in["amr"] == ["pwd"] and app.signed_in["aud"] == app.client["client_id"]
    # Signed in and consented: the next visit goes straight through, no page of ours shown.
    app.signed_in = None
    page.goto(app.url + "/login")
    page.wait_for_url(lambda u: u.startswith(app.url + "/callback?"))
    assert app.signed_in["email"] == email_addr


def test_an_admin_registers_an_app_on_the_organisation_page_and_a_person_takes_access_back(page, browser, srv, mail):
    admin_email, _ = admin_user(srv)
    log_in_in_browser(page, srv, admin_email)
    page.wait_for_url(srv.url + "/account")

    def register(redirect_uri):
        page.goto(srv.url + "/organisation")
        page.get_by_label("Name people see when they are asked").fill("Team Wiki")
        page.get_by_label("Redirect URIs, one per line (exact)").fill(redirect_uri)
        page.get_by_role("button", name="Register the app").click()
        page.get_by_label("Client secret").wait_for()
        shot(page, "organisation-app-created")
        client = {"client_id": page.get_by_label("Client id").input_value(), "client_secret": page.get_by_label("Client secret").input_value()}
        page.goto(srv.url + "/organisation")
        row = page.locator("tr[data-app='Team Wiki']")
        assert row.locator("code").first.inner_text() == client["client_id"] and "confidential" in row.inner_text()
        return client

    app = AppServer(srv, register=register)
    try:
        # A person (another browser context) signs in to it and allows it.
        ctx = browser.new_context()
        person = ctx.new_page()
        email_addr = new_email("wiki")
        sign_up_in_browser(person, srv, mail, email_addr)
        person.goto(app.url + "/login")
        sign_in_on_the_login_page(person, email_addr)
        person.get_by_role("button", name="Allow").click()
        person.wait_for_url(lambda u: u.startswith(app.url + "/callback?"))
        token = app.rp.session.token["access_token"]
        assert requests.get(srv.url + "/oauth2/userinfo", headers={"authorization": f"Bearer {token}"}, timeout=5).status_code == 200
        # On their account page, the app is listed; taking access back signs it out.
        person.goto(srv.url + "/account")
        row = person.locator("tr[data-app='Team Wiki']")
        assert "openid email" in row.inner_text()
        row.get_by_role("button", name="Take back access of Team Wiki").click()
        person.wait_for_url(re.compile(r"/account\?done=app_revoked$"))
        assert person.locator("tr[data-app='Team Wiki']").count() == 0
        r = requests.get(srv.url + "/oauth2/userinfo", headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 401 and r.headers["x-error-code"] == "session_revoked"
        ctx.close()
        # The admin revokes the app: the organisation page says so.
        page.goto(srv.url + "/organisation")
        page.locator("tr[data-app='Team Wiki']").get_by_role("button", name="Revoke Team Wiki").click()
        page.wait_for_url(re.compile(r"/organisation\?done=app_client_revoked$"))
        assert "revoked" in page.locator("tr[data-app='Team Wiki']").inner_text()
    finally:
        app.close()
