"""A browser made of requests (cookies kept per name, redirects followed by hand) and an Authlib
relying party, for the OpenID Connect provider suite. The real-browser version of the same
flow is tests/pages/test_pages_oidc.py."""

import html
import re
import secrets

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from authsrv import PASSWORD

RP_CALLBACK = "https://rp.example/callback"
RP_LOGGED_OUT = "https://rp.example/logged-out"


class Browser:
    """Sends the cookies the server set (by name; the server's paths are not modelled) and the
    headers a browser sends on our own forms (`Origin`, `Sec-Fetch-Site`)."""

    def __init__(self, srv):
        self.srv = srv
        self.c = srv.client()
        self.jar = {}

    def _keep(self, r):
        for raw in r.raw.headers.get_all("set-cookie") or []:
            name, rest = raw.split("=", 1)
            value, _, attrs = rest.partition(";")
            if "Max-Age=0" in attrs:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return r

    def headers(self, extra=None):
        h = {"cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}
        h.update(extra or {})
        return h

    def url(self, u):
        return u if u.startswith("http") else self.srv.url + u

    def get(self, u, headers=None):
        return self._keep(self.c.s.get(self.url(u), headers=self.headers(headers), allow_redirects=False, timeout=30))

    def post_form(self, u, data, origin=None, site="same-origin"):
        h = {"origin": origin or self.srv.issuer, "sec-fetch-site": site, "content-type": "application/x-www-form-urlencoded"}
        return self._keep(self.c.s.post(self.url(u), data=data, headers=self.headers(h), allow_redirects=False, timeout=30))

    def log_in(self, email, password=PASSWORD):
        """The API's login in cookie mode (what the login pages do), cookies kept."""
        r = self.c.post("/v1/auth/init", json={"email": email})
        assert r.status_code == 200, r.text
        r = self._keep(self.c.post("/v1/auth/authenticate", json={"method": "password", "password": password, "cookie": True},
                                   headers={"x-session-token": r.headers["x-session-token"]}))
        assert r.status_code == 200 and r.json()["status"] == "complete", r.text
        return self

    def authorize(self, url):
        """GET the authorization URL and follow our own redirects; returns the last response
        (a page of ours, or a redirect that leaves for another site)."""
        r = self.get(url)
        for _ in range(10):
            loc = r.headers.get("location")
            if r.status_code not in (302, 303) or not loc:
                return r
            if not self.url(loc).startswith(self.srv.url + "/"):
                return r
            r = self.get(loc)
        raise AssertionError("redirect loop")


def form_fields(page):
    return {k: html.unescape(v) for k, v in re.findall(r'name="([a-z_]+)" value="([^"]*)"', page)}


def assert_page_error(r, status, code):
    """A page's refusal: the status and the same error headers as the API's."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers.get("x-error-code") == code and r.headers.get("x-error") and r.headers.get("x-error-id"), dict(r.headers)


def consent(browser, page, decision="allow"):
    """Answers the consent page."""
    assert page.status_code == 200 and "wants to sign you in" in page.text, (page.status_code, page.text[:300])
    f = form_fields(page.text)
    return browser.post_form("/oauth2/consent", {"csrf": f["csrf"], "request": f["request"], "decision": decision})


def make_client(srv, admin_token, **fields):
    body = {"name": "Relying Party", "redirect_uris": [RP_CALLBACK], **fields}
    r = srv.client().post("/v1/clients", json=body, token=admin_token)
    assert r.status_code == 201, r.text
    return r.json()


class RelyingParty:
    """An OpenID Connect client written with Authlib: discovery, code + PKCE (S256), state and
    nonce, the token exchange, ID-token validation against the JWKS."""

    def __init__(self, srv, client, scope="openid email", redirect_uri=RP_CALLBACK):
        self.srv = srv
        self.client = client
        self.disc = requests.get(srv.url + "/.well-known/openid-configuration", timeout=10).json()
        auth = "none" if client.get("public") else "client_secret_basic"
        self.session = OAuth2Session(client["client_id"], client.get("client_secret"), scope=scope, redirect_uri=redirect_uri,
                                     code_challenge_method="S256", token_endpoint_auth_method=auth)
        self.verifier = None
        self.nonce = None
        self.state = None

    def authorization_url(self, **extra):
        self.verifier = generate_token(48)
        self.nonce = secrets.token_urlsafe(16)
        url, self.state = self.session.create_authorization_url(self.disc["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce, **extra)
        return url

    def exchange(self, callback_url):
        return self.session.fetch_token(self.disc["token_endpoint"], authorization_response=callback_url, code_verifier=self.verifier)

    def validate_id_token(self, id_token, nonce=None):
        keys = JsonWebKey.import_key_set(requests.get(self.disc["jwks_uri"], timeout=10).json())
        claims = jwt.decode(id_token, keys, claims_cls=CodeIDToken,
                            claims_options={"iss": {"essential": True, "values": [self.disc["issuer"]]}},
                            claims_params={"nonce": nonce or self.nonce, "client_id": self.client["client_id"]})
        claims.validate(leeway=5)
        return claims
