"""What only Envoy does with JWKS and the revocation feed: one fetcher for all worker VMs (the
lease in shared data; the others adopt its copies and forward their refetch wishes to it), and
the filter's stats and outage logging. Each test has its own Envoy with two worker threads and
its own issuer with small intervals. What every gateway does with material is in
tests/gateways/test_gateway_material.py."""

import time

from gateway_fixtures import FEED, JWKS, Setup, bearer, error_code, wait_for
from plugin_harness import counted_lines


def test_two_workers_do_not_multiply_fetches(envoys, issuer, mint):
    jwks_refresh_s, feed_refresh_s, window = 2, 1, 6.0
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": jwks_refresh_s, "unknown_kid_cooldown_s": 30},
                  feed_refresh_s=feed_refresh_s)
    envoy = setup.ready(envoys(setup.gateway))
    # Envoy writes its log every 100 ms (--file-flush-interval-msec): wait for the lines, then count.
    wait_for(lambda: counted_lines(envoy.log(), r"now fetches JWKS") >= 1, 10, what="the fetcher's log line")
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


def test_refetch_wishes_and_outages_are_counted_and_logged_sparingly(envoys, issuer, mint):
    """Every worker VM counts its decisions; a refetch wish from any of them reaches the one
    fetcher (which stays the one); an outage is counted per failed fetch and per denial, and
    logged at most once a second per VM, not once per request it fails."""
    max_stale = 2
    setup = Setup(mint, issuer, fetch={"jwks_refresh_s": 1, "jwks_max_stale_s": max_stale, "unknown_kid_cooldown_s": 30})
    envoy = setup.ready(envoys(setup.gateway))
    token = setup.token()
    for _ in range(4):
        assert envoy.request("GET", "/api", bearer(token))[0] == 200
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:10]}{'B' if sig[10] == 'A' else 'A'}{sig[11:]}"
    assert error_code(envoy.request("GET", "/api", bearer(tampered))) == "signature_invalid"

    before = issuer.count(JWKS)
    stranger_key, _ = setup.new_key("nobody-knows")
    stranger = setup.token(kid="nobody-knows", key=stranger_key)
    for _ in range(80):  # a fresh connection each: both workers see them
        assert error_code(envoy.request("GET", "/api", bearer(stranger))) == "unknown_kid"
    wait_for(lambda: issuer.count(JWKS) > before, 5, 0.05, "the forwarded refetch")
    # Counters reach Envoy on each VM's next tick.
    stats = wait_for(lambda: (lambda s: s if s.get("wasmcustom.authgate.denied.unknown_kid") == 80 else None)(envoy.stats()),
                     5, 0.05, "every denial counted, whichever VM made it")
    assert stats["wasmcustom.authgate.denied.unknown_kid"] == 80, "every denial counted, whichever VM made it"
    assert stats["wasmcustom.authgate.denied.signature_invalid"] == 1
    assert stats["wasmcustom.authgate.allowed"] >= 5 and stats["wasmcustom.authgate.token_cache_hits"] >= 1, \
        "the same token again is served from the verified-token cache"
    assert counted_lines(envoy.log(), r"now fetches JWKS") == 1, "the fetcher did not change"

    issuer.take_down("/jwks/")
    closed = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(envoy.request("GET", "/api", bearer(token))),
                      max_stale + 4, 0.05, "the stale bound to pass")
    assert error_code(closed) == "keys_unavailable"
    closed_since, denials = time.time(), 1
    while time.time() < closed_since + 2:
        assert error_code(envoy.request("GET", "/api", bearer(token))) == "keys_unavailable"
        denials += 1
        time.sleep(0.02)
    stats = wait_for(lambda: (lambda s: s if s.get("wasmcustom.authgate.denied.keys_unavailable", 0) >= denials else None)(envoy.stats()),
                     5, 0.05, "the denials counted")
    assert stats["wasmcustom.authgate.fetch.jwks_0.failed"] >= 1
    assert stats["wasmcustom.authgate.denied.keys_unavailable"] >= denials
    # At most a line a second per worker VM (and one more per VM for the first).
    lines = wait_for(lambda: counted_lines(envoy.log(), "denied: keys_unavailable"), 2, 0.1, "the outage in the log")
    assert denials >= 20 and lines <= 2 * (time.time() - closed_since + 1), (lines, denials)
