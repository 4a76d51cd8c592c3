"""What gateways consume: JWKS, discovery, the signed revocation feed, `gateway-config`; and a
cross-check with the `authgate` CLI (auth-core, the gateways' own verifier) on what we issue."""

import json
import subprocess
import time

import jwt
import requests
from authsrv import admin_user, api_key, assert_error, gateway_key, key_headers, login, new_email, request_api_key, sign_up


def fetch_feed(srv, headers, etag=None):
    h = dict(headers)
    if etag:
        h["if-none-match"] = etag
    return requests.get(srv.url + "/v1/revocations", headers=h, timeout=10)


def decode_feed(srv, body):
    jwks = requests.get(srv.url + "/.well-known/jwks.json", timeout=10).json()
    header = jwt.get_unverified_header(body)
    assert header["typ"] == "revocations+jwt"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(body, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], options={"verify_aud": False})


def test_jwks_and_discovery(srv):
    r = requests.get(srv.url + "/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/jwk-set+json"
    assert "max-age=" in r.headers["cache-control"] and r.headers["etag"]
    keys = r.json()["keys"]
    assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)
    r2 = requests.get(srv.url + "/.well-known/jwks.json", headers={"if-none-match": r.headers["etag"]}, timeout=10)
    assert r2.status_code == 304
    d = requests.get(srv.url + "/.well-known/openid-configuration", timeout=10).json()
    assert d["issuer"] == srv.issuer and d["jwks_uri"] == srv.issuer + "/.well-known/jwks.json"
    assert d["token_endpoint"] == srv.issuer + "/oauth2/token" and "client_credentials" in d["grant_types_supported"]


def test_revocation_feed(srv, mail):
    cfg, gw = gateway_key(srv)
    assert cfg["revocations"]["uri"] == srv.issuer + "/v1/revocations"
    assert_error(requests.get(srv.url + "/v1/revocations", timeout=10), 401, "credential_missing")
    admin_addr, admin = admin_user(srv, roles=("admin", "reader"))
    c = srv.client()
    # An API key without the gateway role is refused.
    k = api_key(srv, mail, admin["access_token"], admin_addr, ["reader"])
    assert_error(fetch_feed(srv, key_headers(k)), 403, "insufficient_role")

    r = fetch_feed(srv, gw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/jwt" and r.headers["etag"]
    feed = decode_feed(srv, r.text)
    assert feed["iss"] == srv.issuer and feed["exp"] - feed["iat"] == 300
    assert feed["iat"] - 2 <= feed["watermark"] < feed["iat"] and k_iat(k) <= feed["iat"] and feed["ver"] >= 1
    # An active key is not listed.
    assert k["id"] not in {e["id"] for e in feed["revoked"]["api_key"]}
    # What a gateway holds is answered 304 while nothing changed. A key newer than the
    # watermark moves it on a second after its creation, which re-signs the feed (a new etag):
    # wait until the newest key is covered, so no such move falls between the two fetches.
    while time.time() < k_iat(k) + 2:
        time.sleep(0.05)
    r = fetch_feed(srv, gw)
    assert r.status_code == 200 and decode_feed(srv, r.text)["watermark"] >= k_iat(k)
    assert fetch_feed(srv, gw, r.headers["etag"]).status_code == 304

    # Revoking a session, a key, a member (each of their sessions there) or an account (its
    # subject) shows at once.
    user_addr = sign_up(srv, mail)
    s = login(srv, user_addr)
    assert c.post("/v1/sessions/logout", token=s["access_token"]).status_code == 204
    assert c.delete(f"/v1/api-keys/{k['id']}", token=admin["access_token"]).status_code == 204
    victim = login(srv, sign_up(srv, mail))
    victim_id = jwt.decode(victim["access_token"], options={"verify_signature": False})["sub"]
    assert c.post(f"/v1/users/{victim_id}/disable", token=admin["access_token"]).status_code == 204
    erased = login(srv, sign_up(srv, mail))
    erased_id = jwt.decode(erased["access_token"], options={"verify_signature": False})["sub"]
    assert c.delete(f"/v1/users/{erased_id}", token=admin["access_token"]).status_code == 204
    feed3 = decode_feed(srv, fetch_feed(srv, gw).text)
    assert feed3["ver"] > feed["ver"]
    sids = {e["id"]: e for e in feed3["revoked"]["sid"]}
    assert s["session_id"] in sids and sids[s["session_id"]]["exp"] >= int(time.time()) + 590
    assert victim["session_id"] in sids
    # A revoked key is listed until the key itself expires.
    keys = {e["id"]: e for e in feed3["revoked"]["api_key"]}
    assert keys[k["id"]]["exp"] == k["expires_at"]
    subs = {e["id"]: e for e in feed3["revoked"]["sub"]}
    assert erased_id in subs and subs[erased_id]["iat_before"] >= jwt.decode(erased["access_token"], options={"verify_signature": False})["iat"]


def test_feed_does_not_grow_with_key_requests(srv, mail):
    """A key request is not a credential: however many a user makes (up to the cap), the feed
    does not change; only minted keys, once revoked, are listed."""
    _, gw = gateway_key(srv)
    addr, admin = admin_user(srv, roles=("admin", "reader"))
    before = fetch_feed(srv, gw)
    for i in range(5):
        request_api_key(srv, mail, admin["access_token"], addr, ["reader"], name=f"never-verified-{i}")
    assert_error(srv.client().post("/v1/api-keys", json={"name": "one too many"}, token=admin["access_token"]), 409, "too_many_pending_api_keys")
    after = fetch_feed(srv, gw, before.headers["etag"])
    assert after.status_code in (200, 304), after.text
    if after.status_code == 200:  # re-signed for freshness only: the same version and lists
        fb, fa = decode_feed(srv, before.text), decode_feed(srv, after.text)
        assert (fa["ver"], fa["revoked"]) == (fb["ver"], fb["revoked"])


def k_iat(k):
    import base64

    raw = k["key_id"][4:]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))["iat"]


def authgate_verify(backend, tmp_path, cfg, srv, headers, path="/orders"):
    cfg_file = tmp_path / "gw.json"
    cfg_file.write_text(json.dumps(cfg))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(requests.get(srv.url + "/.well-known/jwks.json", timeout=10).text)
    feed_file = tmp_path / "feed.jws"
    cred = cfg["revocations"]["credential"]
    feed_file.write_text(fetch_feed(srv, {"x-api-key": cred["key_id"], "x-api-secret": cred["secret"]}).text)
    args = [str(backend.authgate), "verify", "--config", str(cfg_file), "--feed", str(feed_file), "--path", path]
    if cfg["providers"][0].get("jwks_uri"):
        args += ["--jwks", f"0={jwks_file}"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_gateway_config_and_auth_core_cross_check(srv, mail, backend, tmp_path):
    cfg, _ = gateway_key(srv)
    # The printed document is exactly the auth-core schema (authgate config check loads it).
    (tmp_path / "check.json").write_text(json.dumps(cfg))
    out = subprocess.run([str(backend.authgate), "config", "check", str(tmp_path / "check.json")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    p = cfg["providers"][0]
    assert p["issuer"] == srv.issuer and p["audiences"] == ["api"] and p["jwks_uri"] == srv.issuer + "/.well-known/jwks.json"
    assert cfg["api_keys"]["hmac_keys"] and cfg["revocations"]["credential"]["key_id"].startswith("agk_")

    admin_addr, admin = admin_user(srv, roles=("admin", "reader"))
    d = authgate_verify(backend, tmp_path, cfg, srv, {"authorization": "Bearer " + admin["access_token"]})
    assert d["allow"] and d["identity"]["session_id"] == admin["session_id"] and d["identity"]["roles"] == ["admin", "reader"]

    c = srv.client()
    k = api_key(srv, mail, admin["access_token"], admin_addr, ["reader"], name="gwtest")
    kh = key_headers(k)
    # Usable at the gateway once a feed's watermark covers its iat (the next second's feed).
    while int(time.time()) <= k_iat(k):
        time.sleep(0.1)
    d = authgate_verify(backend, tmp_path, cfg, srv, kh)
    assert d["allow"] and d["identity"]["method"] == "api_key" and d["identity"]["roles"] == ["reader"], d

    assert c.post("/v1/sessions/logout", token=admin["access_token"]).status_code == 204
    d = authgate_verify(backend, tmp_path, cfg, srv, {"authorization": "Bearer " + admin["access_token"]})
    assert not d["allow"] and d["code"] == "session_revoked"
    assert c.delete(f"/v1/api-keys/{k['id']}", token=login(srv, admin_addr)["access_token"]).status_code == 204
    d = authgate_verify(backend, tmp_path, cfg, srv, kh)
    assert not d["allow"] and d["code"] == "api_key_revoked"


def test_key_rotation_with_overlap(backend, mail):
    srv = backend.isolated().server()
    addr = sign_up(srv, mail)
    before = login(srv, addr)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    out = json.loads(srv.cli("keys", "rotate", "--alg", "ES256", "--activate-in", "0").stdout)
    assert out["alg"] == "ES256" and out["kid"] != old_kid
    deadline = time.time() + 10
    while time.time() < deadline:
        kids = {k["kid"] for k in requests.get(srv.url + "/.well-known/jwks.json", timeout=10).json()["keys"]}
        if out["kid"] in kids:
            break
        time.sleep(0.2)
    assert {old_kid, out["kid"]} <= kids, "both keys are published during the overlap"
    while time.time() < out["activates_at"] + 1.5:  # activation, then the next key reload
        time.sleep(0.1)
    after = login(srv, addr)
    h = jwt.get_unverified_header(after["access_token"])
    assert h["kid"] == out["kid"] and h["alg"] == "ES256"
    c = srv.client()
    assert c.get("/v1/me", token=before["access_token"]).status_code == 200, "tokens of the old key stay valid"
    assert c.get("/v1/me", token=after["access_token"]).status_code == 200
    srv.stop()


def test_admin_create_user_cli(srv):
    addr = new_email("cli")
    out = srv.cli("admin", "create-user", "--email", addr, "--role", "editor", input="too short\n", check=False)
    assert out.returncode != 0 and "password" in out.stderr
    # Roles are tenant roles, or platform roles in the operator organisation only.
    out = srv.cli("admin", "create-user", "--email", addr, "--role", "ops", input="a perfectly fine passphrase\n", check=False)
    assert out.returncode != 0 and "roles.tenant" in out.stderr
    out = srv.cli("admin", "create-user", "--email", addr, "--role", "gateway", input="a perfectly fine passphrase\n", check=False)
    assert out.returncode != 0 and "operator organisation" in out.stderr
    out = srv.cli("admin", "create-user", "--email", addr, "--role", "editor", input="a perfectly fine passphrase\n")
    assert json.loads(out.stdout)["roles"] == ["editor"]
    t = login(srv, addr, "a perfectly fine passphrase")
    assert jwt.decode(t["access_token"], options={"verify_signature": False})["roles"] == ["editor"]
    assert srv.cli("admin", "create-user", "--email", addr, input="a perfectly fine passphrase\n", check=False).returncode != 0


def test_other_signing_algorithms_verify_at_the_gateway(backend, mail, tmp_path):
    """ES256 and RS256 keys are published in the JWKS; HS256 keys never are, and gateway-config
    hands them over inline. Each verifies in auth-core (authgate CLI) and, for the public ones, PyJWT."""
    for alg, kty in [("RS256", "RSA"), ("ES256", "EC"), ("HS256", None)]:
        b = backend.isolated()
        srv = b.server(AUTHGATE_TOKENS__ALG=alg)
        addr = sign_up(srv, mail)
        t = login(srv, addr)
        h = jwt.get_unverified_header(t["access_token"])
        assert h["alg"] == alg and h["typ"] == "at+jwt"
        keys = requests.get(srv.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
        cfg, _ = gateway_key(srv)
        if kty:
            assert [k["kty"] for k in keys] == [kty] and all("d" not in k for k in keys)
            jwk = keys[0]
            claims = jwt.decode(t["access_token"], jwt.PyJWK(jwk).key, algorithms=[alg], audience="api", issuer=srv.issuer)
            assert claims["email"] == addr
            assert "jwks" not in cfg["providers"][0]
        else:
            assert keys == [], "symmetric keys are never published"
            assert cfg["providers"][0]["jwks"]["keys"][0]["kty"] == "oct" and "jwks_uri" not in cfg["providers"][0]
        assert cfg["providers"][0]["algorithms"] == [alg]
        d = authgate_verify(b, tmp_path, cfg, srv, {"authorization": "Bearer " + t["access_token"]})
        assert d["allow"], d
        srv.stop()
