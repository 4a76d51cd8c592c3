"""auth-server load benchmark (driven by bench.sh): release build on 127.0.0.1, SQLite and
PostgreSQL (+ Redis). Measures refresh (rotation chains, refresh_load example), introspect
and JWKS (oha), password login at the configured argon2 cost (oha on the short form), and the
server's RSS idle and after load. Prints a Markdown table.

Environment: OHA, AUTH_SERVER, REFRESH_LOAD (binaries), DURATION (seconds per run, default 10),
CONNECTIONS (default 32), BACKENDS (default "sqlite postgres").
"""

import base64
import email
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pg8000.native
import requests

OHA = os.environ["OHA"]
SERVER = os.environ["AUTH_SERVER"]
REFRESH_LOAD = os.environ["REFRESH_LOAD"]
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
BACKENDS = os.environ.get("BACKENDS", "sqlite postgres").split()
PASSWORD = "benchmark passphrase 2026"
PG = dict(host="127.0.0.1", port=5432, user=os.environ.get("PGUSER", "postgres"), database="test")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid):
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def oha(url, method="GET", headers=(), body=None, duration=DURATION, conns=CONNECTIONS):
    args = [OHA, "--no-tui", "--output-format", "json", "-z", f"{duration}s", "-c", str(conns), "-m", method]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["-d", body]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    codes = r.get("statusCodeDistribution", {})
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p50"] * 1000, r["latencyPercentiles"]["p99"] * 1000, codes


def run(backend):
    work = Path(tempfile.mkdtemp(prefix=f"authgate-bench-{backend}-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "AUTHGATE_LISTEN": f"127.0.0.1:{port}",
        "AUTHGATE_PUBLIC_URL": url,
        "AUTHGATE_DATA_DIR": str(work / "data"),
        "AUTHGATE_MASTER_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
        # Benchmarks hammer one account from one address: lift the brute-force limits.
        "AUTHGATE_RATE_LIMITS__AUTH_PER_IP": "100000000",
        "AUTHGATE_RATE_LIMITS__AUTH_PER_ACCOUNT": "100000000",
        # Every password login emails a code to the same address: lift its cap too.
        "AUTHGATE_CODES__ISSUE_LIMIT": "100000000",
        # The lockout counts an attempt while its password is being checked (so parallel guesses
        # cannot race past it): eight concurrent logins of one account would lock it.
        "AUTHGATE_LOGIN__LOCKOUT_THRESHOLD": "100000000",
    })
    dbname = None
    if backend == "postgres":
        dbname = "authgate_bench_" + secrets.token_hex(4)
        c = pg8000.native.Connection(**PG)
        c.run(f"CREATE DATABASE {dbname}")
        c.close()
        env["DATABASE_URL"] = f"postgres://{PG['user']}@127.0.0.1:5432/{dbname}"
        env["REDIS_URL"] = "redis://127.0.0.1:6379"
        env["AUTHGATE_REDIS_PREFIX"] = f"{dbname}:"
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([SERVER, "serve"], env=env, stdout=log, stderr=log)
    results = {}
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        time.sleep(1.0)
        results["rss_idle"] = rss_mb(proc.pid)
        # A member of the operator organisation: introspect is a platform role (docs/authority.md),
        # and a platform admin may put it on an API key.
        mk = lambda email, roles: subprocess.run(  # noqa: E731
            [SERVER, "admin", "create-user", "--email", email, "--org", "org_operator"] + sum((["--role", r] for r in roles), []),
            env={**env, "AUTHGATE_NEW_PASSWORD": PASSWORD}, check=True, capture_output=True)
        mk("loadtest@example.com", ["platform_admin", "introspect"])
        s = requests.Session()

        def login():
            r = s.post(url + "/v1/auth/init", json={"email": "loadtest@example.com"})
            r = s.post(url + "/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
            return r.json()

        # Refresh: one rotation chain per connection.
        tokens = [login()["refresh_token"] for _ in range(CONNECTIONS)]
        (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
        c0 = cpu_s(proc.pid)
        out = subprocess.run([REFRESH_LOAD, f"127.0.0.1:{port}", str(work / "tokens.txt"), str(DURATION)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"refresh_load failed: {out.stdout} {out.stderr}")
        m = re.search(r"= (\d+)/s; latency ms p50 ([\d.]+) p90 [\d.]+ p99 ([\d.]+)", out.stdout)
        results["refresh"] = (float(m.group(1)), float(m.group(2)), float(m.group(3)), {"200": "all"})
        results["refresh_cpu"] = (cpu_s(proc.pid) - c0) / (float(m.group(1)) * DURATION) * 1e6

        # Introspect: an API key with the introspect role, one user access token.
        t = login()
        r = s.post(url + "/v1/api-keys", json={"name": "bench", "roles": ["introspect"]}, headers={"authorization": "Bearer " + t["access_token"]})
        requested = r.json()
        time.sleep(0.5)
        code = None
        for f in (work / "data" / "outbox").glob("*.eml"):
            msg = email.message_from_bytes(f.read_bytes())
            if "API key" in msg["Subject"]:
                # Mails are multipart (text and HTML): the code is in the text part.
                text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
                code = re.search(r"code (\d{6})", text).group(1)
        # The key is minted when its creation is verified.
        r = s.post(url + "/v1/api-keys/verify", json={"verification_id": requested["verification_id"], "code": code}, headers={"authorization": "Bearer " + t["access_token"]})
        r.raise_for_status()
        key = r.json()
        time.sleep(1.1)
        body = json.dumps({"token": login()["access_token"]})
        assert s.post(url + "/v1/sessions/introspect", data=body, headers={"content-type": "application/json", "x-api-key": key["key_id"], "x-api-secret": key["secret"]}).json()["active"]
        c0 = cpu_s(proc.pid)
        results["introspect"] = oha(url + "/v1/sessions/introspect", "POST",
                                    ["content-type: application/json", f"x-api-key: {key['key_id']}", f"x-api-secret: {key['secret']}"], body)
        results["introspect_cpu"] = (cpu_s(proc.pid) - c0) / (results["introspect"][0] * DURATION) * 1e6
        c0 = cpu_s(proc.pid)
        results["jwks"] = oha(url + "/.well-known/jwks.json")
        results["jwks_cpu"] = (cpu_s(proc.pid) - c0) / (results["jwks"][0] * DURATION) * 1e6
        # Password login (short form, step 1: argon2id verify at the default cost + code email).
        c0 = cpu_s(proc.pid)
        results["password"] = oha(url + "/v1/sessions", "POST", ["content-type: application/json"],
                                  json.dumps({"email": "loadtest@example.com", "password": PASSWORD}), conns=8)
        results["password_cpu"] = (cpu_s(proc.pid) - c0) / (results["password"][0] * DURATION) * 1e6
        results["rss_loaded"] = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        if dbname:
            c = pg8000.native.Connection(**PG)
            c.run(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            c.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def main():
    print(f"auth-server benchmark: {DURATION}s per run, {CONNECTIONS} connections, {os.cpu_count()} CPUs, load generator on the same machine", flush=True)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    rows = []
    for b in BACKENDS:
        r = run(b)
        for name in ("refresh", "introspect", "jwks", "password"):
            rps, p50, p99, codes = r[name]
            rows.append(f"| {b} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {r[name + '_cpu']:,.0f} | {codes} |")
        rows.append(f"| {b} | RSS idle / after load (MB) | {r['rss_idle']:.1f} / {r['rss_loaded']:.1f} | | | | |")
    print("| backend | endpoint | requests/s | p50 ms | p99 ms | server CPU µs/request | status codes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
