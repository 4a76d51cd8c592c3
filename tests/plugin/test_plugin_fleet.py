"""JWKS and revocation-feed handling in a real Envoy with two worker threads: rotation, the
unknown-kid refetch, the stale bound with the issuer down, revocation latency, and one fetcher
for all workers. Each test has its own Envoy and issuer with small intervals."""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from plugin_harness import Envoy, counted_lines, upstream_headers, wait_for

TICK_MS = 200
JWKS = "/jwks/0.json"
FEED = "/v1/revocations"


class Setup:
    """A gateway with one issuer (fetched JWKS), API keys and the feed, and the keys to mint."""

    def __init__(self, mint, issuer, *, fetch: dict, feed_refresh_s: int = 1, credential=None):
        self.mint = mint
        self.issuer = issuer
        self.now = int(time.time())
        self.m = mint.Minter(mint.Keys(mint.HERE / "keys"), self.now, "uri")
        self.keys = self.m.jwks()[mint.MAIN_ISS]["keys"]
        self.feed_ver = 1
        issuer.set_jwks(0, {"keys": self.keys})
        self.publish_feed()
        self.gateway = {
            "host": {"upstreams": {issuer.base: "authgate_issuer"}, "tick_ms": TICK_MS},
            "providers": [{
                "issuer": mint.MAIN_ISS, "audiences": ["api"], "jwks_uri": f"{issuer.base}{JWKS}",
                "algorithms": ["EdDSA", "ES256", "RS256"], "typ": ["at+jwt"],
            }],
            "api_keys": {"hmac_keys": [{"kid": "hk1", "secret": self.m.k.secret_b64["hk1"]}]},
            "revocations": {"uri": f"{issuer.base}{FEED}", "refresh_s": feed_refresh_s},
            "routes": [
                {"prefix": "/open", "require": "authenticated", "on_stale": "fail_open"},
                {"prefix": "/", "require": "authenticated"},
            ],
            "fetch": {"retry_min_s": 1, "retry_max_s": 2, "timeout_s": 2, **fetch},
        }

    def publish_feed(self, sids=(), key_ids=()):
        """Signs and serves a feed (a new version each time), as the auth-server would."""
        n = int(time.time())
        claims = {
            "iss": self.mint.MAIN_ISS, "iat": n, "exp": n + 3600, "ver": self.feed_ver, "watermark": n,
            "revoked": {
                "sid": [{"id": s, "exp": n + 3600} for s in sids],
                "jti": [], "sub": [],
                "api_key": [{"id": k, "exp": n + 86400} for k in key_ids],
            },
        }
        self.feed_ver += 1
        self.issuer.set_feed(jwt.encode(claims, self.m.k.priv["ed1"], algorithm="EdDSA",
                                        headers={"kid": "ed1", "typ": "revocations+jwt"}))

    def token(self, kid="ed1", key=None, **claims) -> str:
        c = self.m.at_claims(f"t{time.time_ns()}", iat=int(time.time()) - 5, exp=int(time.time()) + 600, **claims)
        if key is None:
            return self.m.pyjwt(c, kid)
        return jwt.encode(c, key, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})

    def api_key(self, label: str) -> tuple[str, str, str]:
        claims = self.m.key_claims(label, iat=int(time.time()) - 60)
        key_id, secret = self.m.api_key(claims)
        return key_id, secret, claims["id"]


def bearer(token):
    return [("authorization", f"Bearer {token}")]


def start(tmp_path, setup, issuer, echo) -> Envoy:
    envoy = Envoy(tmp_path / "envoy", setup.gateway, issuer, echo)
    envoy.wait_ready()
    token = setup.token()
    wait_for(lambda: envoy.request("GET", "/api", bearer(token))[0] == 200, 20, 0.1, "keys and feed fetched")
    return envoy


def code(response) -> str | None:
    return response[1].get("x-error-code")


@pytest.fixture
def envoys():
    started = []
    yield started
    for e in started:
        e.stop()


def test_identity_headers_reach_upstream_and_spoofed_ones_do_not(tmp_path, wasm, mint, issuer, echo, envoys):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 300})
    setup.gateway["routes"].insert(0, {"prefix": "/strip", "require": "authenticated", "strip_credential": True})
    setup.gateway["routes"].insert(0, {"prefix": "/public", "require": "anonymous"})
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    token = setup.token(sub="alice", roles=["reader", "writer"], sid="sid-alice")
    spoofed = [("x-auth-subject", "mallory"), ("X-Auth-Roles", "admin"), ("x-auth-admin", "1"), ("x-auth-key-id", "k")]

    status, _, body = envoy.request("GET", "/api/items", bearer(token) + spoofed)
    assert status == 200
    seen = upstream_headers(body)
    names = [k for k, _ in seen]
    assert ("x-auth-subject", "alice") in seen and ("x-auth-roles", "reader,writer") in seen
    assert ("x-auth-session", "sid-alice") in seen and ("x-auth-method", "jwt") in seen
    assert names.count("x-auth-subject") == 1 and names.count("x-auth-roles") == 1
    assert "x-auth-admin" not in names and "x-auth-key-id" not in names
    assert ("authorization", f"Bearer {token}") in seen, "credential forwarded unless strip_credential"

    key_id, secret, kid = setup.api_key("identity")
    status, _, body = envoy.request("GET", "/strip/x", [("x-api-key", key_id), ("x-api-secret", secret)] + spoofed)
    assert status == 200
    seen = dict(upstream_headers(body))
    assert seen["x-auth-method"] == "api_key" and seen["x-auth-key-id"] == kid and seen["x-auth-subject"] == "user-1"
    assert "x-api-key" not in seen and "x-api-secret" not in seen and "x-auth-admin" not in seen

    status, _, body = envoy.request("GET", "/public/x", spoofed)
    assert status == 200
    assert not [k for k, _ in upstream_headers(body) if k.startswith("x-auth-")], "anonymous routes strip them too"

    # Denials carry the request id Envoy put in x-request-id (generated when absent).
    status, headers, body = envoy.request("GET", "/api/items", [])
    assert status == 401 and headers["x-error-code"] == "credential_missing"
    assert headers["x-error-id"] == headers["x-request-id"] and len(headers["x-error-id"]) >= 16
    assert headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error_id"] == headers["x-error-id"]

    # Credentials that are not UTF-8, in bytes Envoy passes on, are malformed, not a crash.
    status, headers, _ = envoy.request("GET", "/api/items", [("authorization", "Bearer \xe9\xff.a.b")])
    assert status == 401 and headers["x-error-code"] == "token_malformed"
    assert envoy.request("GET", "/api/items", bearer(token))[0] == 200, "the VM is still serving"


def test_key_rotation_is_picked_up(tmp_path, wasm, mint, issuer, echo, envoys):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 3600, "unknown_kid_cooldown_s": 1})
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    new_key = ed25519.Ed25519PrivateKey.generate()
    token = setup.token(kid="ed-next", key=new_key)
    assert code(envoy.request("GET", "/api", bearer(token))) == "unknown_kid"

    # The issuer publishes the next key; the first request naming it triggers the refetch.
    setup.keys = setup.keys + [mint.public_jwk(new_key.public_key(), kid="ed-next", alg="EdDSA", use="sig")]
    issuer.set_jwks(0, {"keys": setup.keys})
    published = time.monotonic()
    wait_for(lambda: envoy.request("GET", "/api", bearer(token))[0] == 200, 10, 0.2, "the new key to be accepted")
    assert time.monotonic() - published < 5, "picked up within the cooldown and a couple of ticks"
    assert envoy.request("GET", "/api", bearer(setup.token()))[0] == 200, "the old key still works during overlap"


def test_unknown_kid_triggers_one_refetch_not_one_per_request(tmp_path, wasm, mint, issuer, echo, envoys):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 3600, "unknown_kid_cooldown_s": 30})
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    before = issuer.count(JWKS)
    stranger = setup.token(kid="nobody-knows", key=ed25519.Ed25519PrivateKey.generate())
    for _ in range(40):  # a fresh connection each: both workers see them
        assert code(envoy.request("GET", "/api", bearer(stranger))) == "unknown_kid"
    wait_for(lambda: issuer.count(JWKS) > before, 5, 0.05, "the refetch")
    # Let every worker's ticks pass (forwarding and the fetcher's cooldown), then count again.
    for _ in range(40):
        assert code(envoy.request("GET", "/api", bearer(stranger))) == "unknown_kid"
    time.sleep(5 * TICK_MS / 1000)
    assert issuer.count(JWKS) == before + 1, (
        f"80 requests with an unknown kid on two workers: one refetch, got {issuer.count(JWKS) - before} "
        f"(fetch times {issuer.fetch_times(JWKS)}, fetcher changes: {counted_lines(envoy.log(), 'now fetches JWKS')})")
    assert envoy.stats()["wasmcustom.authgate.denied.unknown_kid"] >= 80


def test_cached_keys_work_until_the_stale_bound_then_the_policy_applies(tmp_path, wasm, mint, issuer, echo, envoys):
    max_stale = 5
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 1, "jwks_max_stale_s": max_stale, "unknown_kid_cooldown_s": 30})
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    token = setup.token()
    issuer.take_down("/jwks/")
    down_at = time.time()
    last_ok_fetch = max(t for t in issuer.fetch_times(JWKS) if t < down_at)
    attempts_before = issuer.count(JWKS)

    closed_since, denials = None, 0
    while time.time() < down_at + max_stale + 5:
        closed = envoy.request("GET", "/api", bearer(token))
        opened = envoy.request("GET", "/open", bearer(token))
        assert opened[0] == 200, "fail_open keeps verifying with the last good keys"
        if closed[0] == 200:
            assert closed_since is None, "once past the stale bound, it stays denied while the issuer is down"
        else:
            assert closed[0] == 503 and code(closed) == "keys_unavailable", closed
            closed_since = closed_since or time.time()
            denials += 1
        time.sleep(0.1)
    assert closed_since is not None, "fail_closed routes deny once the keys are older than the stale bound"
    # The core counts in whole seconds: the switch happens within [bound - 1, bound + 1 + a tick].
    assert max_stale - 1 <= closed_since - last_ok_fetch <= max_stale + 1.5, closed_since - last_ok_fetch
    attempts = issuer.count(JWKS) - attempts_before
    assert 1 <= attempts <= (time.time() - down_at) + 2, f"{attempts} retries: backoff, not one per request"
    assert envoy.stats()["wasmcustom.authgate.fetch.jwks_0.failed"] >= 1
    # An outage is logged, not every request it fails: at most a line a second per worker.
    lines = wait_for(lambda: counted_lines(envoy.log(), "denied: keys_unavailable"), 2, 0.1, "the outage in the log")
    assert denials >= 10 and lines <= 2 * (time.time() - closed_since + 1), (lines, denials)

    issuer.bring_up("/jwks/")
    wait_for(lambda: envoy.request("GET", "/api", bearer(token))[0] == 200, 10, 0.2, "recovery once the issuer is back")


def test_revoked_session_and_api_key_are_denied_within_one_feed_interval(tmp_path, wasm, mint, issuer, echo, envoys):
    refresh_s = 1
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 300}, feed_refresh_s=refresh_s)
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    doomed = setup.token(sid="sid-doomed")
    other = setup.token(sid="sid-other")
    key_id, secret, kid = setup.api_key("doomed-key")
    api = [("x-api-key", key_id), ("x-api-secret", secret)]
    assert envoy.request("GET", "/api", bearer(doomed))[0] == 200
    assert envoy.request("GET", "/api", api)[0] == 200

    setup.publish_feed(sids=["sid-doomed"], key_ids=[kid])
    changed = time.monotonic()

    def everywhere_denied():
        # Several fresh connections each, so both workers answer before this counts as done.
        return all(code(envoy.request("GET", "/api", bearer(doomed))) == "session_revoked" for _ in range(6)) and all(
            code(envoy.request("GET", "/api", api)) == "api_key_revoked" for _ in range(6))

    wait_for(everywhere_denied, 5, 0.05, "the session and the API key revoked on every worker")
    elapsed = time.monotonic() - changed
    # One feed interval (the core counts whole seconds), plus the fetcher's tick, one tick for the
    # other workers to adopt it, and the polling here.
    assert elapsed <= refresh_s + 2 * TICK_MS / 1000 + 1.0, elapsed
    # Every worker has it: fresh connections all see the revocation; other credentials still work.
    for _ in range(20):
        assert code(envoy.request("GET", "/api", bearer(doomed))) == "session_revoked"
        assert envoy.request("GET", "/api", bearer(other))[0] == 200


def test_two_workers_do_not_multiply_fetches(tmp_path, wasm, mint, issuer, echo, envoys):
    jwks_refresh_s, feed_refresh_s, window = 2, 1, 6.0
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": jwks_refresh_s, "unknown_kid_cooldown_s": 30},
                  feed_refresh_s=feed_refresh_s)
    envoys.append(envoy := start(tmp_path, setup, issuer, echo))
    log = envoy.log()
    assert counted_lines(log, r"configured: 1 provider") >= 3, "main thread and two worker VMs are configured"
    assert counted_lines(log, r"now fetches JWKS") == 1, "one fetcher"

    j0, f0, t0 = issuer.count(JWKS), issuer.count(FEED), time.monotonic()
    token = setup.token()
    while time.monotonic() - t0 < window:  # keep both workers busy meanwhile
        assert envoy.request("GET", "/api", bearer(token))[0] == 200
    jwks_fetches, feed_fetches = issuer.count(JWKS) - j0, issuer.count(FEED) - f0
    # One fetcher: about window/interval each; N uncoordinated workers would make N times that.
    assert 1 <= jwks_fetches <= window / jwks_refresh_s + 1, jwks_fetches
    assert window / feed_refresh_s - 2 <= feed_fetches <= window / feed_refresh_s + 1, feed_fetches
    # Uncoordinated workers would fetch in bursts, milliseconds apart; one fetcher keeps the interval.
    times = issuer.fetch_times(JWKS)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) >= jwks_refresh_s - 1 - 0.1, gaps
    stats = envoy.stats()
    assert issuer.count(FEED) - 1 <= stats["wasmcustom.authgate.fetch.revocations.ok"] <= issuer.count(FEED)
    assert stats["wasmcustom.authgate.material_age_seconds.jwks_0"] <= jwks_refresh_s + 1
