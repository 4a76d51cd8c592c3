"""The workerd-only suite: what only the Cloudflare edge worker does — the Cache API (sealed
copies, warm starts, planted copies ignored), the cron trigger, the origin as a service binding,
settings from secrets, its configuration errors, its request ids. What every gateway does is
tested once for both in tests/gateways.

Every test starts the worker that `cargo xtask build-worker` built into edge-worker/build in real
workerd (npm `workerd`, started through Miniflare's API by driver.mjs, all pinned in
tools/package-lock.json), with the entry point, compatibility date and vars of the repository's
wrangler.toml (the gateway document and origin replaced by the test's), the echo origin and the
fixture issuer (tests/gateway_fixtures.py).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: gateway_fixtures
from gateway_fixtures import echo, issuer, mint  # noqa: E402,F401  (fixtures)
from worker_harness import Worker, ensure_built  # noqa: E402


@pytest.fixture(scope="session")
def built():
    return ensure_built()


@pytest.fixture
def workers(tmp_path, built):
    """Starts workers for a test and stops them afterwards: workers(bindings, **kw) -> Worker."""
    started = []

    def start(bindings, **kw):
        w = Worker(tmp_path / f"worker-{len(started)}", bindings, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
