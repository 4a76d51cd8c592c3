"""An app's tokens from the OpenID Connect provider at the gateways: the access token an app got
through the authorization-code flow passes Envoy and the edge worker unchanged (identity headers
name the person and the app; scopes decide routes; a third-party app carries no roles), and
taking the app's access back stops it at both within the feed's bound."""

from oidc_harness import Browser, RelyingParty, consent, make_client
from system_harness import bearer, denied, seen_by_upstream
from test_system_flows import admin_tokens, denied_within, set_roles

from authsrv import assert_error, login, sign_up


def test_an_apps_access_token_passes_both_gateways_until_access_is_taken_back(system, gateways, mail):
    srv = system.server
    admin = admin_tokens(system)["access_token"]
    client = make_client(srv, admin, name="Reports app", scopes=["reports:read"])
    email = sign_up(srv, mail)
    set_roles(system, email, ["admin"])
    browser = Browser(srv).log_in(email)
    rp = RelyingParty(srv, client, scope="openid email reports:read")
    page = browser.authorize(rp.authorization_url())
    token = rp.exchange(consent(browser, page).headers["location"])
    access = token["access_token"]
    for gw in gateways:
        seen = seen_by_upstream(gw, "GET", "/reports/daily", bearer(access))
        assert seen["x-auth-client-id"] == client["client_id"] and seen["x-auth-subject"].startswith("usr_"), (gw, seen)
        assert seen["x-auth-email"] == email and seen["x-auth-scope"] == "openid email reports:read", (gw, seen)
        assert seen.get("x-auth-roles", "") == "" and seen["x-auth-session"].startswith("ses_"), (gw, seen)
        # A third-party app's token is not the person's admin (their own token is).
        denied(gw, "GET", "/admin/users", bearer(access), status=403, code="insufficient_role")
        # The ID token is not an access token at the gateways either.
        status, headers, _ = gw.request("GET", "/hello", bearer(token["id_token"]), None)
        assert status == 401 and headers.get("x-error-code"), (gw, status, headers)
    me = login(srv, email)["access_token"]
    for gw in gateways:
        assert seen_by_upstream(gw, "GET", "/admin/users", bearer(me))["x-auth-roles"] == "admin"
    assert srv.client().delete(f"/v1/me/consents/{client['client_id']}", token=me).status_code == 204
    for gw in gateways:
        denied_within(gw, "/reports/daily", bearer(access), "session_revoked")
    assert_error(srv.client().get("/oauth2/userinfo", token=access), 401, "session_revoked")
