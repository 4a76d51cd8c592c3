"""The OpenID Connect provider in Chromium: a relying party (Authlib, served on 127.0.0.1 by the
test) sends the browser to authgate, the person signs in through the login pages, consents,
and lands back at the app signed in — every redirect and CSP rule as a real browser applies
them (forms whose redirect chain ends at the app need it as a `form-action` source)."""

import http.server
import threading
import urllib.parse as up

import pytest

from pages_harness import shot, sign_up_in_browser

from authsrv import PASSWORD, admin_user, new_email
from oidc_harness import RelyingParty, make_client


class AppServer:
    """A web app with "Sign in with authgate": `/login` starts the flow, `/callback` exchanges
    the code (Authlib), checks `iss` (RFC 9207) and the ID token, and greets the person."""

    def __init__(self, srv, admin_token):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.client = make_client(srv, admin_token, name="Acme Notes", redirect_uris=[self.url + "/callback"])
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
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
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
