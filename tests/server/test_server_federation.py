"""Sign-in through an organisation's OpenID Connect identity provider, against a real provider
the test starts (PyPI `oidc-provider-mock`, in a thread): an organisation's admins register a
connection; the browser goes to the provider with state, nonce and PKCE and comes back; the
server exchanges the code, verifies the ID token with auth-core's verifier, and signs the person
in to the connection's organisation — an identity linked before, a new account for a verified
address, or an existing account only when the organisation holds the address's domain. The
attacks: an answer this browser did not ask for (login CSRF), a replayed answer, an unverified
address, an address that has an account elsewhere, a wrong client secret, a provider on the
server's own network without the operator's leave, another organisation's admin."""

import base64
import json
import secrets
from urllib.parse import parse_qs, urlparse

import requests

from authsrv import PASSWORD, admin_user, assert_error, idp, new_email  # noqa: F401  (idp: a fixture)
from test_server_memberships import new_org


def claims_of(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def set_user(idp, sub, **claims):
    r = requests.put(f"{idp}/users/{sub}", json=claims, timeout=10)
    assert r.status_code == 204, r.text


def connection(srv, token, org, idp, **extra):
    body = {"name": "Acme SSO", "issuer": idp, "client_id": "authgate-" + secrets.token_hex(3), "client_secret": "s3cret-" + secrets.token_hex(4), **extra}
    r = srv.client().post(f"/v1/orgs/{org}/connections", json=body, token=token)
    assert r.status_code == 201, r.text
    return r.json()


def cookie(resp, name_part):
    for c in resp.raw.headers.getlist("set-cookie"):
        name, _, rest = c.partition("=")
        if name_part in name:
            return name, rest.split(";")[0]
    return None


def start(srv, conn_id, return_to="/account"):
    """The browser's first hop: 303 to the provider, with the binding cookie."""
    r = requests.get(f"{srv.url}/login/sso/{conn_id}", params={"return_to": return_to}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    bound = cookie(r, "authgate_sso")
    assert bound, r.headers
    return r.headers["location"], bound


def authorize(location, sub):
    """The person signs in at the provider: back to our callback with a code."""
    r = requests.post(location, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303), r.text
    return r.headers["location"]


def callback(callback_url, bound):
    headers = {"cookie": f"{bound[0]}={bound[1]}"} if bound else {}
    return requests.get(callback_url, headers=headers, allow_redirects=False, timeout=10)


def sso(srv, conn_id, sub):
    location, bound = start(srv, conn_id)
    q = parse_qs(urlparse(location).query)
    assert q["code_challenge_method"] == ["S256"] and q["state"][0] and q["redirect_uri"] == [f"{srv.issuer}/login/sso/callback"]
    # OpenID Connect round trips carry a nonce; GitHub's (no ID token) none.
    assert ("/gh/" in location) != bool(q.get("nonce", [""])[0]), location
    return callback(authorize(location, sub), bound)


def assert_page_error(r, status, code):
    """A page's refusal: the error page, with the API's status and error headers."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["x-error-code"] == code and r.headers.get("x-error-id"), dict(r.headers)
    assert "text/html" in r.headers["content-type"]
    assert not any("authgate_at" in c for c in r.raw.headers.getlist("set-cookie"))


def signed_in(resp):
    assert resp.status_code == 200, resp.text
    access = cookie(resp, "authgate_at")
    assert access, resp.headers
    return claims_of(access[1])


def test_a_verified_address_gets_an_account_in_the_connections_organisation(fed_srv, idp, mail):
    org = new_org(fed_srv, "Federated")
    _, admin = admin_user(fed_srv, roles=("admin", "reader"), org=org)
    conn = connection(fed_srv, admin["access_token"], org, idp, roles=["reader"])
    assert conn["has_client_secret"] and conn["scopes"] == "openid email profile" and "client_secret" not in conn
    sub = "alice-" + secrets.token_hex(3)
    email = new_email("alice")
    set_user(idp, sub, email=email, email_verified=True, name="Alice")
    claims = signed_in(sso(fed_srv, conn["id"], sub))
    assert claims["org"] == org and claims["email"] == email and claims["amr"] == ["fed"] and claims["roles"] == ["reader"]
    # The same identity again: the same account.
    again = signed_in(sso(fed_srv, conn["id"], sub))
    assert again["sub"] == claims["sub"]
    actions = [e["action"] for e in fed_srv.client().get("/v1/audit", token=admin["access_token"], params={"subject": claims["sub"]}).json()]
    assert "identity.linked" in actions and "user.created" in actions
    # The account has no password anyone knows.
    r = fed_srv.client().post("/v1/sessions", json={"email": email, "password": PASSWORD})
    assert_error(r, 401, "invalid_credentials")


def test_unverified_addresses_and_existing_accounts_are_never_taken_over(fed_srv, idp, mail):
    org = new_org(fed_srv, "Careful")
    _, admin = admin_user(fed_srv, roles=("admin",), org=org)
    conn = connection(fed_srv, admin["access_token"], org, idp)
    # An address the provider does not call verified: refused, nothing created.
    sub = "mallory-" + secrets.token_hex(3)
    victim_email = new_email("victim")
    set_user(idp, sub, email=victim_email, email_verified=False)
    assert_page_error(sso(fed_srv, conn["id"], sub), 403, "email_not_verified")
    # An address with an account (in another organisation): refused while the organisation does
    # not hold the address's domain, even verified.
    # (A domain of its own: a domain held is server-wide state.)
    victim = f"victim@takeover-{secrets.token_hex(3)}.example"
    fed_srv.cli("admin", "create-user", "--email", victim, "--role", "reader", env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    set_user(idp, sub, email=victim, email_verified=True)
    assert_page_error(sso(fed_srv, conn["id"], sub), 409, "account_exists")
    # Once the organisation holds the domain (verified by the operator), the account is linked
    # and joins the organisation.
    fed_srv.cli("orgs", "verify-domain", "--org", org, "--domain", victim.split("@")[1])
    claims = signed_in(sso(fed_srv, conn["id"], sub))
    assert claims["email"] == victim and claims["org"] == org
    # Another organisation's provider cannot create or link an address of a domain it does not
    # hold when someone else holds it.
    other = new_org(fed_srv, "Squatter")
    _, squatter = admin_user(fed_srv, roles=("admin",), org=other)
    their = connection(fed_srv, squatter["access_token"], other, idp)
    for addr in [victim, "someone-new@" + victim.split("@")[1]]:
        mallory = "mallory2-" + secrets.token_hex(3)
        set_user(idp, mallory, email=addr, email_verified=True)
        assert_page_error(sso(fed_srv, their["id"], mallory), 403, "domain_held_elsewhere")


def test_the_answer_must_be_this_browsers_and_used_once(fed_srv, idp, mail):
    org = new_org(fed_srv, "Bound")
    _, admin = admin_user(fed_srv, roles=("admin",), org=org)
    conn = connection(fed_srv, admin["access_token"], org, idp)
    sub = "bob-" + secrets.token_hex(3)
    set_user(idp, sub, email=new_email("bob"), email_verified=True)
    location, bound = start(fed_srv, conn["id"])
    back = authorize(location, sub)
    # Login CSRF: the attacker's own answer planted in a victim's browser (no binding cookie, or
    # another sign-in's) is refused.
    assert_page_error(callback(back, None), 400, "sso_state_invalid")
    assert_page_error(callback(back, (bound[0], "another-state")), 400, "sso_state_invalid")
    assert signed_in(callback(back, bound))["org"] == org
    # The same answer again: spent.
    assert_page_error(callback(back, bound), 400, "sso_state_invalid")
    # The provider says no: nothing is signed in.
    location, bound = start(fed_srv, conn["id"])
    state = parse_qs(urlparse(location).query)["state"][0]
    r = callback(f"{fed_srv.url}/login/sso/callback?error=access_denied&state={state}", bound)
    assert_page_error(r, 403, "sso_failed")
    # A return_to elsewhere is refused before anything is asked of the provider.
    r = requests.get(f"{fed_srv.url}/login/sso/{conn['id']}", params={"return_to": "https://evil.example/"}, allow_redirects=False, timeout=10)
    assert_page_error(r, 400, "invalid_return_to")
    assert_page_error(requests.get(f"{fed_srv.url}/login/sso/conn_missing", allow_redirects=False, timeout=10), 404, "connection_not_found")


def test_a_wrong_client_secret_and_closed_connections_sign_nobody_in(fed_srv, idp, mail):
    org = new_org(fed_srv, "Strict")
    _, admin = admin_user(fed_srv, roles=("admin",), org=org)
    # The mock provider takes any client id; require_client_registration is off, so a wrong
    # secret is checked by registering the client first.
    r = requests.post(f"{idp}/oauth2/clients", json={"redirect_uris": [f"{fed_srv.issuer}/login/sso/callback"]}, timeout=10)
    assert r.status_code == 201, r.text
    registered = r.json()
    conn = connection(fed_srv, admin["access_token"], org, idp, client_id=registered["client_id"], client_secret="not-" + registered["client_secret"])
    sub = "carol-" + secrets.token_hex(3)
    set_user(idp, sub, email=new_email("carol"), email_verified=True)
    assert_page_error(sso(fed_srv, conn["id"], sub), 403, "sso_failed")
    # A connection that does not create accounts signs in only those it knows.
    closed = connection(fed_srv, admin["access_token"], org, idp, create_accounts=False)
    assert_page_error(sso(fed_srv, closed["id"], sub), 403, "account_not_found")
    # Removing a connection: its identities go, the accounts stay.
    assert fed_srv.client().delete(f"/v1/orgs/{org}/connections/{closed['id']}", token=admin["access_token"]).status_code == 204
    assert_error(fed_srv.client().delete(f"/v1/orgs/{org}/connections/{closed['id']}", token=admin["access_token"]), 404, "connection_not_found")


def test_connections_are_their_organisations_and_reach_no_private_network_by_default(srv, fed_srv, idp, mail):
    org = new_org(fed_srv, "Owner")
    _, admin = admin_user(fed_srv, roles=("admin",), org=org)
    _, other = admin_user(fed_srv, roles=("admin",), org=new_org(fed_srv, "Other"))
    conn = connection(fed_srv, admin["access_token"], org, idp)
    c = fed_srv.client()
    assert_error(c.get(f"/v1/orgs/{org}/connections", token=other["access_token"]), 404, "org_not_found")
    assert_error(c.delete(f"/v1/orgs/{org}/connections/{conn['id']}", token=other["access_token"]), 404, "org_not_found")
    assert_error(c.post(f"/v1/orgs/{org}/connections", json={"name": "x", "issuer": idp, "client_id": "x"}, token=other["access_token"]), 404)
    assert [x["id"] for x in c.get(f"/v1/orgs/{org}/connections", token=admin["access_token"]).json()] == [conn["id"]]
    # Roles on what a connection adds: only ones the admin may grant.
    r = c.post(f"/v1/orgs/{org}/connections", json={"name": "x", "issuer": idp, "client_id": "x", "roles": ["gateway"]}, token=admin["access_token"])
    assert_error(r, 403, "role_not_grantable")
    # A discovery document naming another issuer than the one given (mix-up) is refused.
    r = c.post(f"/v1/orgs/{org}/connections", json={"name": "x", "issuer": idp + "/", "client_id": "x"}, token=admin["access_token"])
    assert_error(r, 400, "invalid_connection")
    # The default server: https only, public addresses only.
    _, strict_admin = admin_user(srv, roles=("admin",))
    strict_org = srv.client().get("/v1/me", token=strict_admin["access_token"]).json()["org_id"]
    r = srv.client().post(f"/v1/orgs/{strict_org}/connections", json={"name": "x", "issuer": idp, "client_id": "x"}, token=strict_admin["access_token"])
    assert_error(r, 400, "invalid_connection")
    assert "issuer" in r.json()["message"]


def test_init_offers_the_connections_of_the_organisation_holding_the_domain(fed_srv, idp, mail):
    org = new_org(fed_srv, "Domain Holder")
    _, admin = admin_user(fed_srv, roles=("admin",), org=org)
    conn = connection(fed_srv, admin["access_token"], org, idp, name="Holder SSO")
    domain = f"holder-{secrets.token_hex(3)}.example"
    fed_srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    for addr in [f"known@{domain}", f"unknown@{domain}"]:
        r = fed_srv.client().post("/v1/auth/init", json={"email": addr})
        assert r.json()["connections"] == [{"id": conn["id"], "name": "Holder SSO", "url": f"{fed_srv.issuer}/login/sso/{conn['id']}"}]
    r = fed_srv.client().post("/v1/auth/init", json={"email": new_email("elsewhere")})
    assert "connections" not in r.json()
