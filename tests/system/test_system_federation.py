"""A person signed in through an organisation's identity provider (Entra ID's multi-tenant
shape, from the test's own provider, idp_peer.Peer) gets the same tokens as every other login:
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
