"""Helpers of the auth-server end-to-end suite (servers, SMTP sink, clients)."""

import base64
import email
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pg8000.native
import pytest
import requests
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PG = dict(host="127.0.0.1", port=5432, user=os.environ.get("PGUSER", "postgres"), database="test")
REDIS_URL = os.environ.get("AUTHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PASSWORD = "correct horse battery staple 42"
OPERATOR_ORG = "org_operator"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




class Mailbox:
    """Messages received by the SMTP sink."""

    def __init__(self):
        self.messages = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content)
        parts = [p for p in msg.walk() if not p.is_multipart()]
        text = {p.get_content_type(): p.get_payload(decode=True).decode() for p in parts}
        body = text.get("text/plain", "")
        with self.cond:
            self.messages.append({"to": [r.lower() for r in envelope.rcpt_tos], "subject": msg["Subject"], "body": body, "html": text.get("text/html")})
            self.cond.notify_all()
        return "250 OK"

    def wait(self, to, subject_contains="", timeout=10.0, start=0, body_re=None):
        """Waits for a message to `to` (index >= start), with `body_re` in its body if given;
        returns it."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for m in self.messages[start:]:
                    if to.lower() in m["to"] and subject_contains.lower() in (m["subject"] or "").lower() \
                            and (body_re is None or re.search(body_re, m["body"])):
                        return m
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"no email to {to} with subject containing {subject_contains!r}")
                self.cond.wait(left)

    def count_to(self, to):
        with self.cond:
            return sum(1 for m in self.messages if to.lower() in m["to"])

    def mark(self):
        with self.cond:
            return len(self.messages)

    def code(self, to, subject_contains="", start=0, timeout=10.0):
        # A code's email, not a security notice that may arrive in between.
        m = self.wait(to, subject_contains, timeout, start, body_re=r"\b\d{6,10}\b")
        found = re.search(r"\b(\d{6,10})\b", m["body"])
        assert found, m["body"]
        return found.group(1)




def build_binaries():
    """auth-server and the authgate CLI (built unless AUTH_SERVER_BIN names a binary)."""
    if os.environ.get("AUTH_SERVER_BIN"):
        return os.environ["AUTH_SERVER_BIN"], os.environ.get("AUTHGATE_BIN", str(TARGET / "debug/authgate"))
    subprocess.run(["cargo", "build", "--locked", "-p", "auth-server", "-p", "authgate"], cwd=ROOT, check=True)
    return TARGET / "debug/auth-server", TARGET / "debug/authgate"


@pytest.fixture(scope="session")
def mail():
    """The session's SMTP sink, as a fixture: the suites' conftests import it."""
    box, ctl = start_mailbox()
    yield box
    ctl.stop()


def start_mailbox():
    """A real SMTP server (aiosmtpd) on a free port; returns (mailbox with .url, controller)."""
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    box.url = f"smtp://127.0.0.1:{port}"
    return box, ctl


def totp_now(secret_b32, at=None, step=30):
    """RFC 6238 code (SHA-1, 6 digits) of a base32 secret."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((at or time.time()) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000)


class Server:
    """One auth-server process."""

    def __init__(self, binary, workdir, env):
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update(env)
        self.env.update({"AUTHGATE_LISTEN": f"127.0.0.1:{self.port}", "AUTHGATE_PUBLIC_URL": self.env.get("AUTHGATE_PUBLIC_URL", self.url)})
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.proc = None

    @property
    def issuer(self):
        return self.env["AUTHGATE_PUBLIC_URL"]

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.binary), "serve"], env=self.env, cwd=self.workdir, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"auth-server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("auth-server did not become ready")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def cli(self, *args, input=None, env=None, check=True):
        e = dict(self.env)
        e.update(env or {})
        out = subprocess.run([str(self.binary), *args], env=e, cwd=self.workdir, input=input, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"auth-server {' '.join(args)} failed: {out.stderr}")
        return out

    def logs(self):
        return self.log_path.read_text(errors="replace")

    def client(self, ip=None):
        return Client(self.url, ip or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")


class Client:
    """HTTP client with its own client address (x-forwarded-for, trusted by the test servers)."""

    def __init__(self, base, ip):
        self.base = base
        self.s = requests.Session()
        self.s.headers["x-forwarded-for"] = ip

    def req(self, method, path, token=None, headers=None, **kw):
        h = dict(headers or {})
        if token:
            h["authorization"] = f"Bearer {token}"
        return self.s.request(method, self.base + path, headers=h, timeout=30, allow_redirects=False, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.req("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.req("PUT", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)


class Backend:
    def __init__(self, name, binaries, tmp, mail):
        self.name = name
        self.binary, self.authgate = binaries
        self.tmp = Path(tmp)
        self.mail = mail
        self.master_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        self.env = {
            "AUTHGATE_DATA_DIR": str(self.tmp / "data"),
            "AUTHGATE_MASTER_KEY": self.master_key,
            "AUTHGATE_PASSWORDS__ARGON2_MEMORY_KIB": "1024",
            "AUTHGATE_PASSWORDS__ARGON2_ITERATIONS": "1",
            "AUTHGATE_TRUST_FORWARDED_FOR": "true",
            "AUTHGATE_TOKENS__KEY_RELOAD_S": "1",
            "AUTHGATE_FEED__RECHECK_MS": "200",
            "AUTHGATE_RATE_LIMITS__AUTH_PER_IP": "1000",
            "AUTHGATE_RATE_LIMITS__AUTH_PER_ACCOUNT": "200",
            "AUTHGATE_LOG_LEVEL": "info",
            "SMTP_URL": mail.url,
        }
        for var in ["DATABASE_URL", "REDIS_URL", "AUTHGATE_CONFIG"]:
            os.environ.pop(var, None)
        self.dbname = None
        if name == "postgres":
            self.dbname = "authgate_test_" + secrets.token_hex(6)
            conn = pg8000.native.Connection(**PG)
            conn.run(f"CREATE DATABASE {self.dbname}")
            conn.close()
            self.env["DATABASE_URL"] = f"postgres://{PG['user']}@127.0.0.1:5432/{self.dbname}"
            self.env["REDIS_URL"] = REDIS_URL
            self.env["AUTHGATE_REDIS_PREFIX"] = f"{self.dbname}:"
        self.servers = []
        self.children = []

    def isolated(self):
        """A backend of the same kind with its own fresh database (for tests that change
        server-wide state such as the signing keys)."""
        b = Backend(self.name, (self.binary, self.authgate), self.tmp / ("iso-" + secrets.token_hex(3)), self.mail)
        self.children.append(b)
        return b

    def server(self, **overrides):
        env = dict(self.env)
        env.update({k: str(v) for k, v in overrides.items()})
        srv = Server(self.binary, self.tmp / "work", env)
        srv.backend = self
        self.servers.append(srv)
        return srv.start()

    def close(self):
        for child in self.children:
            child.close()
        for s in self.servers:
            s.stop()
        if self.dbname:
            conn = pg8000.native.Connection(**PG)
            conn.run(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
            conn.close()




# ----- helpers used by the tests ------------------------------------------------------------


def new_email(tag="user"):
    return f"{tag}-{secrets.token_hex(5)}@example.com"


def start_sign_up(mail, c, email_addr, password=PASSWORD, org_name=None):
    """Asks for a sign-up without verifying it; returns its verification id and emailed code."""
    mark = mail.mark()
    body = {"email": email_addr, "password": password}
    if org_name:
        body["org_name"] = org_name
    r = c.post("/v1/users", json=body)
    assert r.status_code == 202, r.text
    return r.json()["verification_id"], mail.code(email_addr, "verify", start=mark)


def sign_up(srv, mail, email_addr=None, password=PASSWORD, org_name=None):
    """Signs up and verifies through the emailed code; returns the email."""
    email_addr = email_addr or new_email()
    c = srv.client()
    verification_id, code = start_sign_up(mail, c, email_addr, password, org_name)
    r = c.post("/v1/users/verify", json={"verification_id": verification_id, "code": code})
    assert r.status_code == 200, r.text
    return email_addr


def login(srv, email_addr, password=PASSWORD, client=None, org=None):
    """Multi-step login with the password (into `org` for an account in several); returns the
    token response."""
    c = client or srv.client()
    r = c.post("/v1/auth/init", json={"email": email_addr, **({"org": org} if org else {})})
    assert r.status_code == 200, r.text
    tok = r.headers["x-session-token"]
    r = c.post("/v1/auth/authenticate", json={"method": "password", "password": password}, headers={"x-session-token": tok})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "complete", body
    return body


def admin_user(srv, roles=("admin",), org=None):
    """A verified user created with `auth-server admin create-user` (the operator's CLI), in the
    default organisation unless `org`; returns (email, tokens)."""
    addr = new_email("admin")
    args = ["admin", "create-user", "--email", addr]
    for r in roles:
        args += ["--role", r]
    if org:
        args += ["--org", org]
    srv.cli(*args, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    return addr, login(srv, addr)


def operator_user(srv, roles=("platform_admin",)):
    """A member of the operator organisation (platform roles), made by the operator's CLI."""
    return admin_user(srv, roles, org=OPERATOR_ORG)


def request_api_key(srv, mail, token, email_addr, roles, name="k", expires_in=None):
    """Asks for an API key: 202 with a verification id, and the emailed code; returns both."""
    c = srv.client()
    mark = mail.mark()
    body = {"name": name, "roles": list(roles)}
    if expires_in:
        body["expires_in"] = expires_in
    r = c.post("/v1/api-keys", json=body, token=token)
    assert r.status_code == 202, r.text
    assert "secret" not in r.json() and "key_id" not in r.json(), r.text
    return r.json(), mail.code(email_addr, "api key", start=mark)


def api_key(srv, mail, token, email_addr, roles, name="k", expires_in=None):
    """Asks for an API key and verifies it with the emailed code; returns the minted key
    `{id, key_id, secret, status, expires_at}`."""
    requested, code = request_api_key(srv, mail, token, email_addr, roles, name, expires_in)
    r = srv.client().post("/v1/api-keys/verify", json={"verification_id": requested["verification_id"], "code": code}, token=token)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def key_headers(key):
    return {"x-api-key": key["key_id"], "x-api-secret": key["secret"]}


def gateway_key(srv):
    """Runs `auth-server gateway-config`; returns (config dict, feed credential headers)."""
    out = srv.cli("gateway-config", "--name", "gw-" + secrets.token_hex(3))
    cfg = json.loads(out.stdout)
    cred = cfg["revocations"]["credential"]
    return cfg, {"x-api-key": cred["key_id"], "x-api-secret": cred["secret"]}


def within_recheck(request, status, seconds=2.0):
    """The answer to `request()` once it has `status`, trying for a few `feed.recheck_ms`
    (200 ms here): a change another process made (the CLI) reaches a running server's snapshot
    within that bound, not at once."""
    deadline = time.time() + seconds
    while True:
        r = request()
        if r.status_code == status or time.time() > deadline:
            return r
        time.sleep(0.05)


def assert_error(r, status, code=None):
    assert r.status_code == status, (r.status_code, r.text)
    for h in ("x-error", "x-error-id", "x-error-code"):
        assert r.headers.get(h), f"{h} missing on {status}: {dict(r.headers)}"
    if code:
        assert r.headers["x-error-code"] == code, (r.headers["x-error-code"], r.text)
        assert r.json()["error"] == code
    assert r.json()["error_id"] == r.headers["x-error-id"]


@pytest.fixture(scope="module")
def idp():
    """A real OpenID Connect provider on this machine (PyPI `oidc-provider-mock`, in a thread):
    users' claims are set with `PUT /users/<sub>`, a sign-in is a form POST with `sub`."""
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://127.0.0.1:{server.server_port}"
