"""What a gateway does to the requests it forwards, on every gateway: identity headers set,
spoofed ones removed, denials that never reach the upstream, identity values outside ASCII
written as the same bytes, the auth cookies stripped with the credential, methods and bodies
passing through untouched."""

import hashlib
import http.client
import os
import socket
import threading

from gateway_fixtures import Setup, bearer, denial_problems, error_code, upstream_doc


def header_values(seen: dict) -> dict[str, list[str]]:
    """The upstream's headers by name, every value of each."""
    out: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_identity_headers_reach_the_upstream_and_spoofed_ones_do_not(gateway, issuer, mint):
    setup = Setup(mint, issuer)
    setup.gateway["routes"].insert(0, {"prefix": "/strip", "require": "authenticated", "strip_credential": True})
    setup.gateway["routes"].insert(0, {"prefix": "/public", "require": "anonymous"})
    gw = setup.ready(gateway(setup.gateway))
    token = setup.token(sub="alice", roles=["reader", "writer"], sid="sid-alice")
    spoofed = [("x-auth-subject", "mallory"), ("X-Auth-Roles", "admin"), ("x-auth-admin", "1"), ("x-auth-key-id", "k"), ("x-auth-subject", "eve")]

    status, _, body = gw.request("GET", "/api/items?q=1&r=%20x", bearer(token) + spoofed)
    assert status == 200
    seen = upstream_doc(body)
    assert seen["path"] == "/api/items?q=1&r=%20x"
    names = [k for k, _ in seen["headers"]]
    assert ("x-auth-subject", "alice") in seen["headers"] and ("x-auth-roles", "reader,writer") in seen["headers"]
    assert ("x-auth-session", "sid-alice") in seen["headers"] and ("x-auth-method", "jwt") in seen["headers"]
    assert names.count("x-auth-subject") == 1 and names.count("x-auth-roles") == 1
    assert "x-auth-admin" not in names and "x-auth-key-id" not in names
    assert ("authorization", f"Bearer {token}") in seen["headers"], "credential forwarded unless strip_credential"

    # Every other header reaches the upstream as sent: repeated ones each time, in order, and
    # bytes that are not UTF-8 unchanged (the plugin removes and adds only the names it must).
    others = [("x-dup", "1"), ("x-dup", "2"), ("x-latin", "caf\xe9")]
    status, _, body = gw.request("GET", "/api/items", bearer(token) + others)
    assert status == 200
    values = header_values(upstream_doc(body))
    assert values["x-dup"] == ["1", "2"] or values["x-dup"] == ["1, 2"], values["x-dup"]
    assert values["x-latin"] == ["caf\xe9"], values["x-latin"]

    key_id, secret, kid = setup.api_key("identity")
    status, _, body = gw.request("GET", "/strip/x", [("x-api-key", key_id), ("x-api-secret", secret)] + spoofed)
    assert status == 200
    seen = dict(upstream_doc(body)["headers"])
    assert seen["x-auth-method"] == "api_key" and seen["x-auth-key-id"] == kid and seen["x-auth-subject"] == "user-1"
    assert "x-api-key" not in seen and "x-api-secret" not in seen and "x-auth-admin" not in seen

    # Anonymous routes forward no identity, and still strip the spoofed one.
    status, _, body = gw.request("GET", "/public/x", spoofed)
    assert status == 200
    assert not [k for k, _ in upstream_doc(body)["headers"] if k.startswith("x-auth-")]

    # A denial never reaches the upstream; the request id the client sent is its error id.
    status, rh, body = gw.request("GET", "/api/items", spoofed + [("x-request-id", "req-77")])
    assert status == 401
    assert not denial_problems("no credential", "GET", rh, body, "credential_missing", "req-77")
    assert rh["www-authenticate"].startswith("Bearer")
    # Without one the gateway makes one up, another for each answer (its form is the host's:
    # tests/plugin and tests/worker).
    answers = [gw.request("GET", "/api/items") for _ in range(2)]
    for status, rh, body in answers:
        assert status == 401 and not denial_problems("no request id", "GET", rh, body, "credential_missing", None)
    assert answers[0][1]["x-error-id"] != answers[1][1]["x-error-id"]

    # A credential that is not UTF-8 (bytes both hosts pass on) is malformed, not a crash.
    status, rh, _ = gw.request("GET", "/api/items", [("authorization", "Bearer \xe9\xff.a.b")])
    assert status == 401 and rh["x-error-code"] == "token_malformed"
    assert gw.request("GET", "/api/items", bearer(token))[0] == 200, "still serving"


def test_requests_in_flight_together_each_get_their_own_verdict_and_identity(gateway, issuer, mint):
    """24 requests at once, three rounds, the token cache off so every one is verified: EdDSA,
    ES256 and RS256 tokens of distinct subjects, every fourth carrying another in-flight token's
    valid signature under its own claims. A gateway that keeps decisions waiting for their
    signature check (the worker awaits WebCrypto for each while the others go on) must answer
    each with its own token's verdict: the forged ones 401, every valid one forwarded as its own
    subject to its own path — never a neighbour's verdict or identity. (workerd's WebCrypto
    answers before the isolate takes the next request, so there the checks do not overlap; the
    npm package's conformance test races them on Node, where they do.)"""
    setup = Setup(mint, issuer)
    setup.gateway["cache"] = {"max_entries": 0}
    gw = setup.ready(gateway(setup.gateway))
    tokens = [setup.token(kid=("ed1", "es1", "rs1")[i % 3], sub=f"user-{i}") for i in range(24)]
    forged = {i for i in range(24) if i % 4 == 3}
    for i in forged:
        head, claims, _ = tokens[i].split(".")
        tokens[i] = f"{head}.{claims}.{tokens[i - 3].split('.')[2]}"  # same key, valid for user-(i-3)
    for _ in range(3):
        answers = {}

        def one(i):
            answers[i] = gw.request("GET", f"/api/items/{i}", bearer(tokens[i]))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, answer in sorted(answers.items()):
            status, _, body = answer
            if i in forged:
                assert status == 401 and error_code(answer) in ("signature_invalid", "signature_not_canonical"), (i, status, body[:200])
                continue
            assert status == 200, (i, status, error_code(answer))
            seen = upstream_doc(body)
            assert seen["path"] == f"/api/items/{i}"
            assert [v for k, v in seen["headers"] if k == "x-auth-subject"] == [f"user-{i}"]
        assert len(answers) == 24


def test_a_nul_inside_a_header_value_never_shifts_the_headers(gateway, issuer, mint):
    """A host that hands the core its headers joined with NUL (the Worker, the npm package) would
    read the rest of a value holding NULs as more headers: here an `x-auth-subject` invented
    inside `x-note`. Sent raw, past any client library: the request is refused, or forwarded
    with the verified subject and no invented one — never with the smuggled name."""
    setup = Setup(mint, issuer)
    gw = setup.ready(gateway(setup.gateway))
    token = setup.token(sub="alice")
    for smuggled in (b"a\x00x-auth-subject\x00mallory", b"a\x00authorization\x00Bearer forged\x00x"):
        raw = (b"GET /api/items HTTP/1.1\r\nhost: 127.0.0.1\r\nx-note: " + smuggled + b"\r\n"
               + f"authorization: Bearer {token}\r\nconnection: close\r\n\r\n".encode())
        with socket.create_connection(("127.0.0.1", gw.port), timeout=15) as s:
            s.sendall(raw)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200"):
            names = header_values(upstream_doc(body))
            assert names.get("x-auth-subject") == ["alice"], names
            assert names.get("authorization") == [f"Bearer {token}"], names
        else:
            assert head == b"" or head.split(b" ")[1][:1] in (b"4", b"5"), head[:200]
            assert b"mallory" not in reply and b"forged" not in reply


def test_identity_values_outside_ascii_reach_the_upstream_percent_encoded(gateway, issuer, mint):
    """Envoy would send UTF-8 and the Fetch API Latin-1 (or refuse the value): auth-core writes
    identity values outside printable ASCII percent-encoded, so every gateway sends the same
    bytes."""
    setup = Setup(mint, issuer)
    gw = setup.ready(gateway(setup.gateway))
    token = setup.token(sub="用户-7", email="josé@example.com")
    status, _, body = gw.request("GET", "/api", bearer(token))
    assert status == 200
    seen = header_values(upstream_doc(body))
    assert seen["x-auth-email"] == ["jos%C3%A9@example.com"]
    assert seen["x-auth-subject"] == ["%E7%94%A8%E6%88%B7-7"]


def test_auth_cookies_are_stripped_before_forwarding(gateway, issuer, mint):
    setup = Setup(mint, issuer)
    setup.gateway["cookie"] = {"name": "ag_at", "csrf_cookie": "ag_csrf"}
    setup.gateway["routes"].insert(0, {"prefix": "/strip", "require": "authenticated", "strip_credential": True})
    gw = setup.ready(gateway(setup.gateway))
    token = setup.token(sub="cookie-user")

    def upstream_cookies(path, *cookie_fields, extra=()):
        status, rh, body = gw.request("GET", path, [("cookie", c) for c in cookie_fields] + list(extra))
        assert status == 200, (path, status, rh.get("x-error-code"))
        seen = header_values(upstream_doc(body))
        assert seen["x-auth-subject"] == ["cookie-user"] and seen["x-auth-method"] == ["jwt"]
        return seen.get("cookie")

    # Authenticated by the access cookie: the upstream gets the other cookies, not the auth ones.
    assert upstream_cookies("/strip/page", f"theme=dark; ag_at={token}; ag_csrf=c5rf; lang=en") == ["theme=dark; lang=en"]
    assert upstream_cookies("/strip/page", f"theme=dark; ag_at={token}", "ag_csrf=c5rf; lang=en") == ["theme=dark; lang=en"]
    # Only auth cookies: no cookie header at all.
    assert upstream_cookies("/strip/page", f"ag_at={token}; ag_csrf=c5rf") is None
    # Authenticated by a bearer token, the auth cookies go too.
    status, _, body = gw.request("GET", "/strip/page", bearer(token) + [("cookie", "ag_csrf=c5rf; theme=dark")])
    seen = header_values(upstream_doc(body))
    assert status == 200 and seen.get("cookie") == ["theme=dark"] and "authorization" not in seen
    # A route without strip_credential forwards them.
    cookies = f"theme=dark; ag_at={token}; ag_csrf=c5rf"
    assert upstream_cookies("/api/page", cookies) == [cookies]


def test_methods_and_bodies_pass_through_intact(gateway, issuer, mint):
    setup = Setup(mint, issuer)
    gw = setup.ready(gateway(setup.gateway))
    auth = bearer(setup.token())
    payload = os.urandom(3 * 1024 * 1024 + 17)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, _, body = gw.request(method, "/api/upload", auth + [("content-type", "application/octet-stream")], payload)
        assert status == 200, (method, body[:200])
        seen = upstream_doc(body)
        assert seen["method"] == method
        assert seen["body_length"] == len(payload) and seen["body_sha256"] == hashlib.sha256(payload).hexdigest()
        assert ("content-type", "application/octet-stream") in seen["headers"]
    for method in ("GET", "OPTIONS"):
        status, _, body = gw.request(method, "/api/x", auth)
        assert status == 200 and upstream_doc(body)["method"] == method and upstream_doc(body)["body_length"] == 0
    status, rh, body = gw.request("HEAD", "/api/x", auth)
    assert status == 200 and rh.get("x-origin") == "echo" and body == b""

    # A streamed (chunked) request body is handed to the upstream as it arrives, unchanged.
    chunks = [os.urandom(64 * 1024) for _ in range(20)]
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", "/api/stream", body=iter(chunks), headers={**dict(auth), "content-type": "application/x-raw"},
                     encode_chunked=True)
        r = conn.getresponse()
        seen = upstream_doc(r.read())
        assert r.status == 200
    finally:
        conn.close()
    joined = b"".join(chunks)
    assert seen["body_length"] == len(joined) and seen["body_sha256"] == hashlib.sha256(joined).hexdigest()

    # The upstream's response (status, headers, body) comes back as it is.
    status, rh, body = gw.request("GET", "/api/x", auth)
    assert rh["x-origin"] == "echo" and rh["content-type"] == "application/json"

    # A denied upload is refused without touching the upstream.
    status, rh, _ = gw.request("POST", "/api/upload", [("content-type", "text/plain")], b"x" * 1000)
    assert status == 401 and "x-origin" not in rh
