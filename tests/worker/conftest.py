"""End-to-end suite for the Cloudflare edge worker in real workerd (npm `workerd`, started through
Miniflare's API by driver.mjs, all pinned in tools/package-lock.json).

Every test starts the worker that `cargo xtask build-worker` built into edge-worker/build, with the
entry point, compatibility date and vars of the repository's wrangler.toml (the gateway document
and origin replaced by the test's), an origin that echoes what it receives, and a fixture issuer
serving JWKS and the revocation feed that counts requests and can be changed or taken down.
"""

import subprocess

import pytest

from worker_harness import BUILD, ROOT, Echo, Issuer, Worker, load_mint, wrangler


@pytest.fixture(scope="session")
def built():
    main = ROOT / wrangler()["main"]
    if not main.exists():
        subprocess.run(["cargo", "run", "--quiet", "-p", "xtask", "--", "build-worker"], cwd=ROOT, check=True)
    assert main.exists(), f"{main} missing after the build"
    return BUILD


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
