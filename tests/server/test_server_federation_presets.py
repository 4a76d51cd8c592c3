"""Federation presets and attacks, against an identity provider the test controls
(idp_peer.Peer): Google's `email_verified`, Microsoft personal accounts (no `email_verified`,
the consumers tenant), Entra ID multi-tenant (`{tenantid}` issuer, `tid`, the allowed tenants,
`xms_edov`), GitHub (OAuth 2.0 and its REST API); forged ID tokens (issuer, audience,
`alg: none`, an unpublished key, HS256 with the client secret, expired, another nonce, several
audiences without `azp`) and an authorization code injected into another round trip; and a
signed-in person linking, listing and unlinking an identity."""

import json
import secrets
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from authsrv import PASSWORD, admin_user, assert_error, login, new_email, sign_up
from test_server_federation import assert_page_error, authorize, callback, cookie, signed_in, sso, start
from test_server_memberships import new_org

CONSUMERS = "9188040d-6c67-4c5b-b112-36a304b66dad"


def tenant():
    return "%08x-%04x-%04x-%04x-%012x" % tuple(secrets.randbits(b) for b in (32, 16, 16, 16, 48))


@pytest.fixture(scope="module")
def peer():
    from idp_peer import Peer

    p = Peer()
    yield p
    p.stop()


def admin_of(srv, name):
    org = new_org(srv, name)
    _, admin = admin_user(srv, roles=("admin", "reader"), org=org)
    return org, admin["access_token"]


def connect(srv, token, org, peer=None, status=201, **body):
    client_id = "client-" + secrets.token_hex(3)
    secret = "secret-" + secrets.token_hex(6)
    if peer:
        peer.register(client_id, secret)
    req = {"name": "Peer", "client_id": client_id, "client_secret": secret, **body}
    r = srv.client().post(f"/v1/orgs/{org}/connections", json=req, token=token)
    assert r.status_code == status, r.text
    return r


def subject(tag):
    return f"{tag}-{secrets.token_hex(4)}"


def test_google_signs_in_verified_addresses_only(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Googlers")
    conn = connect(fed_srv, admin, org, peer, kind="google", issuer=peer.issuer(), roles=["reader"]).json()
    assert conn["kind"] == "google" and conn["scopes"] == "openid email profile" and conn["tenants"] == []
    sub, email = subject("g"), new_email("google")
    peer.set_user(sub, email=email, email_verified=True)
    claims = signed_in(sso(fed_srv, conn["id"], sub))
    assert claims["email"] == email and claims["org"] == org and claims["roles"] == ["reader"] and claims["amr"] == ["fed"]
    other = subject("g")
    peer.set_user(other, email=new_email("unverified"), email_verified=False)
    assert_page_error(sso(fed_srv, conn["id"], other), 403, "email_not_verified")
    # Without an issuer the preset is Google's own, which this offline server may not reach.
    r = connect(fed_srv, admin, org, status=400, kind="google")
    assert_error(r, 400, "invalid_connection")


def test_microsoft_personal_accounts_are_verified_in_the_consumers_tenant_only(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Personal")
    conn = connect(fed_srv, admin, org, peer, kind="microsoft", issuer=peer.issuer(CONSUMERS)).json()
    sub, email = subject("msa"), new_email("msa")
    peer.set_user(sub, email=email, tid=CONSUMERS)  # no email_verified: Microsoft's shape
    assert signed_in(sso(fed_srv, conn["id"], sub))["email"] == email
    # A token of that issuer naming another tenant vouches for no address.
    stray = subject("msa")
    peer.set_user(stray, email=new_email("stray"), tid=tenant())
    assert_page_error(sso(fed_srv, conn["id"], stray), 403, "email_not_verified")


def test_entra_signs_in_the_allowed_tenants_only(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Contoso")
    mine, theirs = tenant(), tenant()
    authority = peer.issuer("organizations")
    # The tenants are required, GUIDs; the authority is a multi-tenant one.
    for bad in [{}, {"tenants": ["contoso.onmicrosoft.com"]}]:
        assert "tenants" in connect(fed_srv, admin, org, status=400, kind="entra", issuer=authority, **bad).json()["message"]
    r = connect(fed_srv, admin, org, status=400, kind="entra", issuer=peer.issuer(mine), tenants=[mine])
    assert "organizations" in r.json()["message"]
    assert "tenants" in connect(fed_srv, admin, org, status=400, kind="google", issuer=peer.issuer(), tenants=[mine]).json()["message"]
    conn = connect(fed_srv, admin, org, peer, kind="entra", issuer=authority, tenants=[mine.upper()]).json()
    assert conn["tenants"] == [mine]
    # Entra's `email` is what a tenant admin typed: without `xms_edov` it vouches for nothing.
    sub = subject("entra")
    peer.set_user(sub, email=new_email("contoso"), tid=mine)
    assert_page_error(sso(fed_srv, conn["id"], sub), 403, "email_not_verified")
    # With the domain owner verified: an account.
    email = new_email("edov")
    peer.set_user(sub, email=email, tid=mine, xms_edov=True)
    first = signed_in(sso(fed_srv, conn["id"], sub))
    assert first["email"] == email and first["org"] == org
    # Or an address of a domain the organisation holds (its own tenant assigns those).
    domain = f"contoso-{secrets.token_hex(3)}.example"
    fed_srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    held = subject("entra")
    peer.set_user(held, email=f"pat@{domain}", tid=mine)
    assert signed_in(sso(fed_srv, conn["id"], held))["email"] == f"pat@{domain}"
    # Another tenant's people: refused, however verified their address.
    outsider = subject("entra")
    peer.set_user(outsider, email=new_email("outsider"), tid=theirs, xms_edov=True)
    assert_page_error(sso(fed_srv, conn["id"], outsider), 403, "id_token_invalid")
    # An allowed tenant's issuer with another tenant's `tid`: refused.
    peer.set_user(outsider, email=new_email("outsider"), tid=theirs, xms_edov=True)
    peer.forge_next(iss=peer.issuer(mine))
    assert_page_error(sso(fed_srv, conn["id"], outsider), 403, "id_token_invalid")
    # The same `sub` in another tenant is another person: the tenant is part of the subject.
    peer.set_user(sub, email=email, tid=mine, xms_edov=True)
    assert signed_in(sso(fed_srv, conn["id"], sub))["sub"] == first["sub"]


def test_github_signs_in_a_verified_primary_address(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Octo")
    conn = connect(fed_srv, admin, org, peer, kind="github", issuer=peer.github()).json()
    assert conn["scopes"] == "read:user user:email" and conn["kind"] == "github"
    login_name, email = subject("octo"), new_email("octo")
    uid = secrets.randbelow(10**9)
    peer.set_user(login_name, id=uid, emails=[
        {"email": new_email("secondary"), "primary": False, "verified": True, "visibility": None},
        {"email": email, "primary": True, "verified": True, "visibility": "private"},
    ])
    location, _ = start(fed_srv, conn["id"])
    q = parse_qs(urlparse(location).query)
    assert urlparse(location).path == "/gh/login/oauth/authorize" and q["code_challenge_method"] == ["S256"] and "nonce" not in q
    claims = signed_in(sso(fed_srv, conn["id"], login_name))
    assert claims["email"] == email and claims["org"] == org
    # A primary address GitHub has not verified: refused.
    unverified = subject("octo")
    peer.set_user(unverified, id=secrets.randbelow(10**9), emails=[{"email": new_email("nv"), "primary": True, "verified": False}])
    assert_page_error(sso(fed_srv, conn["id"], unverified), 403, "email_not_verified")
    # GitHub refuses a code with 200 and an `error`: a code injected into another round trip
    # (its PKCE verifier is not the code's) signs nobody in.
    injected(fed_srv, conn["id"], login_name)


def injected(srv, conn_id, sub):
    """Code injection: the attacker's code (from their own round trip) with a victim's state and
    binding cookie. The verifier sent is the victim's: the provider refuses the code."""
    attacker_location, _ = start(srv, conn_id)
    attacker_back = authorize(attacker_location, sub)
    victim_location, victim_bound = start(srv, conn_id)
    code = parse_qs(urlparse(attacker_back).query)["code"][0]
    state = parse_qs(urlparse(victim_location).query)["state"][0]
    assert_page_error(callback(f"{srv.url}/login/sso/callback?code={code}&state={state}", victim_bound), 403, "sso_failed")


def test_forged_id_tokens_are_refused(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Forgeries")
    conn = connect(fed_srv, admin, org, peer, issuer=peer.issuer()).json()
    sub = subject("victim")
    peer.set_user(sub, email=new_email("victim"), email_verified=True)
    forgeries = [
        {"iss": peer.issuer() + "/other"},
        {"aud": "another-client"},
        {"aud": [conn["client_id"], "another-client"]},  # several audiences, no azp
        {"alg": "none"},
        {"key": "stranger"},
        {"alg": "HS256"},  # signed with the client secret: algorithm confusion
        {"exp": int(time.time()) - 120},  # beyond the 60 s skew
        {"nonce": "another-round-trip"},
        {"nonce": None},
    ]
    for forgery in forgeries:
        peer.forge_next(**forgery)
        assert_page_error(sso(fed_srv, conn["id"], sub), 403, "id_token_invalid")
    # Nobody was signed in or created.
    assert [u["email"] for u in fed_srv.client().get("/v1/users", token=admin).json() if u["email"] == peer.users[sub]["email"]] == []
    # Several audiences with this client as `azp`: accepted, as the specification says.
    peer.forge_next(aud=[conn["client_id"], "another-client"], azp=conn["client_id"])
    assert signed_in(sso(fed_srv, conn["id"], sub))["org"] == org
    injected(fed_srv, conn["id"], sub)


def test_a_signed_in_person_links_lists_and_unlinks_an_identity(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Linkers")
    conn = connect(fed_srv, admin, org, peer, issuer=peer.issuer(), create_accounts=False).json()
    # A person of the organisation with a password; the identity's address is another one,
    # not even verified: linking rests on both sign-ins, not on the address.
    email = new_email("linker")
    fed_srv.cli("admin", "create-user", "--email", email, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    sub = subject("linked")
    peer.set_user(sub, email=new_email("elsewhere"), email_verified=False)
    assert_page_error(sso(fed_srv, conn["id"], sub), 403, "email_not_verified")
    me = login(fed_srv, email)["access_token"]
    c = fed_srv.client()
    assert c.get("/v1/me/providers", token=me).json() == [{"id": conn["id"], "name": "Peer", "kind": "oidc"}]
    # The cookie the account page would set (its name as the server spells it).
    sso_cookie = start(fed_srv, conn["id"])[1][0]
    r = c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=me)
    assert r.status_code == 200, r.text
    started = r.json()
    back = authorize(started["authorization_url"], sub)
    # The answer in a browser without this round trip's state: refused.
    assert_page_error(callback(back, None), 400, "sso_state_invalid")
    r = callback(back, (sso_cookie, started["state"]))
    assert r.status_code == 200 and "done=identity_linked" in r.text, r.text[:300]
    assert not any("authgate_at" in x for x in r.raw.headers.getlist("set-cookie"))
    [identity] = c.get("/v1/me/identities", token=me).json()
    assert identity["connection_id"] == conn["id"] and identity["org_id"] == org and identity["kind"] == "oidc"
    # Now the identity signs in this account; that session is a complete login of it (the
    # provider's policy governs its factors): it may link the organisation's other provider.
    resp = sso(fed_srv, conn["id"], sub)
    claims = signed_in(resp)
    assert claims["email"] == email and claims["org"] == org
    other_conn = connect(fed_srv, admin, org, peer, issuer=peer.issuer(tenant()), name="Second").json()
    fed_token = cookie(resp, "authgate_at")[1]
    r = c.post("/v1/me/identities", json={"connection_id": other_conn["id"]}, token=fed_token)
    assert r.status_code == 200 and r.json()["authorization_url"].startswith(peer.url), r.text
    # One identity per provider; the same identity never signs in two accounts.
    assert_error(c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=me), 409, "identity_exists")
    second = new_email("second")
    fed_srv.cli("admin", "create-user", "--email", second, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    other = login(fed_srv, second)["access_token"]
    started = c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=other).json()
    r = callback(authorize(started["authorization_url"], sub), (sso_cookie, started["state"]))
    assert_page_error(r, 409, "identity_in_use")
    # Unlink: it signs nobody in any more (the connection creates no accounts); audited.
    assert c.delete(f"/v1/me/identities/{conn['id']}", token=me).status_code == 204
    assert_error(c.delete(f"/v1/me/identities/{conn['id']}", token=me), 404, "identity_not_found")
    assert c.get("/v1/me/identities", token=me).json() == []
    assert_page_error(sso(fed_srv, conn["id"], sub), 403, "email_not_verified")
    actions = [e["action"] for e in c.get("/v1/audit", token=admin, params={"action": "identity."}).json()]
    assert "identity.linked" in actions and "identity.unlinked" in actions


def test_linking_is_for_members_with_a_recent_login(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Closed")
    conn = connect(fed_srv, admin, org, peer, issuer=peer.issuer()).json()
    # Someone of another organisation cannot link (and so join) this one's provider.
    outsider = sign_up(fed_srv, mail)
    token = login(fed_srv, outsider)["access_token"]
    assert fed_srv.client().get("/v1/me/providers", token=token).json() == []
    r = fed_srv.client().post("/v1/me/identities", json={"connection_id": conn["id"]}, token=token)
    assert_error(r, 404, "connection_not_found")
    # A session that did not sign in with every factor the account requires cannot add a way in.
    email = new_email("partial")
    fed_srv.cli("admin", "create-user", "--email", email, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    partial = login(fed_srv, email)["access_token"]
    c = fed_srv.client()
    assert c.put("/v1/me/mfa", json={"method": "email_otp", "password": PASSWORD}, token=partial).status_code == 204
    assert_error(c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=partial), 403, "reauthentication_required")


def test_an_organisation_that_does_not_allow_sso_signs_nobody_in_through_its_providers(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "No SSO")
    conn = connect(fed_srv, admin, org, peer, issuer=peer.issuer()).json()
    domain = f"nosso-{secrets.token_hex(3)}.example"
    fed_srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    sub = subject("nosso")
    peer.set_user(sub, email=f"sam@{domain}", email_verified=True)
    c = fed_srv.client()
    assert [x["id"] for x in c.post("/v1/auth/init", json={"email": f"sam@{domain}"}).json()["connections"]] == [conn["id"]]
    location, bound = start(fed_srv, conn["id"])
    back = authorize(location, sub)
    r = c.put(f"/v1/orgs/{org}/auth", json={"methods": ["password"], "mfa_required": False}, token=admin)
    assert r.status_code == 200, r.text
    # A round trip started before the rules changed ends refused; new ones do not start.
    assert_page_error(callback(back, bound), 403, "method_not_allowed")
    r = requests.get(f"{fed_srv.url}/login/sso/{conn['id']}", allow_redirects=False, timeout=10)
    assert_page_error(r, 403, "method_not_allowed")
    assert "connections" not in c.post("/v1/auth/init", json={"email": f"sam@{domain}"}).json()
    email = new_email("member")
    fed_srv.cli("admin", "create-user", "--email", email, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    me = login(fed_srv, email)["access_token"]
    assert c.get("/v1/me/providers", token=me).json() == []
    assert_error(c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=me), 403, "method_not_allowed")
    # `sso` back among the methods: the provider signs in again.
    assert c.put(f"/v1/orgs/{org}/auth", json={"methods": ["password", "sso"], "mfa_required": True}, token=admin).status_code == 200
    assert signed_in(sso(fed_srv, conn["id"], sub))["email"] == f"sam@{domain}"


def test_discovery_and_keys_are_read_once_and_again_when_the_provider_rotates(fed_srv, peer, mail):
    org, admin = admin_of(fed_srv, "Cached")
    # An issuer of its own (a tenant path nobody else uses): nothing of it is cached yet.
    issuer = peer.issuer(tenant())
    conn = connect(fed_srv, admin, org, peer, issuer=issuer).json()
    sub = subject("cached")
    peer.set_user(sub, email=new_email("cached"), email_verified=True)
    before = dict(peer.reads)
    for _ in range(3):
        signed_in(sso(fed_srv, conn["id"], sub))
    # One discovery read and one key read for three sign-ins (the registration's read is not
    # a round trip's: it checks afresh).
    assert peer.reads["discovery"] - before["discovery"] == 1, (before, peer.reads)
    assert peer.reads["jwks"] - before["jwks"] <= 1, (before, peer.reads)
    # The provider rotates: the unknown key id makes the server read the keys again at once.
    peer.rotate()
    keys_before = peer.reads["jwks"]
    signed_in(sso(fed_srv, conn["id"], sub))
    assert peer.reads["jwks"] == keys_before + 1


def test_the_operator_connects_a_provider_from_the_command_line(fed_srv, peer, mail):
    org = new_org(fed_srv, "Operated")
    client_id = "cli-" + secrets.token_hex(3)
    peer.register(client_id, "from-the-environment")
    out = fed_srv.cli("orgs", "add-connection", "--org", org, "--name", "Operated SSO", "--issuer", peer.issuer(), "--client-id", client_id,
                      "--role", "reader", env={"AUTHGATE_CLIENT_SECRET": "from-the-environment"})
    conn = json.loads(out.stdout)
    assert conn["org_id"] == org and conn["kind"] == "oidc" and conn["has_client_secret"] and conn["roles"] == ["reader"]
    sub = subject("operated")
    peer.set_user(sub, email=new_email("operated"), email_verified=True)
    assert signed_in(sso(fed_srv, conn["id"], sub))["roles"] == ["reader"]
    # What the API refuses, the command line refuses too, naming the field.
    for args, why in [(["--kind", "ldap"], "--kind"), (["--role", "platform_admin"], "platform role"),
                      (["--kind", "entra", "--issuer", peer.issuer("organizations")], "tenants")]:
        r = fed_srv.cli("orgs", "add-connection", "--org", org, "--name", "x", "--client-id", "x", *(["--issuer", peer.issuer()] if "--issuer" not in args else []),
                        *args, check=False)
        assert r.returncode != 0 and why in r.stderr, (args, r.stderr)
