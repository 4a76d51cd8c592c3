"""The gateway suite: every scenario that holds for all authgate gateways, written once and run
through each of them — the proxy-wasm plugin in a real Envoy 1.40 and the edge worker in real
workerd (gateway_adapters.py) — against the same fixture issuer and echo upstream
(tests/gateway_fixtures.py): the conformance data file, identity headers and spoofing, what
passes through, material over time (cold start, rotation, the unknown-kid refetch, the stale
bound, revocation). What only one host does is in tests/plugin and tests/worker.

The gateways are built when missing (`cargo xtask build-plugin`, `cargo xtask build-worker`).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: gateway_fixtures
from gateway_fixtures import echo, issuer, mint  # noqa: E402,F401  (fixtures)
from gateway_adapters import ADAPTERS, CRYPTO_FALLBACKS  # noqa: E402

_built: set[str] = set()


@pytest.fixture(params=sorted(ADAPTERS))
def gateway(request, tmp_path, issuer, echo):
    """Starts the gateway under test (each test runs once per gateway) and stops it afterwards:
    gateway(document) -> a started adapter (request, log, stop, port, lag_s, path_seen). It
    fetches nothing before the first request on the worker; Envoy starts fetching as it starts."""
    yield from _start(ADAPTERS[request.param], tmp_path, issuer, echo)


@pytest.fixture(params=sorted(ADAPTERS) + sorted(CRYPTO_FALLBACKS))
def gateway_each_crypto(request, tmp_path, issuer, echo):
    """`gateway`, plus each host with its other signature path (gateway_adapters.CRYPTO_FALLBACKS)."""
    yield from _start({**ADAPTERS, **CRYPTO_FALLBACKS}[request.param], tmp_path, issuer, echo)


def _start(adapter, tmp_path, issuer, echo):
    if adapter.name not in _built:
        adapter.build()
        _built.add(adapter.name)
    started = []

    def start(document: dict):
        gw = adapter(tmp_path / f"{adapter.name}-{len(started)}", document, issuer, echo)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
