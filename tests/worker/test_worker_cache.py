"""The worker's Cache API and cron trigger: what an isolate fetched is kept in the Cache API,
sealed with the worker's key, so a new isolate starts warm; a copy another Worker of the zone put
there is ignored; a worker with no secret to seal with keeps nothing there; the cron trigger
keeps the cached copies fresh without traffic. What every gateway does with material is in
tests/gateways/test_gateway_material.py."""

import hashlib
import json
import time

import pytest

from gateway_fixtures import FEED, JWKS, Setup, bearer, error_code, wait_for
from worker_harness import worker_env

CACHE_KEY = {"AUTHGATE_CACHE_KEY": "kS-8dRreBT47-6JjuwjlcfNU-dxcA4KhUP1sx0a16UE"}
OTHER_CACHE_KEY = {"AUTHGATE_CACHE_KEY": "Zm9yZ2VkLWJ5LWFub3RoZXItd29ya2VyLW9mLXRoZS16b25l"}


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


@pytest.mark.parametrize("planted", ["unsealed", "sealed-with-another-key"])
def test_a_copy_another_worker_planted_in_the_cache_api_is_ignored(tmp_path, issuer, echo, workers, mint, planted):
    """Every Worker of a zone can write to the Cache API: a JWKS with an attacker's key put where
    the worker looks for its copy, unsealed or sealed with another worker's key, is not applied.
    The gateway has no feed, so these keys would be all it needs."""
    setup = Setup(mint, issuer)
    del setup.gateway["revocations"]
    attacker_key, attacker_jwk = setup.new_key("ed-attacker")
    forged = setup.token(kid="ed-attacker", key=attacker_key)
    cache = tmp_path / "cache"
    if planted == "sealed-with-another-key":
        # Another authgate worker of the zone, with its own key, fetched the attacker's JWKS.
        issuer.set_jwks(0, {"keys": [attacker_jwk]})
        other = workers(worker_env(setup.gateway, echo, **OTHER_CACHE_KEY), cache_persist=cache, cache_probe=True)
        assert other.request("GET", "/api", bearer(forged))[0] == 200
        wait_for(lambda: sealed_copy(other, issuer.base + JWKS), 5, 0.05, "the other worker's sealed copy")
        other.stop()
        issuer.set_jwks(0, {"keys": setup.keys})
    issuer.take_down("/")
    w = workers(worker_env(setup.gateway, echo, **CACHE_KEY), cache_persist=cache, cache_probe=True)
    if planted == "unsealed":
        body = json.dumps({"keys": [attacker_jwk]}).encode()
        assert w.probe("PUT", cache_url(issuer.base + JWKS), body)[0] == 200
        assert w.probe("GET", cache_url(issuer.base + JWKS))[2] == body, "planted where the worker looks"

    r = w.request("GET", "/api", bearer(forged))
    assert (r[0], error_code(r)) == (503, "keys_unavailable"), (r[0], error_code(r), w.log()[-2000:])
    wait_for(lambda: "jwks/0: the Cache API copy is not sealed with this worker's key; ignored" in w.log(), 5, 0.05,
             "the copy ignored, in the log")
    issuer.bring_up("/")
    setup.ready(w)
    assert error_code(w.request("GET", "/api", bearer(forged))) == "unknown_kid", "the attacker's key never got in"


def test_without_a_secret_new_isolates_start_cold_and_nothing_is_cached(tmp_path, issuer, echo, workers, mint):
    """A worker with no secret (no AUTHGATE_CACHE_KEY, feed credential or AUTHGATE_API_KEYS) has
    nothing to seal copies with, so it neither reads nor writes the Cache API, and says so."""
    setup = Setup(mint, issuer)
    w = setup.ready(workers(worker_env(setup.gateway, echo), cache_persist=tmp_path / "cache", cache_probe=True))
    wait_for(lambda: "jwks/0 updated" in w.log() and "revocations updated" in w.log(), 5, 0.05, "fetch logs")
    assert "no secret to seal Cache API copies with, so new isolates start cold" in w.log()
    time.sleep(0.5)  # as long as a worker with a key takes to write its copies (see the warm start)
    for source in (JWKS, FEED):
        status, _, body = w.probe("GET", cache_url(issuer.base + source))
        assert status == 404, (source, body[:100])


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
