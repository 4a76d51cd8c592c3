"""The whole system for tests/system: a private PostgreSQL, the auth-server on it (and Redis),
Envoy with the filter and the edge worker in workerd, both configured from
`auth-server gateway-config`, in front of one echoing upstream, plus a third-party issuer.

Pieces come from the other suites, so every suite starts the components the same way:
tests/server/authsrv.py (auth-server, SMTP sink, clients), tests/plugin/plugin_harness.py
(Envoy from docs/envoy/), tests/worker/worker_harness.py (workerd via Miniflare with
wrangler.toml's settings), tests/gateway_fixtures.py (echo upstream, fixture issuer)."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("tests", "tests/server", "tests/plugin", "tests/worker", "tests/pages"):
    sys.path.insert(0, str(ROOT / sub))

import requests  # noqa: E402

from authsrv import PASSWORD, REDIS_URL, Server, free_port, login  # noqa: E402
from gateway_fixtures import Echo, Issuer, http_request, upstream_doc, wait_for  # noqa: E402
from plugin_harness import TICK_MS, Envoy, envoy_binary, render_filter  # noqa: E402
from worker_harness import Worker, worker_env  # noqa: E402

# The feed interval the gateways poll at, in seconds (the revocation bound the tests assert).
FEED_INTERVAL_S = 1
# The auth-server's feed lifetime (`feed.ttl_s`; it re-signs after half of it): how long gateways
# keep their last feed when the auth-server is gone — short, so the fault test sees it run out.
FEED_TTL_S = 20
THIRD_PARTY = "https://login.partner.example"


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL the fault tests may restart without touching the machine's own


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) not found: install the postgresql package")


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory on a free port (run as the `postgres` user when
    the suite runs as root, as PostgreSQL refuses root)."""

    def __init__(self):
        self.bin = _pg_bin()
        # Its own directory under /tmp: pytest's are private to the user running the suite.
        workdir = Path(tempfile.mkdtemp(prefix="authgate-pg-"))
        self.workdir = workdir
        self.dir = workdir / "pgdata"
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        with open(self.dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{workdir}'\n"
                       "fsync = off\nmax_connections = 100\n")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "authgate")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/authgate"

    def _run(self, tool: str, *args: str):
        cmd = [str(self.bin / tool), *args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"{tool} failed: {out.stdout}\n{out.stderr}")
        return out

    def start(self):
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self):
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self):
        try:
            self.stop()
        except AssertionError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The gateways, as one interface


class Gateway:
    """One of the two gateways: `name`, `request(...)` -> (status, headers, body), `log()`,
    `alive()`."""

    def __init__(self, name: str, proc_owner):
        self.name = name
        self.owner = proc_owner

    def request(self, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 15):
        return http_request(self.owner.port, method, path, headers, body, timeout)

    def log(self) -> str:
        return self.owner.log() + (self.owner.stdout_path.read_text(errors="replace") if self.name == "envoy" else "")

    def alive(self) -> bool:
        return self.owner.proc.poll() is None

    def __repr__(self):
        return self.name


def seen_by_upstream(gw: Gateway, method: str, path: str, headers=(), body: bytes | None = None) -> dict:
    """Sends a request that must be allowed; returns the identity headers the upstream saw."""
    status, rh, data = gw.request(method, path, headers, body)
    assert status == 200, f"{gw}: {method} {path} -> {status} {rh.get('x-error-code')}: {data[:300]!r}"
    assert rh.get("x-origin") == "echo", f"{gw}: the answer did not come from the upstream"
    doc = upstream_doc(data)
    got: dict[str, list[str]] = {}
    for k, v in doc["headers"]:
        got.setdefault(k, []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in got.items() if k.startswith("x-auth-")}


def denied(gw: Gateway, method: str, path: str, headers=(), *, status: int, code: str, body: bytes | None = None) -> dict:
    """Sends a request that must be denied with `status` and `code`; checks the error contract
    (x-error, x-error-id = the request id, x-error-code, JSON body) and returns the headers."""
    rid = "sys-" + secrets.token_hex(6)
    st, rh, data = gw.request(method, path, [*headers, ("x-request-id", rid)], body)
    assert (st, rh.get("x-error-code")) == (status, code), f"{gw}: {method} {path} -> {st} {rh.get('x-error-code')}, want {status} {code}"
    assert rh.get("x-error") and rh.get("x-error-id") == rid, f"{gw}: error headers {rh}"
    assert json.loads(data) == {"error": code, "error_description": rh["x-error"], "error_id": rid}
    assert "x-origin" not in rh, f"{gw}: a denied request reached the upstream"
    return rh


def bearer(token: str):
    return [("authorization", f"Bearer {token}")]


# How long an answer must hold before a change counts as everywhere: the plugin's non-fetching
# worker VMs adopt what the fetcher stored at their next tick, so after one tick (plus margin)
# every thread has it — however the kernel spread the connections meanwhile.
SETTLE_S = 3 * TICK_MS / 1000


def until_status(gw: Gateway, path: str, headers, want: int, timeout: float, method: str = "GET", streak: int = 10) -> float:
    """Repeats a request until `streak` answers in a row are `want`; returns the seconds until
    the first of them. Every request is a new connection, so with Envoy they spread over its
    worker threads, each with its own VM and its own copy of keys and feed: a change counts
    once every thread has it, so the streak must also last SETTLE_S (ten answers can all come
    from one thread within a few milliseconds)."""
    start = time.monotonic()
    deadline = start + timeout
    first_ok, run, last = None, 0, None
    while time.monotonic() < deadline:
        st, rh, _ = gw.request(method, path, headers)
        last = (st, rh.get("x-error-code"))
        if st == want:
            if run == 0:
                first_ok = time.monotonic()
            run += 1
            if run >= streak and time.monotonic() - first_ok >= SETTLE_S:
                return first_ok - start
        else:
            run = 0
            time.sleep(0.02)
    raise AssertionError(f"{gw} {method} {path}: no {streak} answers {want} in a row within {timeout}s; last answer {last}")


# ---------------------------------------------------------------------------------------------
# A third-party issuer: its JWKS on a fixture server, its tokens minted by PyJWT


class Partner:
    def __init__(self):
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        self.jwt = jwt
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # in no JWKS
        self.issuer = Issuer()
        keys = []
        for kid, key, algo in (("p-rsa", self.rsa, jwt.algorithms.RSAAlgorithm), ("p-ec", self.ec, jwt.algorithms.ECAlgorithm)):
            jwk = json.loads(algo.to_jwk(key.public_key()))
            jwk.update({"kid": kid, "use": "sig"})
            keys.append(jwk)
        self.issuer.set_jwks(0, {"keys": keys})

    @property
    def base(self):
        return self.issuer.base

    @property
    def port(self):
        return self.issuer.port

    def token(self, sub: str, *, iss: str = THIRD_PARTY, kid: str = "p-rsa", key=None, **claims) -> str:
        now = int(time.time())
        body = {"iss": iss, "sub": sub, "aud": "https://api.example", "iat": now, "exp": now + 300,
                "roles": ["reader"], "org": "partner-org", **claims}
        alg = "ES256" if kid == "p-ec" else "RS256"
        signer = key or (self.ec if kid == "p-ec" else self.rsa)
        return self.jwt.encode(body, signer, algorithm=alg, headers={"kid": kid})

    def stop(self):
        self.issuer.stop()


# ---------------------------------------------------------------------------------------------
# The system


class System:
    def __init__(self, workdir: Path, binaries, mail, wasm: Path, upstream=None):
        self.workdir = workdir
        self.binary, self.authgate = binaries
        self.mail = mail
        self.pg = PrivatePostgres()
        # The echoing upstream, or what the caller brings (the benchmark's direct-response Envoy).
        self.echo = upstream or Echo()
        self.own_echo = upstream is None
        self.partner = Partner()
        env = {
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": REDIS_URL,
            "AUTHGATE_REDIS_PREFIX": f"sys{secrets.token_hex(4)}:",
            "AUTHGATE_DATA_DIR": str(workdir / "data"),
            "AUTHGATE_MASTER_KEY": secrets.token_urlsafe(32),
            "AUTHGATE_PASSWORDS__ARGON2_MEMORY_KIB": "1024",
            "AUTHGATE_PASSWORDS__ARGON2_ITERATIONS": "1",
            "AUTHGATE_TRUST_FORWARDED_FOR": "true",
            "AUTHGATE_RATE_LIMITS__AUTH_PER_IP": "1000",
            "AUTHGATE_RATE_LIMITS__AUTH_PER_ACCOUNT": "200",
            "AUTHGATE_FEED__TTL_S": str(FEED_TTL_S),
            "AUTHGATE_FEED__RECHECK_MS": "200",
            # Plain HTTP on 127.0.0.1: cookies without `Secure` (and so without `__Host-`).
            "AUTHGATE_COOKIES__SECURE": "false",
            "AUTHGATE_LOG_LEVEL": "info",
            # The federation test's identity provider runs over http on this machine.
            "AUTHGATE_FEDERATION__ALLOW_HTTP": "true",
            "AUTHGATE_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "true",
            "SMTP_URL": mail.url,
        }
        os.environ.pop("AUTHGATE_CONFIG", None)
        self.server = Server(self.binary, workdir / "server", env).start()
        self.gateway_doc = self._gateway_doc()
        (workdir / "gateway.json").write_text(json.dumps(self.gateway_doc, indent=2))
        self.envoy = Envoy(workdir / "envoy", self.envoy_doc(), self.server, self.echo, wasm=wasm,
                           extra_clusters={"partner_issuer": self.partner.port})
        self.envoy.wait_ready()
        self.worker = Worker(workdir / "worker", worker_env(self.gateway_doc, self.echo))
        self.gateways = [Gateway("envoy", self.envoy), Gateway("worker", self.worker)]
        # Ready once both have the auth-server's keys and feed and the partner's keys.
        self.admin_email = f"admin-{secrets.token_hex(4)}@example.com"
        self.cli("admin", "create-user", "--email", self.admin_email, "--role", "admin", "--role", "reader",
                 env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
        token = login(self.server, self.admin_email)["access_token"]
        for gw in self.gateways:
            until_status(gw, "/admin", bearer(token), 200, 60)
            until_status(gw, "/", bearer(self.partner.token("ready")), 200, 60)

    def _gateway_doc(self) -> dict:
        out = self.server.cli("gateway-config", "--name", "system-gateways", "--refresh-s", str(FEED_INTERVAL_S))
        doc = json.loads(out.stdout)
        doc["providers"].append({
            "issuer": THIRD_PARTY,
            "audiences": ["https://api.example"],
            "jwks_uri": f"{self.partner.base}/jwks/0.json",
            "algorithms": ["RS256", "ES256"],
            # The partner signs with OpenSSL (PyJWT + cryptography), which leaves ES256's s as it
            # comes: half its signatures are in the high-s form. The operator says so.
            "es256_accept_high_s": True,
        })
        doc["headers"] = {"claims": "x-auth-claims"}
        doc["routes"] = [
            {"path": "/healthz", "require": "anonymous"},
            {"prefix": "/admin", "require": {"any_role": ["admin"]}},
            {"prefix": "/reports", "require": {"scopes": ["reports:read"]}},
            {"prefix": "/lenient", "require": "authenticated", "on_stale": "fail_open"},
            {"prefix": "/", "require": "authenticated"},
        ]
        return doc

    def envoy_doc(self) -> dict:
        return {"host": {"upstreams": {self.server.url: "authgate_issuer", self.partner.base: "partner_issuer"},
                         "request_id_header": "x-request-id"},
                **self.gateway_doc}

    def client(self):
        return self.server.client()

    def cli(self, *args, **kw):
        return self.server.cli(*args, **kw)

    def restart_server(self):
        self.server.stop()
        self.server.start()

    def close(self):
        for part in (self.worker, self.envoy):
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - tear down the rest regardless
                pass
        self.server.stop()
        if self.own_echo:
            self.echo.stop()
        self.partner.stop()
        self.pg.close()


__all__ = ["PASSWORD", "System", "Gateway", "seen_by_upstream", "denied", "bearer", "until_status", "render_filter",
           "envoy_binary", "free_port", "wait_for", "FEED_INTERVAL_S", "FEED_TTL_S", "THIRD_PARTY", "requests"]
