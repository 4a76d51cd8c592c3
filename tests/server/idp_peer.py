"""An identity provider the federation tests control, on 127.0.0.1 in a thread: OpenID Connect
(discovery, authorize, token, JWKS) under `/oidc`, Microsoft's tenant-specific and multi-tenant
(`organizations`, issuer `…/{tenantid}/v2.0`) shapes under `/entra/<tenant>/v2.0`, and GitHub's
OAuth 2.0 with its REST API (`/user`, `/user/emails`) under `/gh` as a GitHub Enterprise Server
is laid out. It checks what a provider checks (one use per code, redirect_uri, PKCE S256, the
client's secret when registered) and signs ID tokens with RS256 — or, when a test says so for
the next token, forges them the ways attackers do (another issuer or audience, `alg: none`, an
unknown key, HS256 with the client secret, expired, another nonce).

The peer is the test's own so it can say what real providers say and what they never would;
the generic flow is also tested against PyPI `oidc-provider-mock` (authsrv.idp)."""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Peer:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.reads = {"discovery": 0, "jwks": 0}  # what relying parties read of this provider
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.users = {}  # sub -> claims (OIDC) or {"id": int, "emails": [...]} (GitHub)
        self.secrets = {}  # client_id -> secret, for clients that registered one
        self.codes = {}  # code -> what the authorization request said
        self.access = {}  # GitHub access token -> sub
        self.forgery = {}  # applied to the next ID token only
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    # What tests say.
    def issuer(self, tenant: str | None = None) -> str:
        return f"{self.url}/entra/{tenant}/v2.0" if tenant else f"{self.url}/oidc"

    def github(self) -> str:
        return f"{self.url}/gh"

    def set_user(self, sub: str, **claims):
        self.users[sub] = claims

    def register(self, client_id: str, secret: str):
        self.secrets[client_id] = secret

    def rotate(self):
        """A new signing key under a new key id; only it is published from now on."""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"k{int(self.kid[1:]) + 1}"

    def forge_next(self, **how):
        """The next ID token, forged: iss, aud, exp, nonce, tid (claims replaced), alg="none",
        key="stranger" (a key not published), alg="HS256" (signed with the client's secret)."""
        with self.lock:
            self.forgery = how

    # The protocol.
    def jwks(self):
        pub = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": _int(pub.n), "e": _int(pub.e)}]}

    def discovery(self, prefix: str, issuer: str):
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{self.url}{prefix}/authorize",
            "token_endpoint": f"{self.url}{prefix}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def id_token(self, request: dict, secret: str | None) -> str:
        with self.lock:
            forgery, self.forgery = self.forgery, {}
        now = int(time.time())
        claims = {"iss": request["issuer"], "aud": request["client_id"], "sub": request["sub"], "iat": now, "exp": now + 300}
        if request.get("nonce"):
            claims["nonce"] = request["nonce"]
        claims.update(self.users.get(request["sub"], {}))
        if request["tenant"] == "organizations":
            claims["iss"] = f"{self.url}/entra/{claims.get('tid', '')}/v2.0"
        claims.update({k: v for k, v in forgery.items() if k not in ("alg", "key")})
        alg = forgery.get("alg", "RS256")
        header = {"alg": alg, "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
        if alg == "none":
            return signing_input.decode() + "."
        if alg == "HS256":
            return signing_input.decode() + "." + b64(hmac.new((secret or "").encode(), signing_input, hashlib.sha256).digest())
        key = self.stranger if forgery.get("key") == "stranger" else self.key
        return signing_input.decode() + "." + b64(key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))

    def _handler(peer):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=None, headers=()):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def form(self):
                n = int(self.headers.get("content-length") or 0)
                return {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}

            def route(self):
                """(prefix, tenant, rest): `/oidc/…`, `/entra/<tenant>/v2.0/…`, `/gh/…`."""
                path = urlparse(self.path).path
                parts = path.split("/")
                if path.startswith("/entra/") and len(parts) >= 4:
                    prefix = "/".join(parts[:4])
                    return prefix, parts[2], path[len(prefix):]
                for prefix in ("/oidc", "/gh"):
                    if path.startswith(prefix + "/"):
                        return prefix, None, path[len(prefix):]
                return "", None, path

            def do_GET(self):
                prefix, tenant, rest = self.route()
                if rest == "/jwks":
                    peer.reads["jwks"] += 1
                    return self.reply(200, peer.jwks())
                if rest == "/.well-known/openid-configuration" and prefix != "/gh":
                    peer.reads["discovery"] += 1
                    issuer = f"{peer.url}/entra/{{tenantid}}/v2.0" if tenant == "organizations" else f"{peer.url}{prefix}"
                    return self.reply(200, peer.discovery(prefix, issuer))
                if prefix == "/gh" and rest in ("/api/v3/user", "/api/v3/user/emails"):
                    token = self.headers.get("authorization", "").removeprefix("Bearer ")
                    sub = peer.access.get(token)
                    if sub is None:
                        return self.reply(401, {"message": "Bad credentials"})
                    user = peer.users[sub]
                    if rest.endswith("/emails"):
                        return self.reply(200, user["emails"])
                    return self.reply(200, {"id": user["id"], "login": sub})
                return self.reply(404, {"error": "not_found"})

            def do_POST(self):
                prefix, tenant, rest = self.route()
                form = self.form()
                if rest in ("/authorize", "/login/oauth/authorize"):
                    q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                    code = secrets.token_urlsafe(16)
                    issuer = f"{peer.url}{prefix}"
                    peer.codes[code] = {**q, "sub": form["sub"], "issuer": issuer, "tenant": tenant}
                    back = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                    return self.reply(302, None, [("location", back)])
                if rest in ("/token", "/login/oauth/access_token"):
                    return self.token(prefix, form)
                return self.reply(404, {"error": "not_found"})

            def token(self, prefix, form):
                github = prefix == "/gh"

                def refuse(error):
                    # GitHub answers a refused code with 200 and an `error` field.
                    return self.reply(200 if github else 400, {"error": error})

                client_id, secret = form.get("client_id"), form.get("client_secret")
                auth = self.headers.get("authorization", "")
                if auth.startswith("Basic "):
                    client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                with peer.lock:
                    request = peer.codes.pop(form.get("code", ""), None)
                if request is None:
                    return refuse("invalid_grant")
                if request["client_id"] != client_id or request["redirect_uri"] != form.get("redirect_uri"):
                    return refuse("invalid_grant")
                if client_id in peer.secrets and not hmac.compare_digest(peer.secrets[client_id], secret or ""):
                    return self.reply(401, {"error": "invalid_client"})
                challenge = b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                if request.get("code_challenge_method") != "S256" or request.get("code_challenge") != challenge:
                    return refuse("invalid_grant")
                access = secrets.token_urlsafe(16)
                if github:
                    peer.access[access] = request["sub"]
                    return self.reply(200, {"access_token": access, "token_type": "bearer", "scope": request.get("scope", "")})
                return self.reply(200, {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": peer.id_token(request, secret)})

        return Handler
