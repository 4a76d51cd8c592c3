"""The worker's Cache API and cron trigger: what an isolate fetched is kept in the Cache API,
sealed with the worker's key, so a new isolate starts warm; the cron trigger keeps the cached
copies fresh without traffic. What every gateway does with material is in
tests/gateways/test_gateway_material.py."""

import hashlib
import time

from gateway_fixtures import FEED, JWKS, Setup, bearer, error_code, wait_for
from worker_harness import worker_env

CACHE_KEY = {"AUTHGATE_CACHE_KEY": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}


def cache_url(source_url: str) -> str:
    """Where the worker keeps its copy of a source: edge-worker/src/cache.rs, by auth-core's
    stable_key (the first 16 hex digits of SHA-256 of the source's URL)."""
    return "https://authgate-material.invalid/v2/" + hashlib.sha256(source_url.encode()).hexdigest()[:16]


def sealed_copy(w, source_url: str) -> bytes | None:
    """The copy the Cache API holds for a source, if it is sealed (auth-core's `agm1` format)."""
    status, _, body = w.probe("GET", cache_url(source_url))
    return body if status == 200 and body.startswith(b"agm1") else None


def test_new_isolate_starts_warm_from_the_cache_api(tmp_path, issuer, echo, workers, mint):
    setup = Setup(mint, issuer, feed_refresh_s=30)
    cache = tmp_path / "cache"
    first = setup.ready(workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache, cache_probe=True))
    token = setup.token()
    # The copies are written in the background after the answer, sealed.
    wait_for(lambda: "jwks/0 updated" in first.log() and "revocations updated" in first.log(), 5, 0.05, "fetch logs")
    wait_for(lambda: sealed_copy(first, issuer.base + JWKS) and sealed_copy(first, issuer.base + FEED), 5, 0.05,
             "both copies in the Cache API")
    first.stop()
    fetched = (issuer.count(JWKS), issuer.count(FEED))
    issuer.take_down("/")
    second = workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache)
    r = second.request("GET", "/api", bearer(token))
    assert r[0] == 200, (r[0], error_code(r), second.log()[-2000:])
    log = second.log()
    assert "jwks/0 updated, handed over by the host" in log and "revocations updated, handed over by the host" in log, log
    assert (issuer.count(JWKS), issuer.count(FEED)) == fetched, "a warm isolate does not fetch before deciding"


def test_cron_trigger_keeps_the_cached_copies_fresh(tmp_path, issuer, echo, workers, mint):
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 2}, feed_refresh_s=30)
    cache = tmp_path / "cache"
    w = setup.ready(workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache))
    key, jwk = setup.new_key("ed-cron")
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
    assert r[0] == 200, (r[0], error_code(r), fresh.log()[-2000:])
