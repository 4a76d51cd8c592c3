"""The hosted pages in a real browser: Debian's Chromium (apt, pinned by `cargo xtask setup`)
driven by Playwright (PyPI) as the system browser — Playwright downloads nothing.

One auth-server on SQLite with the real SMTP sink of the server suite (codes are read from the
received mail). Screenshots of every page go to target/pages-screenshots/ (test artefacts,
not committed; docs/pages/ holds small committed copies).
"""

import pytest
from pages_harness import acquire_browser, localhost_server, release_browser

from authsrv import Backend, build_binaries, mail  # noqa: F401  (mail: a fixture)


@pytest.fixture(scope="session")
def backend(tmp_path_factory, mail):
    b = Backend("sqlite", build_binaries(), tmp_path_factory.mktemp("pages"), mail)
    yield b
    b.close()


@pytest.fixture(scope="session")
def srv(backend):
    """The server the browser talks to: plain-HTTP development cookies are not needed, Chromium
    treats 127.0.0.1 as a secure context, so the production `__Host-` cookies are exercised."""
    return backend.server(AUTHGATE_PAGES__PRODUCT_NAME="Acme Login", AUTHGATE_PAGES__RETURN_TO_ORIGINS='["http://127.0.0.1:9"]')


@pytest.fixture(scope="session")
def localhost_srv(backend):
    return localhost_server(backend, "work-localhost")


@pytest.fixture(scope="session")
def browser():
    yield acquire_browser()
    release_browser()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    yield pg
    ctx.close()
