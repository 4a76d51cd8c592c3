"""JWKS and revocation-feed handling over time, through every gateway: the cold start (requests
held while the first material is on its way, one fetch of each source; the issuer down),
rotation and the unknown-kid refetch with its cooldown, the stale bound with the issuer down,
revocation within one feed interval. Each test has its own gateway and issuer with small
intervals."""

import threading
import time

import pytest

from gateway_fixtures import FEED, JWKS, Setup, bearer, denial_problems, error_code, wait_for


def test_cold_start_holds_requests_and_fetches_each_source_once(gateway, issuer, mint):
    """A fresh gateway, the issuer slow to answer, 8 concurrent requests: each is held while the
    first JWKS and feed are on their way (fetch.cold_start_wait_ms, 3 s by default) and then
    allowed, and the issuer sees one JWKS fetch and one feed fetch, the feed once the keys that
    sign it are in."""
    delay = 0.5
    setup = Setup(mint, issuer, fetch={"timeout_s": 5}, feed_refresh_s=30)
    issuer.delay_s = delay
    gw = gateway(setup.gateway)
    token = setup.token()
    answers = []

    def one():
        sent = time.time()
        answers.append((sent, gw.request("GET", "/api", bearer(token))))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for _, r in answers] == [200] * 8, [(r[0], error_code(r)) for _, r in answers]
    jwks_at, feed_at = issuer.fetch_times(JWKS), issuer.fetch_times(FEED)
    assert (len(jwks_at), len(feed_at)) == (1, 1), f"one fetch of each, shared by every waiting request: {jwks_at}, {feed_at}"
    assert feed_at[0] >= jwks_at[0] + delay, "the feed is asked for once the keys that sign it are in"
    assert max(sent for sent, _ in answers) < feed_at[0] + delay, "every request came before the material: all were held"

    issuer.delay_s = 0
    for _ in range(20):
        assert gw.request("GET", "/api", bearer(token))[0] == 200
    assert (issuer.count(JWKS), issuer.count(FEED)) == (1, 1), "warm: nothing is fetched before it is due"


@pytest.mark.parametrize("down, wait_ms", [("refusing", None), ("silent", None), ("silent", 0)],
                         ids=["refusing", "silent", "silent-no-wait"])
def test_cold_start_with_the_issuer_down_answers_503_keys_unavailable(gateway, issuer, mint, down, wait_ms):
    """No material yet and the issuer down: refusing connections (the first fetch fails at once),
    or silent (it accepts and never answers, so the first fetch is on its way until timeout_s).
    A request is held at most until the cold-start wait ends (never past fetch.timeout_s), or,
    with `cold_start_wait_ms: 0`, answered at once; either way 503 keys_unavailable with the
    error headers, the same on every gateway."""
    timeout_s = 3
    setup = Setup(mint, issuer, fetch={"timeout_s": timeout_s, **({} if wait_ms is None else {"cold_start_wait_ms": wait_ms})})
    if down == "refusing":
        issuer.stop()
    else:
        issuer.delay_s = 60
    gw = gateway(setup.gateway)
    started = time.monotonic()
    status, rh, body = gw.request("GET", "/api", bearer(setup.token()) + [("x-request-id", "cold-1")])
    took = time.monotonic() - started
    assert status == 503, (status, rh.get("x-error-code"), body[:200])
    assert not denial_problems("cold start", "GET", rh, body, "keys_unavailable", "cold-1")
    if wait_ms == 0:
        wait_for(lambda: issuer.count(JWKS) >= 1, 5, 0.05, "the first JWKS fetch, on its way")
        assert took < timeout_s / 2, f"{took:.2f}s: not held, answered while the first fetch is on its way"
    elif down == "refusing":
        # The first fetch fails at once; the wait ends with it, on every worker VM (the fetcher
        # shares its failure), not at the end of the cold-start wait.
        assert took < 1, f"{took:.2f}s: held although the first fetch had failed"
        # Later requests, on fresh connections (any worker VM), are answered at once too.
        for i in range(4):
            started = time.monotonic()
            status, rh, _ = gw.request("GET", "/api", bearer(setup.token()) + [("x-request-id", f"cold-{i + 2}")])
            assert status == 503 and rh.get("x-error-code") == "keys_unavailable", (status, rh.get("x-error-code"))
            assert time.monotonic() - started < 1, "answered at once"
    else:
        assert took < timeout_s + 1, f"{took:.2f}s: held at most for the cold-start wait, never past timeout_s"


def test_key_rotation_is_picked_up(gateway, issuer, mint):
    setup = Setup(mint, issuer, fetch={"unknown_kid_cooldown_s": 1})
    gw = setup.ready(gateway(setup.gateway))

    # The issuer publishes the next key before its first token: the first request naming it
    # makes the refetch due (it runs in the background), and that one refetch brings it.
    before = issuer.count(JWKS)
    next_key, next_jwk = setup.new_key("ed-next")
    setup.keys = setup.keys + [next_jwk]
    issuer.set_jwks(0, {"keys": setup.keys})
    rotated = setup.token(kid="ed-next", key=next_key)
    first = gw.request("GET", "/api", bearer(rotated))
    assert first[0] == 200 or error_code(first) == "unknown_kid", (first[0], error_code(first))
    wait_for(lambda: gw.request("GET", "/api", bearer(rotated))[0] == 200, 5, 0.05, "the rotated key to be fetched")
    assert issuer.count(JWKS) == before + 1, "one refetch"

    # A token ahead of its key is refused until the issuer publishes the key; then the first
    # request after the cooldown of the last refetch brings it.
    later_key, later_jwk = setup.new_key("ed-later")
    later = setup.token(kid="ed-later", key=later_key)
    assert error_code(gw.request("GET", "/api", bearer(later))) == "unknown_kid"
    setup.keys = setup.keys + [later_jwk]
    issuer.set_jwks(0, {"keys": setup.keys})
    published = time.monotonic()
    wait_for(lambda: gw.request("GET", "/api", bearer(later))[0] == 200, 10, 0.2, "the new key to be accepted")
    assert time.monotonic() - published < 5, "picked up within the cooldown and a couple of ticks"
    assert gw.request("GET", "/api", bearer(setup.token()))[0] == 200, "the old key still works during overlap"
    assert gw.request("GET", "/api", bearer(rotated))[0] == 200


def test_unknown_kid_triggers_one_refetch_not_one_per_request(gateway, issuer, mint):
    setup = Setup(mint, issuer, fetch={"unknown_kid_cooldown_s": 30})
    gw = setup.ready(gateway(setup.gateway))
    before = issuer.count(JWKS)
    stranger_key, _ = setup.new_key("nobody-knows")
    stranger = setup.token(kid="nobody-knows", key=stranger_key)
    for _ in range(40):  # a fresh connection each: on Envoy, both worker VMs see them
        assert error_code(gw.request("GET", "/api", bearer(stranger))) == "unknown_kid"
    wait_for(lambda: issuer.count(JWKS) > before, 5, 0.05, "the refetch")
    for _ in range(40):
        assert error_code(gw.request("GET", "/api", bearer(stranger))) == "unknown_kid"
    # Let every wish reach the fetcher (Envoy: five ticks of every worker VM), then count again.
    time.sleep(1.0)
    assert issuer.count(JWKS) == before + 1, (
        f"80 requests with an unknown kid: one refetch per cooldown, got {issuer.count(JWKS) - before} "
        f"(fetch times {issuer.fetch_times(JWKS)})")


def test_cached_keys_work_until_the_stale_bound_then_the_policy_applies(gateway, issuer, mint):
    max_stale = 4
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 1, "jwks_max_stale_s": max_stale, "unknown_kid_cooldown_s": 30})
    gw = setup.ready(gateway(setup.gateway))
    token = setup.token()
    issuer.take_down("/jwks/")
    down_at = time.time()
    last_ok_fetch = max(t for t in issuer.fetch_times(JWKS) if t < down_at)
    attempts_before = issuer.count(JWKS)

    closed_since, denials = None, 0
    while time.time() < down_at + max_stale + 3:
        closed = gw.request("GET", "/api", bearer(token))
        opened = gw.request("GET", "/open/x", bearer(token))
        assert opened[0] == 200, "fail_open keeps verifying with the last good keys"
        if closed[0] == 200:
            assert closed_since is None, "once past the stale bound, it stays denied while the issuer is down"
        else:
            assert closed[0] == 503 and error_code(closed) == "keys_unavailable", (closed[0], error_code(closed))
            closed_since = closed_since or time.time()
            denials += 1
        time.sleep(0.1)
    assert closed_since is not None, "fail_closed routes deny once the keys are older than the stale bound"
    # auth-core counts in whole seconds: the switch happens within [bound - 1, bound + 1], plus
    # the gateway's lag and this loop's polling.
    assert max_stale - 1 <= closed_since - last_ok_fetch <= max_stale + 1.1 + gw.lag_s, closed_since - last_ok_fetch
    attempts = issuer.count(JWKS) - attempts_before
    assert 2 <= attempts <= (time.time() - down_at) + 2, f"{attempts} attempts: refreshes go on, with backoff, not one per request"
    assert denials >= 10, denials
    wait_for(lambda: "denied: keys_unavailable" in gw.log(), 2, 0.1, "the outage in the log")
    # An outage is a line a second (per Envoy worker VM, per isolate), not one per denial.
    lines = gw.log().count("denied: keys_unavailable")
    assert lines < denials, f"{lines} log lines for {denials} denials"

    issuer.bring_up("/jwks/")
    wait_for(lambda: gw.request("GET", "/api", bearer(token))[0] == 200, 10, 0.2, "recovery once the issuer is back")


def test_revoked_session_and_api_key_are_denied_within_one_feed_interval(gateway, issuer, mint):
    refresh_s = 1
    setup = Setup(mint, issuer, feed_refresh_s=refresh_s)
    gw = setup.ready(gateway(setup.gateway))
    doomed = setup.token(sid="sid-doomed")
    other = setup.token(sid="sid-other")
    key_id, secret, kid = setup.api_key("doomed-key")
    api = [("x-api-key", key_id), ("x-api-secret", secret)]
    assert gw.request("GET", "/api", bearer(doomed))[0] == 200
    assert gw.request("GET", "/api", api)[0] == 200

    setup.publish_feed(sids=["sid-doomed"], key_ids=[kid])
    changed = time.monotonic()

    def everywhere_denied():
        # Several fresh connections each, so on Envoy both worker VMs answer before this counts.
        return all(error_code(gw.request("GET", "/api", bearer(doomed))) == "session_revoked" for _ in range(6)) and all(
            error_code(gw.request("GET", "/api", api)) == "api_key_revoked" for _ in range(6))

    # One feed interval, plus up to a second because auth-core schedules in whole seconds and
    # this loop polls, plus the gateway's lag (Envoy: the fetcher's tick and one tick for the
    # other VMs to adopt the feed; the worker: the fetch the first request after it is due starts).
    bound = refresh_s + 1.0 + gw.lag_s
    wait_for(everywhere_denied, 5, 0.05, "the session and the API key revoked")
    elapsed = time.monotonic() - changed
    assert elapsed <= bound, elapsed
    # A poll can see only the VM that adopted the feed first (the kernel picks the worker thread
    # per connection); the promise is that once the bound has passed, every VM denies.
    time.sleep(max(0.0, changed + bound - time.monotonic()))
    for _ in range(20):
        assert error_code(gw.request("GET", "/api", bearer(doomed))) == "session_revoked"
        assert gw.request("GET", "/api", bearer(other))[0] == 200
