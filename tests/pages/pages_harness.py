"""Helpers of the browser suites (hosted pages, system): the system Chromium, screenshots, and
sign-up and sign-in clicked through the pages."""

import os
import re
import shutil
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/server"))

from authsrv import PASSWORD, TARGET, Server  # noqa: E402

# Test artefacts, not committed (docs/pages/ holds small committed copies).
SHOTS = TARGET / "pages-screenshots"


def chromium_path():
    path = os.environ.get("AUTHGATE_CHROMIUM") or shutil.which("chromium")
    assert path, "chromium is not installed: run `cargo xtask setup` (it installs Debian's chromium)"
    return path


class _Shared:
    playwright = None
    browser = None
    users = 0


def acquire_browser():
    """The one Chromium of this pytest process: Playwright's sync API runs one event loop per
    thread, so the suites that drive a browser (pages, system) share it. Pair with
    `release_browser()`; the last release closes it."""
    if _Shared.browser is None:
        from playwright.sync_api import sync_playwright

        _Shared.playwright = sync_playwright().start()
        _Shared.browser = _Shared.playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
    _Shared.users += 1
    return _Shared.browser


def release_browser():
    _Shared.users -= 1
    if _Shared.users == 0:
        _Shared.browser.close()
        _Shared.playwright.stop()
        _Shared.browser = _Shared.playwright = None


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_up_in_browser(page, srv, mail, email_addr, password=PASSWORD, shots=False):
    page.goto(srv.url + "/signup")
    if shots:
        shot(page, "signup")
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_label("Password").fill(password)
    mark = mail.mark()
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/signup/verify$"))
    code = mail.code(email_addr, "verify", start=mark)
    if shots:
        shot(page, "signup-verify")
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/login\?"))


def log_in_in_browser(page, srv, email_addr, password=PASSWORD, return_to=None, shots=False):
    page.goto(srv.url + "/login" + (f"?return_to={requests.utils.quote(return_to, safe='')}" if return_to else ""))
    if shots:
        shot(page, "login")
    sign_in_on_the_login_page(page, email_addr, password, shots)


def sign_in_on_the_login_page(page, email_addr, password=PASSWORD, shots=False):
    """From the login page the browser is on (however it got there): the address, then the
    password."""
    page.get_by_label("Email address").fill(email_addr)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/step"))
    if shots:
        shot(page, "login-password")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def localhost_server(backend, name, **env):
    """A replica whose public URL is http://localhost:port: passkeys need a domain name for the
    WebAuthn relying party id (browsers refuse an IP address), and localhost is one."""
    s = Server(backend.binary, backend.tmp / name, dict(backend.env))
    s.url = f"http://localhost:{s.port}"
    s.env.update({"AUTHGATE_PUBLIC_URL": s.url, "AUTHGATE_PASSKEYS__RP_NAME": "Acme Login", **env})
    backend.servers.append(s)
    return s.start()
