"""The filter configuration in Envoy: the shipped example works as shipped, a configuration the
filter refuses is rejected naming the field (and the running one stays in force), a new valid one
is picked up without a restart (ECDS from the file system), and the request id Envoy generates
is the error id of a denial."""

import json
import time

import jwt

from plugin_harness import DOCS, Envoy, render_filter, upstream_headers, wait_for

ADMIN_TOKEN_ROLES = ["admin"]


def inline_gateway(mint, routes):
    """A gateway that needs no fetching: inline HS256 key only (nothing for the fetcher to do)."""
    keys = mint.Keys(mint.HERE / "keys")
    return {
        "providers": [{
            "issuer": mint.MAIN_ISS, "audiences": ["api"], "algorithms": ["HS256"],
            "jwks": {"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": keys.secret_b64["hs1"]}]},
        }],
        "routes": routes,
    }, keys


def hs_token(mint, keys, **claims):
    n = int(time.time())
    c = {"iss": mint.MAIN_ISS, "aud": "api", "sub": "user-9", "iat": n, "exp": n + 600, **claims}
    return jwt.encode(c, keys.secret["hs1"], algorithm="HS256", headers={"kid": "hs1"})


def stat(envoy, name):
    return envoy.stats().get(name, 0)


def test_the_example_filter_config_works_as_shipped(tmp_path, wasm, mint, issuer, echo):
    """docs/envoy/authgate-filter.yaml with only the wasm path and the issuer's port changed;
    the feed credential comes from Envoy's environment, as the example sets it up."""
    text = (DOCS / "authgate-filter.yaml").read_text()
    assert text.count("127.0.0.1:8080") == 4
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{issuer.port}")
    text = text.replace("/etc/authgate/authgate_plugin.wasm", str(wasm))
    keys = mint.Keys(mint.HERE / "keys")
    iss = issuer.base
    issuer.set_doc("/.well-known/jwks.json", {"keys": [mint.public_jwk(keys.pub["ed1"], kid="ed1", alg="EdDSA", use="sig")]},
                   "application/jwk-set+json")
    n = int(time.time())
    feed = {"iss": iss, "iat": n, "exp": n + 600, "ver": 1, "watermark": n, "revoked": {"sid": [], "jti": [], "sub": [], "api_key": []}}
    issuer.set_feed(jwt.encode(feed, keys.priv["ed1"], algorithm="EdDSA", headers={"kid": "ed1", "typ": "revocations+jwt"}))
    issuer.feed_credential = ("agk_gateway-key", "gateway-secret")
    env = {"AUTHGATE_FEED_KEY_ID": "agk_gateway-key", "AUTHGATE_FEED_SECRET": "gateway-secret"}
    envoy = Envoy(tmp_path / "envoy", {}, issuer, echo, filter_text=text, env=env)
    try:
        envoy.wait_ready()

        def bearer(roles, org="org_operator"):
            c = {"iss": iss, "aud": "api", "sub": "user-1", "iat": n, "exp": n + 600, "roles": roles, "sid": "s1", "org": org}
            return [("authorization", "Bearer " + jwt.encode(c, keys.priv["ed1"], algorithm="EdDSA",
                                                           headers={"kid": "ed1", "typ": "at+jwt"}))]

        reader = bearer(["reader"])
        wait_for(lambda: envoy.request("GET", "/api/items", reader)[0] == 200, 20, 0.1, "the example to verify tokens")
        status, _, body = envoy.request("GET", "/api/items", reader)
        seen = dict(upstream_headers(body))
        assert seen["x-auth-subject"] == "user-1" and "authorization" not in seen, "strip_credential on /"
        assert envoy.request("GET", "/healthz", [])[0] == 200
        # /admin is for the operator organisation's admins; a tenant's admin is not one.
        status, headers, _ = envoy.request("GET", "/admin/users", reader)
        assert (status, headers["x-error-code"]) == (403, "insufficient_role")
        status, headers, _ = envoy.request("GET", "/admin/users", bearer(["admin"], org="org-tenant"))
        assert (status, headers["x-error-code"]) == (403, "org_not_allowed")
        assert envoy.request("GET", "/admin/users", bearer(["admin"]))[0] == 200
        assert stat(envoy, "wasmcustom.authgate.fetch.revocations.ok") >= 1, "feed fetched with the env credential"
        assert stat(envoy, "wasmcustom.authgate.fetch.revocations.failed") == 0
        # The credential is not in the configuration Envoy shows.
        _, _, dump = envoy.admin("/config_dump")
        assert b"gateway-secret" not in dump
    finally:
        envoy.stop()


def test_refused_configuration_names_the_field_and_the_running_one_stays(tmp_path, wasm, mint, issuer, echo):
    gateway, keys = inline_gateway(mint, [{"prefix": "/", "require": "authenticated"}])
    envoy = Envoy(tmp_path / "envoy", gateway, issuer, echo)
    try:
        envoy.wait_ready()
        good = [("authorization", f"Bearer {hs_token(mint, keys)}")]
        wait_for(lambda: envoy.request("GET", "/api", good)[0] == 200, 20, 0.1, "the first configuration")
        assert envoy.request("GET", "/api", [])[0] == 401

        bad = dict(gateway, routes=[{"prefix": "/", "require": "everyone"}])
        envoy.write_filter(render_filter(bad, wasm, envoy.workdir))
        wait_for(lambda: stat(envoy, "extension_config_discovery.http_filter.authgate.update_rejected") >= 1, 20, 0.1,
                 "the update to be rejected")
        wait_for(lambda: "invalid configuration: routes[0].require:" in envoy.log(), 5, 0.1, "the log line naming the field")
        assert envoy.request("GET", "/api", good)[0] == 200 and envoy.request("GET", "/api", [])[0] == 401, \
            "the previous configuration stays in force"

        bad_host = dict(gateway, host={"tick_ms": 1})
        envoy.write_filter(render_filter(bad_host, wasm, envoy.workdir))
        wait_for(lambda: "invalid configuration: host.tick_ms:" in envoy.log(), 20, 0.1, "the host field named")

        # A valid new configuration is picked up without a restart.
        reloads = stat(envoy, "extension_config_discovery.http_filter.authgate.config_reload")
        opened = dict(gateway, routes=[{"prefix": "/api", "require": "anonymous"}, {"prefix": "/", "require": "authenticated"}])
        envoy.write_filter(render_filter(opened, wasm, envoy.workdir))
        wait_for(lambda: envoy.request("GET", "/api", [])[0] == 200, 20, 0.1, "the new routes")
        assert stat(envoy, "extension_config_discovery.http_filter.authgate.config_reload") > reloads
        assert envoy.request("GET", "/other", [])[0] == 401
    finally:
        envoy.stop()


def test_refused_configuration_at_startup_fails_closed(tmp_path, wasm, mint, issuer, echo):
    gateway, _ = inline_gateway(mint, [{"prefix": "/", "require": "authenticated"}])
    gateway["providers"][0]["jwks_uri"] = "ftp://nowhere/jwks"
    envoy = Envoy(tmp_path / "envoy", gateway, issuer, echo)
    try:
        wait_for(lambda: "invalid configuration: providers[0].jwks_uri:" in envoy.log(), 30, 0.1, "the field in the log")
        envoy.wait_ready()
        status, _, body = envoy.request("GET", "/api", [])
        assert status >= 500, "no filter configuration: requests are refused, never passed through"
        try:
            json.loads(body)["headers"]
            raise AssertionError("the request reached the application")
        except (ValueError, KeyError, TypeError):
            pass
    finally:
        envoy.stop()


def test_denials_carry_the_request_id_envoy_generates(tmp_path, wasm, mint, issuer, echo):
    """docs/envoy/envoy.yaml has Envoy generate x-request-id when the client sends none and
    return it: a denial's x-error-id is that id, so a client's report and the access log agree."""
    gateway, _ = inline_gateway(mint, [{"prefix": "/", "require": "authenticated"}])
    envoy = Envoy(tmp_path / "envoy", gateway, issuer, echo)
    try:
        envoy.wait_ready()
        status, headers, body = envoy.request("GET", "/api/items", [])
        assert status == 401 and headers["x-error-code"] == "credential_missing"
        assert headers["x-error-id"] == headers["x-request-id"] and len(headers["x-error-id"]) >= 16
        assert json.loads(body)["error_id"] == headers["x-error-id"]
    finally:
        envoy.stop()
