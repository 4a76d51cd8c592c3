"""Operations: health, readiness, metrics, OpenAPI, graceful shutdown, several replicas on
PostgreSQL + Redis, and a SIGKILL in the middle of traffic."""

import signal
import threading
import time

import requests
from authsrv import PASSWORD, admin_user, api_key, assert_error, free_port, key_headers, login, sign_up


METRICS_TOKEN = "m" * 40


def test_health_ready_metrics_openapi(backend, mail):
    srv = backend.server(AUTHGATE_METRICS__TOKEN=METRICS_TOKEN)
    assert requests.get(srv.url + "/healthz", timeout=10).text == "ok"
    ready = requests.get(srv.url + "/readyz", timeout=10).json()
    assert ready["status"] == "ready"
    assert ready["database"] == ("postgres" if srv.backend.name == "postgres" else "sqlite")
    assert ready["ephemeral"] == ("redis" if srv.backend.name == "postgres" else "database")
    login(srv, sign_up(srv, mail))
    assert_error(requests.get(srv.url + "/metrics", timeout=10), 401, "metrics_token_invalid")
    m = requests.get(srv.url + "/metrics", headers={"authorization": "Bearer " + METRICS_TOKEN}, timeout=10)
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert 'authgate_http_requests_total{method="POST",route="/v1/auth/authenticate",status="200"}' in text
    assert "authgate_http_request_duration_seconds_bucket" in text
    assert "authgate_sessions_created_total" in text and "authgate_emails_sent_total" in text
    doc = requests.get(srv.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    for path in ["/v1/users", "/v1/auth/init", "/v1/auth/authenticate", "/v1/sessions", "/v1/sessions/verify", "/v1/sessions/refresh",
                 "/v1/sessions/introspect", "/v1/api-keys", "/v1/api-keys/verify", "/oauth2/token", "/v1/revocations", "/.well-known/jwks.json"]:
        assert path in doc["paths"], path
    assert "bearer" in doc["components"]["securitySchemes"]
    srv.stop()


def test_metrics_only_where_configured(srv, backend):
    """By default /metrics is served nowhere; with metrics.listen only on that listener."""
    assert_error(requests.get(srv.url + "/metrics", timeout=10), 404, "not_found")
    port = free_port()
    own = backend.server(AUTHGATE_METRICS__LISTEN=f"127.0.0.1:{port}")
    assert_error(requests.get(own.url + "/metrics", timeout=10), 404, "not_found")
    m = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert m.status_code == 200 and "authgate_http_requests_total" in m.text
    assert_error(requests.get(f"http://127.0.0.1:{port}/v1/me", timeout=10), 404, "not_found")
    own.stop()


def test_graceful_shutdown_finishes_in_flight_requests(backend, mail):
    srv = backend.server()
    addr = sign_up(srv, mail)
    results = []

    def slow_login():
        try:
            results.append(login(srv, addr)["status"])
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=slow_login) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert srv.proc.wait(timeout=20) == 0
    assert "shutdown requested" in srv.logs() and "auth-server stopped" in srv.logs()
    # Requests that got in finished; none was cut off mid-way (a refused connection is fine).
    assert all(r == "complete" or "ConnectionError" in r or "Connection refused" in r for r in results), results


def test_config_errors_name_the_field(srv):
    out = srv.cli("serve", env={"AUTHGATE_TOKENS__ALG": "none"}, check=False)
    assert out.returncode == 2 and "tokens.alg" in out.stderr
    out = srv.cli("serve", env={"AUTHGATE_ROLES__TENANT": "[admin, gateway]"}, check=False)
    assert out.returncode == 2 and "roles.tenant[1]" in out.stderr and "platform role" in out.stderr
    out = srv.cli("serve", env={"AUTHGATE_PLATFORM__OPERATOR_ORG": "org_default"}, check=False)
    assert out.returncode == 2 and "platform.operator_org" in out.stderr
    out = srv.cli("serve", env={"AUTHGATE_METRICS__TOKEN": "short"}, check=False)
    assert out.returncode == 2 and "metrics.token" in out.stderr
    out = srv.cli("serve", env={"AUTHGATE_TOKENS__ACCESS_TTL_S": "soon"}, check=False)
    assert out.returncode == 2 and "access_ttl_s" in out.stderr
    out = srv.cli("migrate", env={"DATABASE_URL": "postgres://nobody@127.0.0.1:5432/x", "AUTHGATE_MASTER_KEY": ""}, check=False)
    assert out.returncode != 0


def test_replicas_share_state(backend, mail):
    """Two replicas: on PostgreSQL + Redis (the documented multi-replica set-up), and on one
    SQLite file (two processes on one host), ephemeral state in the database."""
    a = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=3)
    b = backend.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=3)
    addr = sign_up(a, mail)
    ca, cb = a.client(), b.client()
    # A login started on one replica finishes on the other (the session token lives in Redis).
    r = ca.post("/v1/auth/init", json={"email": addr})
    r = cb.post("/v1/auth/authenticate", json={"method": "password", "password": PASSWORD}, headers={"x-session-token": r.headers["x-session-token"]})
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    tokens = r.json()
    # Emailed codes too.
    mark = mail.mark()
    vid = ca.post("/v1/sessions", json={"email": addr, "password": PASSWORD}).json()["verification_id"]
    code = mail.code(addr, "sign-in", start=mark)
    assert cb.post("/v1/sessions/verify", json={"verification_id": vid, "code": code}).status_code == 200
    # Refresh rotation and reuse detection across replicas.
    t1 = ca.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert_error(cb.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "refresh_token_reused")
    # A revocation on B is seen on A within the re-check interval.
    deadline = time.time() + 3
    while time.time() < deadline and ca.get("/v1/me", token=t1["access_token"]).status_code == 200:
        time.sleep(0.05)
    assert_error(ca.get("/v1/me", token=t1["access_token"]), 401, "session_revoked")
    # Lockout counters are shared: failures on A lock the account on B.
    victim = sign_up(a, mail)
    for _ in range(3):
        a.client().post("/v1/sessions", json={"email": victim, "password": "wrong wrong wrong"})
    assert_error(b.client().post("/v1/sessions", json={"email": victim, "password": PASSWORD}), 429, "account_locked")
    # Both replicas serve the same keys.
    assert requests.get(a.url + "/.well-known/jwks.json", timeout=10).json() == requests.get(b.url + "/.well-known/jwks.json", timeout=10).json()
    a.stop()
    b.stop()


def test_sigkill_mid_traffic_loses_nothing_committed(backend, mail):
    srv = backend.server()
    admin_addr, admin = admin_user(srv, roles=("admin", "reader"))
    users = [sign_up(srv, mail) for _ in range(3)]
    key = api_key(srv, mail, admin["access_token"], admin_addr, ["reader"])
    committed = []  # (kind, value) answered 2xx before the kill
    lock = threading.Lock()
    stop = threading.Event()

    def traffic(addr):
        c = srv.client()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                t = login(srv, addr, client=c)
                with lock:
                    committed.append(("session", t))
                    committed.append(("refresh_sent", t))
                r = c.post("/v1/sessions/refresh", json={"refresh_token": t["refresh_token"]})
                if r.status_code == 200:
                    with lock:
                        committed.append(("refreshed", r.json()))
                if i % 2:
                    continue  # half the sessions stay open
                with lock:
                    committed.append(("logout_sent", t))
                r = c.post("/v1/sessions/logout", token=t["access_token"])
                if r.status_code == 204:
                    with lock:
                        committed.append(("logged_out", t))
            except Exception:  # noqa: BLE001  (the server dies under us)
                return

    threads = [threading.Thread(target=traffic, args=(u,)) for u in users]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert sum(1 for kind, _ in committed if kind == "refreshed") > 5, "traffic was running when the server was killed"

    restarted = srv.backend.server()
    c = restarted.client()

    def sids(kind):
        return {t["session_id"] for k, t in committed if k == kind}

    logout_sent, refresh_sent = sids("logout_sent"), sids("refresh_sent")
    checked = 0
    for kind, t in committed:
        sid = t["session_id"]
        if kind == "logged_out":
            # A logout that was answered is still in force.
            assert_error(c.post("/v1/sessions/refresh", json={"refresh_token": t["refresh_token"]}), 401)
        elif sid in logout_sent:
            # A logout was on the wire when the server died: committed or not, never half-done.
            continue
        elif kind == "refreshed" or (kind == "session" and sid not in refresh_sent):
            # Every answered rotation survived: the newest refresh token of the session works.
            r = c.post("/v1/sessions/refresh", json={"refresh_token": t["refresh_token"]})
            assert r.status_code == 200, (kind, r.text)
            checked += 1
    assert checked >= 3, "open sessions whose rotation was answered were checked after the restart"
    # The verified API key survived.
    assert c.get("/v1/sessions/validate", headers=key_headers(key)).status_code == 200
    restarted.stop()


def test_postgres_without_redis(binaries, tmp_path, mail):
    """PostgreSQL alone: ephemeral state (login sessions, codes, counters) in its kv table."""
    from authsrv import Backend

    b = Backend("postgres", binaries, tmp_path, mail)
    try:
        b.env.pop("REDIS_URL")
        srv = b.server(AUTHGATE_LOGIN__LOCKOUT_THRESHOLD=2)
        assert requests.get(srv.url + "/readyz", timeout=10).json()["ephemeral"] == "database"
        addr = sign_up(srv, mail)
        t = login(srv, addr)
        c = srv.client()
        mark = mail.mark()
        vid = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}).json()["verification_id"]
        code = mail.code(addr, "sign-in", start=mark)
        assert c.post("/v1/sessions/verify", json={"verification_id": vid, "code": code}).status_code == 200
        assert c.post("/v1/sessions/refresh", json={"refresh_token": t["refresh_token"]}).status_code == 200
        for _ in range(2):
            c.post("/v1/sessions", json={"email": addr, "password": "wrong wrong wrong"})
        assert_error(c.post("/v1/sessions", json={"email": addr, "password": PASSWORD}), 429, "account_locked")
    finally:
        b.close()
