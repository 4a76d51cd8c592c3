"""A person signed in through an organisation's identity provider (Entra ID's multi-tenant
shape, from the test's own provider, idp_peer.Peer; a SAML IdP, saml_peer.Idp) gets the same
tokens as every other login:
the access token passes Envoy and the edge worker with the organisation and the roles the
connection gives (`amr` `fed` in the claims), and disabling the member stops it at both within
the feed's bound."""

import secrets

from idp_peer import Peer
from system_harness import bearer, seen_by_upstream
from test_server_federation import cookie, signed_in, sso
from test_system_flows import admin_tokens, denied_within


def test_a_federated_members_token_passes_both_gateways_until_the_member_is_disabled(system, gateways, mail):
    srv = system.server
    admin = admin_tokens(system)["access_token"]
    c = system.client()
    org = c.get("/v1/me", token=admin).json()["org_id"]
    peer = Peer()
    try:
        tid = "0f0e0d0c-0b0a-4909-8807-060504030201"
        client_id = "gateways-" + secrets.token_hex(3)
        peer.register(client_id, "s3cret")
        body = {"kind": "entra", "name": "Contoso", "issuer": peer.issuer("organizations"), "tenants": [tid],
                "client_id": client_id, "client_secret": "s3cret", "roles": ["admin"]}
        r = c.post(f"/v1/orgs/{org}/connections", json=body, token=admin)
        assert r.status_code == 201, r.text
        conn = r.json()
        email = f"fed-{secrets.token_hex(4)}@example.com"
        peer.set_user("pat", email=email, tid=tid, xms_edov=True)
        resp = sso(srv, conn["id"], "pat")
        claims = signed_in(resp)
        access = cookie(resp, "authgate_at")[1]
        assert claims["amr"] == ["fed"] and claims["org"] == org and claims["roles"] == ["admin"]
        for gw in gateways:
            seen = seen_by_upstream(gw, "GET", "/admin/users", bearer(access))
            assert seen["x-auth-org"] == org and seen["x-auth-roles"] == "admin" and seen["x-auth-email"] == email, (gw, seen)
            assert seen["x-auth-subject"] == claims["sub"] and seen["x-auth-method"] == "jwt", (gw, seen)
        assert c.post(f"/v1/users/{claims['sub']}/disable", token=admin).status_code == 204
        for gw in gateways:
            denied_within(gw, "/admin/users", bearer(access), "session_revoked")
    finally:
        peer.stop()


def test_a_saml_members_mapped_roles_reach_both_gateways_and_leave_with_the_idps_word(system, gateways, mail):
    """A SAML IdP's groups, within the connection's allowed roles, are the roles both gateways
    see; when the IdP stops asserting one, the next sign-in's token lacks it and the gateways
    refuse the route that needs it."""
    from saml_peer import Idp
    from system_harness import denied
    from test_server_saml import saml_connection, saml_sso

    srv = system.server
    admin = admin_tokens(system)["access_token"]
    c = system.client()
    org = c.get("/v1/me", token=admin).json()["org_id"]
    idp = Idp()
    try:
        domain = f"saml-{secrets.token_hex(3)}.example"
        srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
        conn = saml_connection(srv, admin, org, idp, roles_attribute="groups", allowed_roles=["admin"])
        email, name_id = f"sam@{domain}", "sam-" + secrets.token_hex(3)
        resp = saml_sso(srv, idp, conn, name_id, attributes={"email": email, "groups": ["admin", "root"]})
        claims = signed_in(resp)
        access = cookie(resp, "authgate_at")[1]
        assert claims["amr"] == ["fed"] and claims["org"] == org and claims["roles"] == ["admin"]
        for gw in gateways:
            seen = seen_by_upstream(gw, "GET", "/admin/users", bearer(access))
            assert seen["x-auth-org"] == org and seen["x-auth-roles"] == "admin" and seen["x-auth-email"] == email, (gw, seen)
        # The IdP no longer puts the person in `admin`: the next sign-in's token has no role.
        resp = saml_sso(srv, idp, conn, name_id, attributes={"email": email})
        later = cookie(resp, "authgate_at")[1]
        assert signed_in(resp)["sub"] == claims["sub"] and signed_in(resp)["roles"] == []
        for gw in gateways:
            denied(gw, "GET", "/admin/users", bearer(later), status=403, code="insufficient_role")
    finally:
        idp.stop()
