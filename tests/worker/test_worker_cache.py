"""JWKS and revocation-feed handling in workerd: cold start with one fetch for concurrent
requests, rotation and the unknown-kid refetch with its cooldown, the stale bound with the issuer
down, revocation within one feed interval, new isolates warm from the Cache API, and the cron
trigger keeping the cached copies fresh."""

import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from worker_harness import wait_for, worker_env

JWKS = "/jwks/0.json"
FEED = "/v1/revocations"


class Setup:
    """A gateway with one issuer (fetched JWKS), API keys and the feed, and the keys to mint."""

    def __init__(self, mint, issuer, *, fetch: dict | None = None, feed_refresh_s: int = 1):
        self.mint = mint
        self.issuer = issuer
        self.now = int(time.time())
        self.m = mint.Minter(mint.Keys(mint.HERE / "keys"), self.now, "uri")
        self.keys = self.m.jwks()[mint.MAIN_ISS]["keys"]
        self.feed_ver = 1
        issuer.set_jwks(0, {"keys": self.keys})
        self.publish_feed()
        self.gateway = {
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
            "fetch": {"retry_min_s": 1, "retry_max_s": 2, "timeout_s": 2, "jwks_refresh_s": 300, **(fetch or {})},
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

    def start(self, workers, echo, *, env=None, wait=True, **kw):
        w = workers(worker_env(self.gateway, echo, **(env or {})), **kw)
        if wait:
            token = self.token()
            wait_for(lambda: w.request("GET", "/api", bearer(token))[0] == 200, 20, 0.1, "keys and feed fetched")
        return w


def bearer(token):
    return [("authorization", f"Bearer {token}")]


def code(response) -> str | None:
    return response[1].get("x-error-code")


def new_key(kid: str):
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return key, {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


def test_cold_isolate_fetches_once_for_concurrent_requests(issuer, echo, workers, mint):
    setup = Setup(mint, issuer)
    issuer.delay_s = 0.4
    w = setup.start(workers, echo, wait=False)
    token = setup.token()
    results = []

    def one():
        results.append(w.request("GET", "/api", bearer(token)))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 8, [(r[0], code(r)) for r in results]
    assert issuer.count(JWKS) == 1, "one JWKS fetch in flight per URL, shared by every waiting request"
    assert issuer.count(FEED) == 1
    issuer.delay_s = 0
    for _ in range(20):
        assert w.request("GET", "/api", bearer(token))[0] == 200
    assert issuer.count(JWKS) == 1, "warm: no fetch before jwks_refresh_s"


def test_rotation_and_unknown_kid_refetch_with_cooldown(issuer, echo, workers, mint):
    setup = Setup(mint, issuer, fetch={"unknown_kid_cooldown_s": 3})
    w = setup.start(workers, echo)
    before = issuer.count(JWKS)
    key, jwk = new_key("ed-rotated")
    issuer.set_jwks(0, {"keys": setup.keys + [jwk]})
    token = setup.token(kid="ed-rotated", key=key)
    # The first request with the new kid is refused and makes the refetch due; it runs in the
    # background (ctx.waitUntil) and the next requests are allowed.
    first = w.request("GET", "/api", bearer(token))
    assert first[0] in (200, 401)
    if first[0] == 401:
        assert code(first) == "unknown_kid"
    wait_for(lambda: w.request("GET", "/api", bearer(token))[0] == 200, 5, 0.05, "the rotated key to be fetched")
    assert issuer.count(JWKS) == before + 1

    # A kid nobody publishes: one refetch, then none within the cooldown.
    stranger, _ = new_key("ed-unknown")
    bad = setup.token(kid="ed-unknown", key=stranger)
    base = issuer.count(JWKS)
    time.sleep(3.1)  # past the cooldown of the rotation refetch
    for _ in range(10):
        r = w.request("GET", "/api", bearer(bad))
        assert r[0] == 401 and code(r) == "unknown_kid"
        time.sleep(0.1)
    wait_for(lambda: issuer.count(JWKS) == base + 1, 3, 0.05, "one refetch for the unknown kid")
    for _ in range(5):
        w.request("GET", "/api", bearer(bad))
    time.sleep(0.3)
    assert issuer.count(JWKS) == base + 1, "at most one refetch per cooldown"
    # The old key is gone once the issuer drops it (the next refresh applies the new set).
    assert w.request("GET", "/api", bearer(token))[0] == 200


def test_issuer_down_serves_cached_keys_within_the_stale_bound(issuer, echo, workers, mint):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 1, "jwks_max_stale_s": 4})
    w = setup.start(workers, echo)
    token = setup.token()
    fetched = time.time()
    issuer.take_down(JWKS)
    # Within the bound the last good keys keep working, although every refresh fails.
    while time.time() < fetched + 2.5:
        assert w.request("GET", "/api", bearer(token))[0] == 200
        time.sleep(0.1)
    failed_before = issuer.count(JWKS)
    assert failed_before >= 2, "refreshes kept being attempted"
    # Past the bound: fail_closed routes answer 503, fail_open routes carry on with the last keys.
    r = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(w.request("GET", "/api", bearer(token))), 6, 0.1,
                 "the stale bound to pass")
    assert code(r) == "keys_unavailable"
    assert w.request("GET", "/open/x", bearer(token))[0] == 200
    issuer.bring_up(JWKS)
    wait_for(lambda: w.request("GET", "/api", bearer(token))[0] == 200, 6, 0.1, "recovery once the issuer is back")


def test_revocation_applies_within_one_feed_interval(issuer, echo, workers, mint):
    setup = Setup(mint, issuer, feed_refresh_s=1)
    w = setup.start(workers, echo)
    token = setup.token(sid="sid-doomed")
    key_id, secret, kid = setup.api_key("doomed")
    assert w.request("GET", "/api", bearer(token))[0] == 200
    assert w.request("GET", "/api", [("x-api-key", key_id), ("x-api-secret", secret)])[0] == 200
    published = time.time()
    setup.publish_feed(sids=["sid-doomed"], key_ids=[kid])

    def revoked():
        r = w.request("GET", "/api", bearer(token))
        return r if r[0] == 401 else None
    r = wait_for(revoked, 5, 0.02, "the session revocation")
    took = time.time() - published
    assert code(r) == "session_revoked"
    # One interval (1 s), plus up to 1 s because auth-core schedules in whole seconds, plus the
    # fetch itself (which starts with the first request after the feed is due).
    assert took <= 3.0, f"revocation took {took:.2f}s with refresh_s=1"
    r = w.request("GET", "/api", [("x-api-key", key_id), ("x-api-secret", secret)])
    assert r[0] == 401 and code(r) == "api_key_revoked"
    assert w.request("GET", "/api", bearer(setup.token(sid="sid-other")))[0] == 200


CACHE_KEY = {"AUTHGATE_CACHE_KEY": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}


def test_new_isolate_starts_warm_from_the_cache_api(tmp_path, issuer, echo, workers, mint):
    setup = Setup(mint, issuer, feed_refresh_s=30)
    cache = tmp_path / "cache"
    first = setup.start(workers, echo, cache_persist=cache, env=CACHE_KEY)
    token = setup.token()
    # The copies are written in the background after the answer.
    wait_for(lambda: "jwks/0 updated" in first.log() and "revocations updated" in first.log(), 5, 0.05, "fetch logs")
    time.sleep(0.5)
    first.stop()
    fetched = (issuer.count(JWKS), issuer.count(FEED))
    issuer.take_down("/")
    second = workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache)
    r = second.request("GET", "/api", bearer(token))
    assert r[0] == 200, (r[0], code(r), second.log()[-2000:])
    log = second.log()
    assert "jwks/0 updated, handed over by the host" in log and "revocations updated, handed over by the host" in log, log
    assert (issuer.count(JWKS), issuer.count(FEED)) == fetched, "a warm isolate does not fetch before deciding"


def test_cron_trigger_keeps_the_cached_copies_fresh(tmp_path, issuer, echo, workers, mint):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 2}, feed_refresh_s=30)
    cache = tmp_path / "cache"
    w = setup.start(workers, echo, cache_persist=cache, env=CACHE_KEY)
    key, jwk = new_key("ed-cron")
    issuer.set_jwks(0, {"keys": setup.keys + [jwk]})
    time.sleep(2.2)  # the JWKS is due; no request comes
    before = issuer.count(JWKS)
    status, _, _ = w.scheduled()
    assert status == 200
    assert issuer.count(JWKS) == before + 1, "the cron trigger fetched what was due"
    w.stop()
    # A new isolate with the issuer gone knows the key only the cron run saw.
    issuer.take_down("/")
    fresh = workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache)
    r = fresh.request("GET", "/api", bearer(setup.token(kid="ed-cron", key=key)))
    assert r[0] == 200, (r[0], code(r), fresh.log()[-2000:])
