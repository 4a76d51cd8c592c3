"""The cross-gateway system suite: every flow through both gateways against the real pieces.

One session-wide system (tests/system/system_harness.py): a private PostgreSQL (so the fault
tests can restart it), Redis at 127.0.0.1:6379 (its own key prefix), a real SMTP server
(aiosmtpd) for the emailed codes, the auth-server on them, Envoy with the filter from
docs/envoy/ and the edge worker in workerd with wrangler.toml's settings, both configured from
`auth-server gateway-config` (plus routes, and a third-party issuer) in front of one echoing
upstream. Each scenario runs through both gateways and checks what the upstream saw.
"""

import subprocess

import pytest

from system_harness import ROOT, System
from authsrv import build_binaries, mail  # noqa: F401  (mail: a fixture)
from plugin_harness import WASM
from worker_harness import wrangler


@pytest.fixture(scope="session")
def system(tmp_path_factory, mail):
    binaries = build_binaries()
    if not WASM.exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-plugin"], cwd=ROOT, check=True)
    if not (ROOT / wrangler()["main"]).exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-worker"], cwd=ROOT, check=True)
    s = System(tmp_path_factory.mktemp("system"), binaries, mail, WASM)
    yield s
    s.close()


@pytest.fixture(scope="session")
def gateways(system):
    return system.gateways


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright, shared with tests/pages/ (one per process)."""
    from pages_harness import acquire_browser, release_browser

    yield acquire_browser()
    release_browser()
