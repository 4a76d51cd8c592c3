#!/usr/bin/env python3
"""Mint the authgate conformance vectors (JWT / API key / revocation feed).

This is an INDEPENDENT implementation of the credential formats described in the
design ("Credentials" section): it shares no code with the Rust verifier, so the
two can check each other. Normal tokens are made with PyJWT; every malformed or
hostile token is built by hand from `cryptography` primitives, base64url and
json, so the bytes on the wire are exactly what each case says they are.

Usage
-----
    python mint.py --gen-keys                      # create keys/ (only the missing files)
    python mint.py --now 1700000000 --out vectors.json
    python mint.py --now 1700000000 --jwks-mode uri --out vectors-uri.json

Output (one JSON document)
--------------------------
    now      the unix time every case is evaluated at (hand it to the core as `now`)
    config   the gateway config (our JSON schema). With --jwks-mode uri, providers
             carry "jwks_uri": "{JWKS_BASE}/jwks/<n>.json" where <n> is the
             provider's index in config.providers, and revocations.uri is
             "{JWKS_BASE}/v1/revocations"; a host replaces the literal
             "{JWKS_BASE}" with http://127.0.0.1:PORT of the server it runs.
             The HS256 `oct` key always stays inline (symmetric keys are never fetched).
    jwks     issuer -> public JWK set, in provider order (what /jwks/<n>.json serves)
    feed     the compact-JWS revocation feed (what /v1/revocations serves); every
             case assumes this feed has been loaded and is fresh
    cases    [{name, description, request{method, path, headers[[name, value]...]},
               expect{status, code, headers{name: value}, absent_headers[name...]}}]
             `headers` lists identity headers that must be forwarded upstream with
             exactly that value; `absent_headers` lists names that must NOT be
             forwarded. Both are empty for denied requests.

Determinism: everything is a function of --now and the key files, except ECDSA
(ES256) signatures, which use a random nonce (so ES256 tokens differ per run but
verify the same; the one PS256 case likewise has a random PSS salt). Key
material is generated once (--gen-keys) and checked in.

After minting, the script re-checks its own vectors (self_check): every token that
must be accepted is verified with PyJWT against the published JWKS, and every
token whose premise is "the signature is valid/invalid under key K" is checked
with raw `cryptography` calls, so a vector cannot silently test the wrong thing.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

import jwt  # PyJWT
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

MAIN_ISS = "https://auth.authgate.test"
TP_ISS = "https://third-party.test"
SKEW = 30  # clock_skew_s of both providers
OPERATOR_ORG = "org-operator"  # the organisation /operator is restricted to
MAX_TOKEN = 8192  # tokens longer than this many bytes are token_too_large

# key file name -> kind. All private keys are PKCS#8 PEM, unencrypted (test keys!).
KEY_FILES = {
    "ed1": "ed25519",  # main issuer, EdDSA, kid "ed1"; also signs the revocation feed
    "es1": "p256",  # main issuer, ES256, kid "es1"
    "rs1": "rsa",  # main issuer, RS256, kid "rs1"
    "rs3p": "rsa",  # third-party issuer, RS256, kid "tp1"
    "attacker_ed": "ed25519",  # keys the gateway has never seen
    "attacker_es": "p256",
    "attacker_rs": "rsa",
}
SECRET_NAMES = ("hs1", "hk1", "hk_foreign")

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- encoding


def b64u(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cjson(obj) -> bytes:
    """Compact JSON, key order as given (ASCII-escaped, so CR/LF become \\r\\n)."""
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


def uint_b64(n: int) -> str:
    """A JWK unsigned big-endian integer (RSA n/e), minimal length."""
    return b64u(n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"))


# --------------------------------------------------------------------------- keys


def gen_keys(keydir: Path) -> list[str]:
    """Create whichever key files are missing. Never overwrites an existing key."""
    keydir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, kind in KEY_FILES.items():
        path = keydir / f"{name}.pem"
        if path.exists():
            continue
        if kind == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        elif kind == "p256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        made.append(path.name)
    spath = keydir / "secrets.json"
    secrets = json.loads(spath.read_text()) if spath.exists() else {}
    missing = [n for n in SECRET_NAMES if n not in secrets]
    if missing:
        for n in missing:
            secrets[n] = b64u(os.urandom(32))
        spath.write_text(json.dumps(secrets, indent=2) + "\n")
        made.append("secrets.json")
    return made


class Keys:
    def __init__(self, keydir: Path):
        missing = [f"{n}.pem" for n in KEY_FILES if not (keydir / f"{n}.pem").exists()]
        if not (keydir / "secrets.json").exists():
            missing.append("secrets.json")
        if missing:
            sys.exit(f"missing key files in {keydir}: {missing}; run `mint.py --gen-keys` once")
        self.priv = {
            n: serialization.load_pem_private_key((keydir / f"{n}.pem").read_bytes(), None)
            for n in KEY_FILES
        }
        self.pub = {n: k.public_key() for n, k in self.priv.items()}
        s = json.loads((keydir / "secrets.json").read_text())
        self.secret_b64 = {n: s[n] for n in SECRET_NAMES}
        # The HMAC key is the *decoded* 32 bytes, as for a JWK "k" member.
        self.secret = {n: b64u_decode(s[n]) for n in SECRET_NAMES}

    def pem_public(self, name: str, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
        return self.pub[name].public_bytes(serialization.Encoding.PEM, fmt)


def public_jwk(pub, **members) -> dict:
    """Public JWK for an Ed25519 / P-256 / RSA public key, plus extra members."""
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64u(nums.x.to_bytes(32, "big")),
            "y": b64u(nums.y.to_bytes(32, "big")),
        }
    elif isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        jwk = {"kty": "RSA", "n": uint_b64(nums.n), "e": uint_b64(nums.e)}
    else:
        raise TypeError(pub)
    jwk.update(members)
    return jwk


# --------------------------------------------------------------------------- raw JWS


# The order of the P-256 group: (r, s) and (r, n - s) both verify.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def raw_sign(alg: str, key, data: bytes) -> bytes:
    """Sign `data` the way JWS alg `alg` does, straight from `cryptography`."""
    if alg == "EdDSA":
        return key.sign(data)
    if alg == "ES256":
        # cryptography emits DER; JWS wants fixed-size r || s (RFC 7518 §3.4), and gateways take
        # only the low-s one of the two valid forms (s <= n/2).
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "ES256-HIGH-S":  # not a JWS alg: the other, malleable form of the same signature
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        s = max(s, P256_N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "ES256-DER":  # not a JWS alg: the DER form a careless signer emits
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(
            data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH), hashes.SHA256()
        )
    if alg == "HS256":
        return hmac.new(key, data, hashlib.sha256).digest()
    if alg == "HS512":
        return hmac.new(key, data, hashlib.sha512).digest()
    raise ValueError(alg)


def raw_verify(alg: str, key, token: str) -> bool:
    """Independent signature check used by self_check (never by the gateway)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    data = f"{parts[0]}.{parts[1]}".encode("ascii")
    try:
        sig = b64u_decode(parts[2])
    except ValueError:
        return False
    try:
        if alg == "EdDSA":
            key.verify(sig, data)
        elif alg == "ES256":
            if len(sig) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        elif alg == "RS256":
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "HS256":
            return hmac.compare_digest(sig, hmac.new(key, data, hashlib.sha256).digest())
        else:
            raise ValueError(alg)
    except InvalidSignature:
        return False
    return True


def seg(part) -> str:
    """A JWS segment from a dict (compact JSON), raw bytes, or a ready-made str."""
    if isinstance(part, str):
        return part
    if isinstance(part, (bytes, bytearray)):
        return b64u(bytes(part))
    return b64u(cjson(part))


def compact(header, payload, alg: str | None = None, key=None, sig: bytes | str | None = None) -> str:
    """Hand-built compact JWS. Signs `header.payload` exactly as encoded here,
    with `alg`/`key` (which need not match the header: that is the point of
    several attacks), or uses a given `sig` (bytes are base64url-encoded)."""
    h, p = seg(header), seg(payload)
    if sig is None:
        sig = b64u(raw_sign(alg, key, f"{h}.{p}".encode("ascii"))) if alg else ""
    elif isinstance(sig, bytes):
        sig = b64u(sig)
    return f"{h}.{p}.{sig}"


# --------------------------------------------------------------------------- minting

DROP = object()  # claim override meaning "leave this claim out"

COOKIE, CSRF_COOKIE, APP_ORIGIN = "ag_at", "ag_csrf", "https://app.example"
JWT_IDENTITY_ABSENT = ["x-auth-key-id"]  # a JWT never yields an API key id
KEY_IDENTITY_ABSENT = ["x-auth-session"]  # an API key never yields a session
ALL_IDENTITY = [
    "x-auth-subject",
    "x-auth-org",
    "x-auth-roles",
    "x-auth-method",
    "x-auth-session",
    "x-auth-key-id",
    "x-auth-email",
]


class Minter:
    def __init__(self, keys: Keys, now: int, jwks_mode: str):
        self.k = keys
        self.now = now
        self.jwks_mode = jwks_mode
        self.cases: list[dict] = []
        # kid -> (alg, signing key) for the keys the gateway knows
        self.signer = {
            "ed1": ("EdDSA", keys.priv["ed1"]),
            "es1": ("ES256", keys.priv["es1"]),
            "rs1": ("RS256", keys.priv["rs1"]),
            "hs1": ("HS256", keys.secret["hs1"]),
            "tp1": ("RS256", keys.priv["rs3p"]),
        }
        # kid -> (alg, verification key), used only by self_check
        self.verifier = {
            "ed1": ("EdDSA", keys.pub["ed1"]),
            "es1": ("ES256", keys.pub["es1"]),
            "rs1": ("RS256", keys.pub["rs1"]),
            "hs1": ("HS256", keys.secret["hs1"]),
            "tp1": ("RS256", keys.pub["rs3p"]),
        }
        self.revoked_key_id = self.key_hex("api_key_revoked")

    # ---- helpers ---------------------------------------------------------

    @staticmethod
    def key_hex(label: str) -> str:
        """A deterministic 128-bit API key id (hex) derived from a label."""
        return hashlib.sha256(f"authgate-conformance/{label}".encode()).hexdigest()[:32]

    def at_claims(self, name: str, **over) -> dict:
        """The default valid access-token claims, with overrides (DROP removes)."""
        n = self.now
        c = {
            "iss": MAIN_ISS,
            "sub": "user-1",
            "aud": "api",
            "exp": n + 600,
            "iat": n - 60,
            "jti": f"jti-{name}",
            "sid": "sid-1",
            "org": "org-1",
            "email": "user1@example.com",
            "roles": ["reader"],
            "scope": "items:read",
            "amr": ["pwd"],
        }
        for key, val in over.items():
            if val is DROP:
                c.pop(key, None)
            else:
                c[key] = val
        return c

    def tp_claims(self, name: str, **over) -> dict:
        """A plausible third-party (e.g. Keycloak-like) token: no org, no sid."""
        n = self.now
        c = {
            "iss": TP_ISS,
            "sub": "tp-user-1",
            "aud": ["https://api.example", "billing"],
            "exp": n + 600,
            "iat": n - 60,
            "jti": f"jti-{name}",
            "email": "tp1@example.org",
            "roles": ["reader"],
            "scope": "items:read",
        }
        for key, val in over.items():
            if val is DROP:
                c.pop(key, None)
            else:
                c[key] = val
        return c

    def pyjwt(self, claims: dict, kid: str, typ: str | None = "at+jwt", alg: str | None = None) -> str:
        """A normal token via PyJWT. Header: {"alg","kid","typ"} (typ None -> omitted). ES256
        signatures are put in their low-s form (PyJWT leaves s as the signer drew it)."""
        s_alg, key = self.signer[kid]
        token = jwt.encode(claims, key, algorithm=alg or s_alg, headers={"kid": kid, "typ": typ or None})
        if (alg or s_alg) != "ES256":
            return token
        head, payload, sig = token.split(".")
        raw = b64u_decode(sig)
        r, s_ = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        return f"{head}.{payload}.{b64u(r.to_bytes(32, 'big') + min(s_, P256_N - s_).to_bytes(32, 'big'))}"

    def api_key(self, claims: dict, hmac_name: str = "hk1") -> tuple[str, str]:
        """key_id = "agk_" + b64u(JSON claims); secret = b64u(HMAC-SHA256(key, key_id))."""
        key_id = "agk_" + b64u(cjson(claims))
        secret = b64u(hmac.new(self.k.secret[hmac_name], key_id.encode("ascii"), hashlib.sha256).digest())
        return key_id, secret

    def key_claims(self, label: str, **over) -> dict:
        n = self.now
        c = {
            "v": 1,
            "kid": "hk1",
            "id": self.key_hex(label),
            "sub": "user-1",
            "org": "org-1",
            "roles": ["reader"],
            "iat": n - 3600,
            "exp": n + 86400,
        }
        for key, val in over.items():
            if val is DROP:
                c.pop(key, None)
            else:
                c[key] = val
        return c

    @staticmethod
    def jwt_ok(sub="user-1", roles=("reader",), org="org-1", sid="sid-1", email="user1@example.com") -> dict:
        h = {"x-auth-subject": sub, "x-auth-roles": ",".join(roles), "x-auth-method": "jwt"}
        if org:
            h["x-auth-org"] = org
        if sid:
            h["x-auth-session"] = sid
        if email:
            h["x-auth-email"] = email
        return h

    @staticmethod
    def key_ok(claims: dict) -> dict:
        return {
            "x-auth-subject": claims["sub"],
            "x-auth-org": claims["org"],
            "x-auth-roles": ",".join(claims["roles"]),
            "x-auth-method": "api_key",
            "x-auth-key-id": claims["id"],
        }

    def add(
        self,
        name: str,
        description: str,
        headers=(),
        *,
        method: str = "GET",
        path: str = "/api/items",
        status: int = 200,
        code: str | None = None,
        expect_headers: dict | None = None,
        absent: list | None = None,
        check: list | None = None,
    ) -> None:
        """Record one case. `check` holds self_check assertions, never emitted."""
        assert all(c["name"] != name for c in self.cases), f"duplicate case {name}"
        assert (status == 200) == (code is None), name
        self.cases.append(
            {
                "name": name,
                "description": description,
                "request": {"method": method, "path": path, "headers": [list(h) for h in headers]},
                "expect": {
                    "status": status,
                    "code": code,
                    "headers": expect_headers or {},
                    "absent_headers": absent or [],
                },
                "_check": check or [],
            }
        )

    def bearer_ok(self, name, description, token, *, path="/api/items", method="GET", ident=None, scheme="Bearer", check=None):
        self.add(
            name,
            description,
            [("authorization", f"{scheme} {token}")],
            path=path,
            method=method,
            expect_headers=ident or self.jwt_ok(),
            absent=list(JWT_IDENTITY_ABSENT),
            check=(check if check is not None else []) + [("accept_jwt", token)],
        )

    def bearer_deny(self, name, description, token, status, code, *, path="/api/items", method="GET", check=None):
        self.add(
            name,
            description,
            [("authorization", f"Bearer {token}")],
            path=path,
            method=method,
            status=status,
            code=code,
            check=check,
        )

    # ---- config, JWKS and feed ---------------------------------------------

    def jwks(self) -> dict:
        k = self.k
        return {
            MAIN_ISS: {
                "keys": [
                    public_jwk(k.pub["ed1"], kid="ed1", alg="EdDSA", use="sig"),
                    public_jwk(k.pub["es1"], kid="es1", alg="ES256", use="sig"),
                    public_jwk(k.pub["rs1"], kid="rs1", alg="RS256", use="sig"),
                ]
            },
            # the third-party key deliberately has no "alg" member, only "use"
            TP_ISS: {"keys": [public_jwk(k.pub["rs3p"], kid="tp1", use="sig")]},
        }

    def config(self) -> dict:
        jwks = self.jwks()
        oct_hs1 = {"kty": "oct", "kid": "hs1", "alg": "HS256", "k": self.k.secret_b64["hs1"]}
        main = {"issuer": MAIN_ISS, "audiences": ["api"]}
        tp = {"issuer": TP_ISS, "audiences": ["api", "https://api.example"]}
        if self.jwks_mode == "inline":
            main["jwks"] = {"keys": jwks[MAIN_ISS]["keys"] + [oct_hs1]}
            tp["jwks"] = jwks[TP_ISS]
            rev_uri = "http://127.0.0.1:0/v1/revocations"
        else:
            main["jwks_uri"] = "{JWKS_BASE}/jwks/0.json"
            main["jwks"] = {"keys": [oct_hs1]}  # symmetric keys are never fetched
            tp["jwks_uri"] = "{JWKS_BASE}/jwks/1.json"
            rev_uri = "{JWKS_BASE}/v1/revocations"
        main.update({"algorithms": ["EdDSA", "ES256", "RS256", "HS256"], "clock_skew_s": SKEW, "typ": ["at+jwt"]})
        tp.update({"algorithms": ["RS256"], "clock_skew_s": SKEW})
        return {
            "providers": [main, tp],
            "api_keys": {"hmac_keys": [{"kid": "hk1", "secret": self.k.secret_b64["hk1"]}]},
            "revocations": {"uri": rev_uri, "refresh_s": 5, "issuer": MAIN_ISS},
            "routes": [
                {"path": "/health", "require": "anonymous"},
                {"prefix": "/public", "require": "anonymous"},
                {"prefix": "/admin", "methods": ["GET", "POST"], "require": {"any_role": ["admin"]}},
                {"prefix": "/ops", "require": {"all_roles": ["admin", "ops"]}},
                {"prefix": "/scoped", "require": {"scopes": ["items:write"]}},
                {"prefix": "/jwt-only", "require": "authenticated", "credentials": ["jwt"]},
                {"prefix": "/operator", "require": {"orgs": [OPERATOR_ORG], "any_role": ["admin"]}},
                {"path": "/private", "require": {"any_role": ["admin"]}},
                {"prefix": "/", "require": "authenticated"},
            ],
            "cookie": {"name": COOKIE, "csrf_cookie": CSRF_COOKIE, "allowed_origins": [APP_ORIGIN]},
        }

    def feed(self) -> str:
        n = self.now
        claims = {
            "iss": MAIN_ISS,
            "iat": n - 5,
            "exp": n + 300,
            "ver": 7,
            "watermark": n - 10,
            "revoked": {
                "sid": [{"id": "sid-revoked", "exp": n + 600}],
                "jti": [{"id": "jti-revoked", "exp": n + 600}],
                "sub": [{"id": "user-revoked", "iat_before": n - 100, "exp": n + 600}],
                "api_key": [{"id": self.revoked_key_id, "exp": n + 86400}],
                "org": [{"id": "org-suspended", "exp": n + 86400}],
            },
        }
        return jwt.encode(claims, self.k.priv["ed1"], algorithm="EdDSA", headers={"kid": "ed1", "typ": "revocations+jwt"})

    # ---- the cases ---------------------------------------------------------

    def build(self) -> dict:
        self.cases_valid()
        self.cases_alg_none()
        self.cases_key_confusion()
        self.cases_signature()
        self.cases_header_attacks()
        self.cases_time()
        self.cases_iss_aud()
        self.cases_typ()
        self.cases_malformed()
        self.cases_claims()
        self.cases_schemes()
        self.cases_revocation()
        self.cases_api_keys()
        self.cases_routes()
        self.cases_paths()
        self.cases_route_bypasses()
        self.cases_cookies()
        return {
            "now": self.now,
            "config": self.config(),
            "jwks": self.jwks(),
            "feed": self.feed(),
            "cases": self.cases,
        }

    def cases_valid(self):
        for kid, alg in (("ed1", "EdDSA"), ("es1", "ES256"), ("rs1", "RS256"), ("hs1", "HS256")):
            name = f"{alg.lower()}_valid"
            tok = self.pyjwt(self.at_claims(name), kid)
            self.bearer_ok(name, f"A valid {alg} access token (kid {kid}, typ at+jwt) for user-1 with role reader.", tok)
        tok = self.pyjwt(self.at_claims("multi_role_valid", roles=["reader", "writer"]), "ed1")
        self.bearer_ok(
            "multi_role_valid",
            "Roles are forwarded comma-joined, in token order, without spaces.",
            tok,
            ident=self.jwt_ok(roles=("reader", "writer")),
        )
        tp_ident = self.jwt_ok(sub="tp-user-1", org=None, sid=None, email="tp1@example.org")
        tok = self.pyjwt(self.tp_claims("third_party_rs256_valid"), "tp1", typ="JWT")
        self.bearer_ok(
            "third_party_rs256_valid",
            "Third-party issuer: RS256, kid tp1 (JWK without alg), typ JWT (no typ rule for this provider), "
            "aud array containing the configured audience https://api.example.",
            tok,
            ident=tp_ident,
        )
        tok = self.pyjwt(self.tp_claims("third_party_no_typ_valid", aud="api"), "tp1", typ=None)
        self.bearer_ok(
            "third_party_no_typ_valid",
            "Third-party issuer token without a typ header and aud \"api\": accepted (typ rules are per provider).",
            tok,
            ident=tp_ident,
        )
        tok = self.pyjwt(self.at_claims("nbf_past_valid", nbf=self.now - 60), "ed1")
        self.bearer_ok("nbf_past_valid", "A valid token carrying nbf in the past.", tok)

    def cases_alg_none(self):
        # alg "none" is never acceptable, whatever its spelling and whether or not
        # a signature segment is attached (here: the real Ed25519 signature of a
        # valid token, so a verifier that ignores alg and checks ed1 would pass it).
        for spelling in ("none", "None", "NONE", "nOnE"):
            claims = self.at_claims(f"alg_{spelling}")
            header = {"alg": spelling, "kid": "ed1", "typ": "at+jwt"}
            unsigned = compact(header, claims)
            h, p, _ = unsigned.split(".")
            real_sig = b64u(raw_sign("EdDSA", self.k.priv["ed1"], f"{h}.{p}".encode()))
            self.bearer_deny(
                f"alg_{spelling}_unsigned",
                f"alg \"{spelling}\" with an empty signature segment (\"h.p.\").",
                unsigned,
                401,
                "alg_not_allowed",
            )
            self.bearer_deny(
                f"alg_{spelling}_signed",
                f"alg \"{spelling}\" with a signature segment that is a valid Ed25519 signature by ed1 over h.p.",
                f"{h}.{p}.{real_sig}",
                401,
                "alg_not_allowed",
            )

    def cases_key_confusion(self):
        k = self.k
        hdr = lambda kid: {"alg": "HS256", "kid": kid, "typ": "at+jwt"}  # noqa: E731
        rs1_jwk = public_jwk(k.pub["rs1"], kid="rs1", alg="RS256", use="sig")
        es1_jwk = public_jwk(k.pub["es1"], kid="es1", alg="ES256", use="sig")
        confusions = [
            ("hs256_rs1_spki_pem_secret", "rs1", k.pem_public("rs1"),
             "HS256 token, kid rs1, HMAC secret = rs1's public key as SPKI PEM bytes (classic RS/HS confusion)."),
            ("hs256_rs1_pkcs1_pem_secret", "rs1", k.pem_public("rs1", serialization.PublicFormat.PKCS1),
             "HS256 token, kid rs1, HMAC secret = rs1's public key as PKCS#1 PEM bytes."),
            ("hs256_rs1_jwk_n_text_secret", "rs1", rs1_jwk["n"].encode("ascii"),
             "HS256 token, kid rs1, HMAC secret = the JWK \"n\" member as text (base64url string bytes)."),
            ("hs256_rs1_jwk_n_bytes_secret", "rs1", b64u_decode(rs1_jwk["n"]),
             "HS256 token, kid rs1, HMAC secret = the decoded modulus bytes of the JWK \"n\"."),
            ("hs256_es1_spki_pem_secret", "es1", k.pem_public("es1"),
             "HS256 token, kid es1, HMAC secret = es1's public key as SPKI PEM bytes."),
            ("hs256_es1_jwk_json_secret", "es1", cjson(es1_jwk),
             "HS256 token, kid es1, HMAC secret = es1's public JWK JSON text."),
            ("hs256_ed1_spki_pem_secret", "ed1", k.pem_public("ed1"),
             "HS256 token, kid ed1, HMAC secret = ed1's public key as SPKI PEM bytes."),
        ]
        for name, kid, secret, desc in confusions:
            tok = compact(hdr(kid), self.at_claims(name, roles=["admin"]), "HS256", secret)
            self.bearer_deny(name, desc + " kid names a key of another kty/alg.", tok, 401, "key_alg_mismatch",
                             check=[("sig_valid", tok, "HS256", secret)])
        # a genuine signature of one alg, labelled with a kid of another alg
        cross = [
            ("es256_with_kid_ed1", "ES256", "es1", "ed1", "ES256 token signed by es1 but with kid ed1 (an OKP/EdDSA key)."),
            ("eddsa_with_kid_rs1", "EdDSA", "ed1", "rs1", "EdDSA token signed by ed1 but with kid rs1 (an RSA key)."),
            ("rs256_with_kid_es1", "RS256", "rs1", "es1", "RS256 token signed by rs1 but with kid es1 (an EC key)."),
            ("rs256_with_kid_hs1", "RS256", "rs1", "hs1", "RS256 token signed by rs1 but with kid hs1 (an oct key)."),
            ("eddsa_with_kid_hs1", "EdDSA", "ed1", "hs1", "EdDSA token signed by ed1 but with kid hs1 (an oct key)."),
        ]
        for name, alg, signer, kid, desc in cross:
            tok = compact({"alg": alg, "kid": kid, "typ": "at+jwt"}, self.at_claims(name), alg, self.signer[signer][1])
            self.bearer_deny(name, desc, tok, 401, "key_alg_mismatch")
        # algorithms the provider does not list
        tok = compact({"alg": "HS256", "kid": "tp1", "typ": "JWT"}, self.tp_claims("third_party_hs256"), "HS256",
                      k.pem_public("rs3p"))
        self.bearer_deny("third_party_hs256",
                         "HS256 token for the third-party issuer (which allows only RS256), kid tp1, "
                         "HMAC secret = its RSA public PEM.", tok, 401, "alg_not_allowed")
        tok = compact({"alg": "ES256", "kid": "tp1", "typ": "JWT"}, self.tp_claims("third_party_es256"), "ES256",
                      k.priv["attacker_es"])
        self.bearer_deny("third_party_es256", "ES256 token for the third-party issuer (RS256 only).", tok, 401,
                         "alg_not_allowed")
        tok = compact({"alg": "HS512", "kid": "hs1", "typ": "at+jwt"}, self.at_claims("alg_hs512"), "HS512",
                      k.secret["hs1"])
        self.bearer_deny("alg_hs512_not_listed", "HS512 token correctly signed with hs1's secret; HS512 is not in "
                         "the provider's algorithms.", tok, 401, "alg_not_allowed")
        tok = compact({"alg": "PS256", "kid": "rs1", "typ": "at+jwt"}, self.at_claims("alg_ps256"), "PS256",
                      k.priv["rs1"])
        self.bearer_deny("alg_ps256_not_listed", "PS256 token correctly signed with rs1's private key; PS256 is not "
                         "in the provider's algorithms.", tok, 401, "alg_not_allowed")
        tok = compact({"alg": "XS999", "kid": "ed1", "typ": "at+jwt"}, self.at_claims("alg_unknown"), "EdDSA",
                      k.priv["ed1"])
        self.bearer_deny("alg_unknown", "Unknown alg \"XS999\" (signature is ed1's EdDSA signature).", tok, 401,
                         "alg_not_allowed")

    def cases_signature(self):
        k = self.k
        for kid, alg in (("ed1", "EdDSA"), ("es1", "ES256"), ("rs1", "RS256"), ("hs1", "HS256")):
            valg, vkey = self.verifier[kid]
            low = alg.lower()
            # tampered payload: a valid token whose payload is swapped for one with roles ["admin"]
            good = self.pyjwt(self.at_claims(f"{low}_tampered_payload"), kid)
            h, _, s = good.split(".")
            evil = seg(self.at_claims(f"{low}_tampered_payload", roles=["admin"]))
            tok = f"{h}.{evil}.{s}"
            self.bearer_deny(f"{low}_tampered_payload", f"Valid {alg} token whose payload was replaced (roles "
                             "reader -> admin), keeping the original signature.", tok, 401, "signature_invalid",
                             check=[("sig_invalid", tok, valg, vkey)])
            # tampered signature: one bit of the first signature byte flipped
            good = self.pyjwt(self.at_claims(f"{low}_tampered_signature"), kid)
            h, p, s = good.split(".")
            raw = bytearray(b64u_decode(s))
            raw[0] ^= 0x01
            tok = f"{h}.{p}.{b64u(bytes(raw))}"
            self.bearer_deny(f"{low}_tampered_signature", f"Valid {alg} token with one bit of its signature flipped.",
                             tok, 401, "signature_invalid", check=[("sig_invalid", tok, valg, vkey)])
            # stripped signature: "h.p." with the header still claiming alg
            good = self.pyjwt(self.at_claims(f"{low}_stripped_signature"), kid)
            h, p, _ = good.split(".")
            self.bearer_deny(f"{low}_stripped_signature", f"Valid {alg} token with the signature removed (\"h.p.\").",
                             f"{h}.{p}.", 401, "signature_invalid")
        # a key the gateway never saw, under a kid it knows
        foreign = [
            ("EdDSA", "ed1", k.priv["attacker_ed"]),
            ("ES256", "es1", k.priv["attacker_es"]),
            ("RS256", "rs1", k.priv["attacker_rs"]),
            ("HS256", "hs1", k.secret["hk_foreign"]),
        ]
        for alg, kid, key in foreign:
            name = f"foreign_key_{alg.lower()}_kid_{kid}"
            tok = compact({"alg": alg, "kid": kid, "typ": "at+jwt"}, self.at_claims(name, roles=["admin"]), alg, key)
            valg, vkey = self.verifier[kid]
            self.bearer_deny(name, f"{alg} token signed with an attacker's key but carrying the known kid {kid}.",
                             tok, 401, "signature_invalid", check=[("sig_invalid", tok, valg, vkey)])
        # ES256 signature in DER (ASN.1 SEQUENCE of r, s) instead of raw r||s
        claims = self.at_claims("es256_der_signature")
        h, p = seg({"alg": "ES256", "kid": "es1", "typ": "at+jwt"}), seg(claims)
        der = raw_sign("ES256-DER", k.priv["es1"], f"{h}.{p}".encode())
        tok = f"{h}.{p}.{b64u(der)}"
        self.bearer_deny("es256_der_signature", "ES256 token genuinely signed by es1, but the signature is "
                         "DER-encoded (as OpenSSL/cryptography emit it) instead of the JWS raw 64-byte r||s.",
                         tok, 401, "signature_invalid", check=[("sig_invalid", tok, "ES256", k.pub["es1"])])

    def cases_header_attacks(self):
        k = self.k
        att_jwk = public_jwk(k.pub["attacker_ed"], kid="attacker")
        tok = compact({"alg": "EdDSA", "kid": "attacker", "typ": "at+jwt", "jwk": att_jwk},
                      self.at_claims("embedded_jwk_attacker_kid", roles=["admin"]), "EdDSA", k.priv["attacker_ed"])
        self.bearer_deny("embedded_jwk_attacker_kid", "Header embeds the attacker's public key as \"jwk\" (kid "
                         "\"attacker\") and is signed with it; embedded keys must never be trusted.",
                         tok, 401, "unknown_kid")
        att_jwk_ed1 = public_jwk(k.pub["attacker_ed"], kid="ed1")
        tok = compact({"alg": "EdDSA", "kid": "ed1", "typ": "at+jwt", "jwk": att_jwk_ed1},
                      self.at_claims("embedded_jwk_kid_ed1", roles=["admin"]), "EdDSA", k.priv["attacker_ed"])
        self.bearer_deny("embedded_jwk_kid_ed1", "Embedded attacker \"jwk\" header with kid \"ed1\", signed by the "
                         "attacker: verified against the configured ed1, so the signature fails.",
                         tok, 401, "signature_invalid", check=[("sig_invalid", tok, "EdDSA", k.pub["ed1"])])
        tok = compact({"alg": "EdDSA", "jku": "https://evil.test/jwks.json", "kid": "attacker", "typ": "at+jwt"},
                      self.at_claims("jku_attacker_kid", roles=["admin"]), "EdDSA", k.priv["attacker_ed"])
        self.bearer_deny("jku_attacker_kid", "\"jku\" header pointing to an attacker JWKS with kid \"attacker\"; "
                         "jku must never be followed.", tok, 401, "unknown_kid")
        tok = compact({"alg": "EdDSA", "jku": "https://evil.test/jwks.json", "kid": "ed1", "typ": "at+jwt"},
                      self.at_claims("jku_kid_ed1", roles=["admin"]), "EdDSA", k.priv["attacker_ed"])
        self.bearer_deny("jku_kid_ed1", "\"jku\" header pointing elsewhere, kid ed1, signed by the attacker.",
                         tok, 401, "signature_invalid", check=[("sig_invalid", tok, "EdDSA", k.pub["ed1"])])
        tok = compact({"alg": "RS256", "kid": "rs1", "typ": "at+jwt", "x5u": "https://evil.test/cert.pem"},
                      self.at_claims("x5u_kid_rs1", roles=["admin"]), "RS256", k.priv["attacker_rs"])
        self.bearer_deny("x5u_kid_rs1", "\"x5u\" header pointing to an attacker certificate, kid rs1, signed by "
                         "the attacker's RSA key.", tok, 401, "signature_invalid",
                         check=[("sig_invalid", tok, "RS256", k.pub["rs1"])])
        tok = compact({"alg": "RS256", "kid": "attacker", "typ": "at+jwt", "x5u": "https://evil.test/cert.pem"},
                      self.at_claims("x5u_attacker_kid", roles=["admin"]), "RS256", k.priv["attacker_rs"])
        self.bearer_deny("x5u_attacker_kid", "\"x5u\" header with kid \"attacker\"; x5u must never be followed.",
                         tok, 401, "unknown_kid")
        tok = compact({"alg": "EdDSA", "kid": "ed9", "typ": "at+jwt"}, self.at_claims("unknown_kid"), "EdDSA",
                      k.priv["ed1"])
        self.bearer_deny("unknown_kid", "Token signed by ed1 but with kid \"ed9\", which no JWKS contains.",
                         tok, 401, "unknown_kid")
        tok = compact({"alg": "EdDSA", "kid": "../../../../etc/passwd", "typ": "at+jwt"},
                      self.at_claims("kid_path_traversal"), "EdDSA", k.priv["ed1"])
        self.bearer_deny("kid_path_traversal", "kid is a path traversal string; it is only ever a lookup key.",
                         tok, 401, "unknown_kid")
        tok = compact({"alg": "RS256", "kid": "tp1", "typ": "at+jwt"}, self.at_claims("main_iss_with_tp_kid"),
                      "RS256", k.priv["rs3p"])
        self.bearer_deny("main_iss_with_tp_kid", "Main-issuer token signed by the third party's key with kid tp1: "
                         "kids are looked up only in the token issuer's own JWKS.", tok, 401, "unknown_kid")
        tok = compact({"alg": "RS256", "kid": "rs1", "typ": "JWT"}, self.tp_claims("tp_iss_with_main_kid"),
                      "RS256", k.priv["rs1"])
        self.bearer_deny("tp_iss_with_main_kid", "Third-party-issuer token signed by the main issuer's rs1 with kid "
                         "rs1: not in the third party's JWKS.", tok, 401, "unknown_kid")
        tok = compact({"alg": "EdDSA", "crit": ["exp-ext"], "exp-ext": True, "kid": "ed1", "typ": "at+jwt"},
                      self.at_claims("crit_unknown"), "EdDSA", k.priv["ed1"])
        self.bearer_deny("crit_unknown", "Validly signed token whose header marks an unknown extension critical "
                         "(crit [\"exp-ext\"]); RFC 7515 §4.1.11 requires rejection.", tok, 401, "crit_unsupported",
                         check=[("sig_valid", tok, "EdDSA", k.pub["ed1"])])

    def cases_time(self):
        n = self.now
        ed = self.k.pub["ed1"]

        def signed(name, **over):
            return self.pyjwt(self.at_claims(name, **over), "ed1")

        t = signed("expired_31s", exp=n - 31, iat=n - 700)
        self.bearer_deny("expired_31s", "exp = now-31: beyond the 30 s clock skew.", t, 401, "token_expired",
                         check=[("sig_valid", t, "EdDSA", ed)])
        t = signed("expired_1h", exp=n - 3600, iat=n - 4200)
        self.bearer_deny("expired_1h", "exp = now-3600.", t, 401, "token_expired", check=[("sig_valid", t, "EdDSA", ed)])
        self.bearer_ok("expired_10s_within_skew", "exp = now-10: expired, but within the 30 s skew, so accepted.",
                       signed("expired_10s_within_skew", exp=n - 10, iat=n - 610))
        self.bearer_ok("expired_boundary_30s", "exp = now-30 exactly: rejected only when exp < now - skew.",
                       signed("expired_boundary_30s", exp=n - 30, iat=n - 630))
        t = signed("nbf_future_60", nbf=n + 60)
        self.bearer_deny("nbf_future_60", "nbf = now+60: beyond the skew.", t, 401, "token_not_yet_valid",
                         check=[("sig_valid", t, "EdDSA", ed)])
        t = signed("nbf_future_31", nbf=n + 31)
        self.bearer_deny("nbf_future_31", "nbf = now+31: one second beyond the skew.", t, 401, "token_not_yet_valid",
                         check=[("sig_valid", t, "EdDSA", ed)])
        self.bearer_ok("nbf_future_10_within_skew", "nbf = now+10: within the skew, accepted.",
                       signed("nbf_future_10_within_skew", nbf=n + 10))
        self.bearer_ok("nbf_boundary_30s", "nbf = now+30 exactly: rejected only when nbf > now + skew.",
                       signed("nbf_boundary_30s", nbf=n + 30))
        t = signed("missing_exp", exp=DROP)
        self.bearer_deny("missing_exp", "No exp claim: access tokens must expire.", t, 401, "claims_invalid",
                         check=[("sig_valid", t, "EdDSA", ed)])
        t = signed("exp_string", exp=str(n + 600))
        self.bearer_deny("exp_string", "exp is the JSON string \"<now+600>\" instead of a number.", t, 401,
                         "claims_invalid", check=[("sig_valid", t, "EdDSA", ed)])
        self.bearer_ok("exp_float_valid", "exp = now+600.5 (a JSON number with a fraction is a valid NumericDate).",
                       signed("exp_float_valid", exp=n + 600.5))
        t = self.pyjwt(self.tp_claims("third_party_expired", exp=n - 600, iat=n - 1200), "tp1", typ="JWT")
        self.bearer_deny("third_party_expired", "Third-party token with exp = now-600.", t, 401, "token_expired",
                         check=[("sig_valid", t, "RS256", self.k.pub["rs3p"])])

    def cases_iss_aud(self):
        ed = self.k.pub["ed1"]

        def deny(name, desc, code, **over):
            t = self.pyjwt(self.at_claims(name, **over), "ed1")
            self.bearer_deny(name, desc, t, 401, code, check=[("sig_valid", t, "EdDSA", ed)])

        deny("wrong_iss", "iss https://evil.test (signed by ed1, kid ed1): no such provider.", "issuer_unknown",
             iss="https://evil.test")
        deny("iss_trailing_slash", "iss \"https://auth.authgate.test/\": issuers match exactly, no normalisation.",
             "issuer_unknown", iss=MAIN_ISS + "/")
        deny("wrong_aud", "aud \"other-api\".", "audience_mismatch", aud="other-api")
        deny("aud_case_differs", "aud \"API\": audiences compare case-sensitively.", "audience_mismatch", aud="API")
        deny("aud_array_without_api", "aud [\"billing\", \"other\"]: none configured.", "audience_mismatch",
             aud=["billing", "other"])
        deny("missing_aud", "No aud claim at all.", "audience_mismatch", aud=DROP)
        self.bearer_ok("aud_array_with_api", "aud [\"billing\", \"api\"] contains the configured audience.",
                       self.pyjwt(self.at_claims("aud_array_with_api", aud=["billing", "api"]), "ed1"))
        tp_ident = self.jwt_ok(sub="tp-user-1", org=None, sid=None, email="tp1@example.org")
        self.bearer_ok("third_party_aud_string_url", "Third-party token with aud the string \"https://api.example\".",
                       self.pyjwt(self.tp_claims("third_party_aud_string_url", aud="https://api.example"), "tp1",
                                  typ="JWT"), ident=tp_ident)
        t = self.pyjwt(self.tp_claims("third_party_wrong_aud", aud=["https://other.example"]), "tp1", typ="JWT")
        self.bearer_deny("third_party_wrong_aud", "Third-party token for another audience.", t, 401,
                         "audience_mismatch", check=[("sig_valid", t, "RS256", self.k.pub["rs3p"])])

    def cases_typ(self):
        ed = self.k.pub["ed1"]
        for name, typ, desc in (
            ("typ_jwt", "JWT", "typ \"JWT\": the main provider requires at+jwt (RFC 9068)."),
            ("typ_missing", None, "No typ header: the main provider requires at+jwt."),
            ("typ_id_token_like", "id_token+jwt", "typ \"id_token+jwt\"."),
        ):
            t = self.pyjwt(self.at_claims(name), "ed1", typ=typ)
            self.bearer_deny(name, desc, t, 401, "typ_not_allowed", check=[("sig_valid", t, "EdDSA", ed)])
        self.bearer_ok("typ_application_at_jwt", "typ \"application/at+jwt\" is the same media type as at+jwt.",
                       self.pyjwt(self.at_claims("typ_application_at_jwt"), "ed1", typ="application/at+jwt"))
        self.bearer_ok("typ_uppercase", "typ \"AT+JWT\": media types compare case-insensitively.",
                       self.pyjwt(self.at_claims("typ_uppercase"), "ed1", typ="AT+JWT"))
        self.bearer_deny("feed_as_bearer", "The revocation feed JWS itself (validly signed by ed1, typ "
                         "revocations+jwt) presented as a bearer token.", self.feed(), 401, "typ_not_allowed")
        t = self.pyjwt(self.at_claims("revocations_typ_access_claims"), "ed1", typ="revocations+jwt")
        self.bearer_deny("revocations_typ_access_claims", "Full valid access-token claims but typ revocations+jwt: "
                         "a revocations+jwt is never a bearer token.", t, 401, "typ_not_allowed",
                         check=[("sig_valid", t, "EdDSA", ed)])
        t = self.pyjwt(self.tp_claims("third_party_revocations_typ"), "tp1", typ="revocations+jwt")
        self.bearer_deny("third_party_revocations_typ", "Third-party provider has no typ rule, yet typ "
                         "revocations+jwt is still refused as a bearer.", t, 401, "typ_not_allowed",
                         check=[("sig_valid", t, "RS256", self.k.pub["rs3p"])])

    def sized_token(self, name: str, target: int) -> str:
        """A validly signed token of exactly `target` characters, grown with a `pad` claim.
        base64url lengths skip 4k+1 values, so try a few algorithms until one fits."""
        for kid in ("ed1", "hs1", "rs1"):
            base = len(self.pyjwt(self.at_claims(name, pad=""), kid))
            start = max(0, (target - base) * 3 // 4 - 8)
            for extra in range(start, start + 24):
                tok = self.pyjwt(self.at_claims(name, pad="A" * extra), kid)
                if len(tok) == target:
                    return tok
                if len(tok) > target:
                    break
        raise RuntimeError(f"cannot hit length {target}")

    def cases_malformed(self):
        k = self.k
        good = self.pyjwt(self.at_claims("malformed_base"), "ed1")
        h, p, s = good.split(".")
        m = "token_malformed"
        self.bearer_deny("two_segments", "Only header.payload (no second dot).", f"{h}.{p}", 401, m)
        self.bearer_deny("four_segments", "A valid token with a fourth segment appended.", f"{good}.{s}", 401, m)
        self.bearer_deny("five_segments", "Five segments (JWE compact shape).", f"{h}.{p}.{s}.{s}.{s}", 401, m)
        self.bearer_deny("one_segment", "A single segment, no dots.", h, 401, m)
        # '+' belongs to standard base64, not base64url. Replace a char mid-payload.
        bad = p[:10] + "+" + p[11:]
        self.bearer_deny("bad_base64_char", "A '+' (standard-base64 char, not base64url) inside the payload "
                         "segment.", f"{h}.{bad}.{s}", 401, m)
        bad_sig = s[:10] + "/" + s[11:]
        self.bearer_deny("bad_base64_char_signature", "A '/' inside the signature segment.", f"{h}.{p}.{bad_sig}",
                         401, m)
        # padded base64: a payload whose base64 needs '=' padding (the jti is
        # lengthened until it does), signed over the padded text, so the only
        # defect is the padding itself.
        jti = "jti-padded_base64"
        while len(cjson(self.at_claims("padded_base64", jti=jti))) % 3 == 0:
            jti += "x"
        padded = base64.urlsafe_b64encode(cjson(self.at_claims("padded_base64", jti=jti))).decode()
        assert padded.endswith("=")
        tok = compact({"alg": "EdDSA", "kid": "ed1", "typ": "at+jwt"}, padded, "EdDSA", k.priv["ed1"])
        self.bearer_deny("padded_base64", "Payload segment carries '=' padding (signed over the padded text); "
                         "JWS base64url has no padding.", tok, 401, m, check=[("sig_valid", tok, "EdDSA", k.pub["ed1"])])
        tok = compact(b"this is not json", self.at_claims("non_json_header"), "EdDSA", k.priv["ed1"])
        self.bearer_deny("non_json_header", "Header segment decodes to non-JSON text.", tok, 401, m)
        tok = compact(b'"EdDSA"', self.at_claims("non_object_header"), "EdDSA", k.priv["ed1"])
        self.bearer_deny("non_object_header", "Header segment is a JSON string, not an object.", tok, 401, m)
        tok = compact({"alg": "EdDSA", "kid": "ed1", "typ": "at+jwt"}, b'["sub","user-1"]', "EdDSA", k.priv["ed1"])
        self.bearer_deny("json_array_payload", "Payload is a JSON array (validly signed by ed1).", tok, 401, m,
                         check=[("sig_valid", tok, "EdDSA", k.pub["ed1"])])
        tok = compact({"alg": "EdDSA", "kid": "ed1", "typ": "at+jwt"}, b"sub=user-1", "EdDSA", k.priv["ed1"])
        self.bearer_deny("non_json_payload", "Payload is not JSON (validly signed by ed1).", tok, 401, m,
                         check=[("sig_valid", tok, "EdDSA", k.pub["ed1"])])
        self.add("empty_bearer", "\"Bearer \" with nothing after the scheme.", [("authorization", "Bearer ")],
                 status=401, code=m)
        self.add("bearer_without_token", "\"Bearer\" alone (what an empty bearer looks like after a proxy trims "
                 "trailing whitespace).", [("authorization", "Bearer")], status=401, code=m)
        # size limits: > 8192 bytes is too large; exactly 8192 is fine
        t = self.sized_token("token_8192_valid", MAX_TOKEN)
        self.bearer_ok("token_8192_valid", "A valid token exactly 8192 bytes long (the limit is inclusive).", t)
        t = self.sized_token("token_8193_too_large", MAX_TOKEN + 1)
        self.bearer_deny("token_8193_too_large", "A validly signed token of 8193 bytes.", t, 401, "token_too_large")
        t = self.pyjwt(self.at_claims("token_200kb", pad="A" * 150_000), "ed1")
        self.bearer_deny("token_200kb", f"A validly signed token of {len(t)} bytes (~200 KB); must be refused "
                         "before any parsing.", t, 401, "token_too_large")

    def cases_claims(self):
        k = self.k
        ed = k.pub["ed1"]
        # duplicate "sub": parsers disagree on which one wins, so the token is refused
        body = cjson(self.at_claims("duplicate_sub"))
        assert body.endswith(b"}")
        body = body[:-1] + b',"sub":"admin"}'
        tok = compact({"alg": "EdDSA", "kid": "ed1", "typ": "at+jwt"}, body, "EdDSA", k.priv["ed1"])
        self.bearer_deny("duplicate_sub", "Payload has \"sub\":\"user-1\" and later \"sub\":\"admin\" "
                         "(validly signed).", tok, 401, "claims_invalid", check=[("sig_valid", tok, "EdDSA", ed)])
        for name, desc, over in (
            ("role_with_comma", "roles [\"reader,admin\"]: a comma would forge an extra role in x-auth-roles.",
             {"roles": ["reader,admin"]}),
            ("sub_with_crlf", "sub \"user-1\\r\\nx-auth-roles: admin\": control characters would split headers.",
             {"sub": "user-1\r\nx-auth-roles: admin"}),
            ("missing_sub", "No sub claim.", {"sub": DROP}),
        ):
            t = self.pyjwt(self.at_claims(name, **over), "ed1")
            self.bearer_deny(name, desc, t, 401, "claims_invalid", check=[("sig_valid", t, "EdDSA", ed)])

    def cases_schemes(self):
        good = lambda name: self.pyjwt(self.at_claims(name), "ed1")  # noqa: E731
        self.bearer_ok("bearer_lowercase_scheme", "Scheme \"bearer\": auth schemes are case-insensitive.",
                       good("bearer_lowercase_scheme"), scheme="bearer")
        self.bearer_ok("bearer_uppercase_scheme", "Scheme \"BEARER\".", good("bearer_uppercase_scheme"),
                       scheme="BEARER")
        self.add("basic_scheme", "Authorization: Basic (user:pass).", [("authorization", "Basic dXNlcjpwYXNz")],
                 status=401, code="unsupported_scheme")
        self.add("token_scheme", "Authorization: Token <valid JWT>: only Bearer and ApiKey are understood.",
                 [("authorization", "Token " + good("token_scheme"))], status=401, code="unsupported_scheme")
        self.add("credential_missing", "No credential at all on an authenticated route.", [], status=401,
                 code="credential_missing")
        self.add("two_authorization_headers", "Two Authorization headers, each a valid bearer token.",
                 [("authorization", "Bearer " + good("two_auth_a")), ("authorization", "Bearer " + good("two_auth_b"))],
                 status=400, code="conflicting_credentials")
        kid, sec = self.api_key(self.key_claims("bearer_and_api_key"))
        self.add("bearer_and_x_api_key", "A valid bearer token and a valid x-api-key/x-api-secret pair together.",
                 [("authorization", "Bearer " + good("bearer_and_api_key")), ("x-api-key", kid), ("x-api-secret", sec)],
                 status=400, code="conflicting_credentials")
        self.add("apikey_authorization_and_x_api_key", "The same valid API key sent both as Authorization: ApiKey "
                 "and as x-api-key/x-api-secret.",
                 [("authorization", f"ApiKey {kid}.{sec}"), ("x-api-key", kid), ("x-api-secret", sec)],
                 status=400, code="conflicting_credentials")
        # identity headers sent by the client are stripped, then set from the credential
        tok = good("spoofed_headers_jwt")
        self.add("spoofed_headers_jwt", "Valid reader token plus client-sent x-auth-subject: admin, "
                 "X-Auth-Roles: admin (mixed case), x-auth-key-id and x-auth-evil: all replaced or removed.",
                 [("authorization", "Bearer " + tok), ("x-auth-subject", "admin"), ("X-Auth-Roles", "admin"),
                  ("x-auth-key-id", "spoofed"), ("x-auth-evil", "1")],
                 expect_headers=self.jwt_ok(), absent=["x-auth-evil", "x-auth-key-id"],
                 check=[("accept_jwt", tok)])
        claims = self.key_claims("spoofed_headers_api_key")
        kid, sec = self.api_key(claims)
        self.add("spoofed_headers_api_key", "Valid API key plus client-sent x-auth-method: jwt, x-auth-session "
                 "and x-auth-evil.",
                 [("x-api-key", kid), ("x-api-secret", sec), ("x-auth-method", "jwt"), ("x-auth-session", "sid-1"),
                  ("x-auth-evil", "1")],
                 expect_headers=self.key_ok(claims), absent=["x-auth-evil", "x-auth-session"],
                 check=[("accept_key", kid, sec)])
        tok = good("spoofed_underscore_headers")
        self.add("spoofed_underscore_headers", "Valid reader token plus x_auth_roles: admin and X_Auth_Subject: admin: "
                 "CGI-style upstreams read underscores as dashes, so these are identity headers too and are removed.",
                 [("authorization", "Bearer " + tok), ("x_auth_roles", "admin"), ("X_Auth_Subject", "admin")],
                 expect_headers=self.jwt_ok(), absent=["x_auth_roles", "x_auth_subject"], check=[("accept_jwt", tok)])
        self.add("spoofed_headers_public", "Anonymous route: client-sent x-auth-* headers are still stripped and "
                 "none are set.", [("x-auth-subject", "admin"), ("x-auth-roles", "admin")], path="/public/docs",
                 absent=list(ALL_IDENTITY))

    def cases_revocation(self):
        n = self.now
        ed = self.k.pub["ed1"]
        for name, desc, code, over in (
            ("revoked_jti", "jti \"jti-revoked\" is listed in the feed.", "token_revoked", {"jti": "jti-revoked"}),
            ("revoked_sid", "sid \"sid-revoked\" is listed in the feed.", "session_revoked", {"sid": "sid-revoked"}),
            ("revoked_sub_old_iat", "sub user-revoked with iat now-200 <= iat_before (now-100).", "subject_revoked",
             {"sub": "user-revoked", "iat": n - 200}),
            ("revoked_sub_iat_equal", "sub user-revoked with iat == iat_before (now-100): revoked (<=).",
             "subject_revoked", {"sub": "user-revoked", "iat": n - 100}),
        ):
            t = self.pyjwt(self.at_claims(name, **over), "ed1")
            self.bearer_deny(name, desc, t, 401, code, check=[("sig_valid", t, "EdDSA", ed)])
        self.bearer_ok("revoked_sub_new_iat", "sub user-revoked but iat now-50, after iat_before (now-100): valid.",
                       self.pyjwt(self.at_claims("revoked_sub_new_iat", sub="user-revoked", iat=n - 50), "ed1"),
                       ident=self.jwt_ok(sub="user-revoked"))
        claims = self.key_claims("api_key_revoked_sub_old_iat", sub="user-revoked")
        kid, sec = self.api_key(claims)
        self.add("api_key_revoked_sub_old_iat", "API key of user-revoked with iat now-3600 <= iat_before: the sub "
                 "entry revokes API keys too.", [("x-api-key", kid), ("x-api-secret", sec)], status=401,
                 code="subject_revoked", check=[("key_hmac_ok", kid, sec)])
        claims = self.key_claims("api_key_revoked_sub_new_iat", sub="user-revoked", iat=n - 50)
        kid, sec = self.api_key(claims)
        self.add("api_key_revoked_sub_new_iat", "API key of user-revoked created at now-50 (after iat_before, "
                 "before the watermark): valid.", [("x-api-key", kid), ("x-api-secret", sec)],
                 expect_headers=self.key_ok(claims), absent=list(KEY_IDENTITY_ABSENT), check=[("accept_key", kid, sec)])

        # A suspended organisation: every credential naming it is refused, however new; the
        # match is exact (another organisation whose name starts the same passes).
        t = self.pyjwt(self.at_claims("org_suspended_token", org="org-suspended", iat=n - 1), "ed1")
        self.bearer_deny("org_suspended_token", "Token of org-suspended (listed in the feed's org list), issued a "
                         "second ago: refused whatever its iat.", t, 403, "org_suspended",
                         check=[("sig_valid", t, "EdDSA", ed)])
        claims = self.key_claims("api_key_org_suspended", org="org-suspended", iat=n - 50)
        kid, sec = self.api_key(claims)
        self.add("api_key_org_suspended", "API key of org-suspended (valid HMAC, before the watermark): refused.",
                 [("x-api-key", kid), ("x-api-secret", sec)], status=403, code="org_suspended",
                 check=[("key_hmac_ok", kid, sec)])
        self.bearer_ok("org_suspended_prefix_other_org", "Token of org-suspended-not (an organisation whose id starts "
                       "with a suspended one's): valid.",
                       self.pyjwt(self.at_claims("org_suspended_prefix_other_org", org="org-suspended-not"), "ed1"),
                       ident=self.jwt_ok(org="org-suspended-not"))

    def cases_api_keys(self):
        n = self.now

        def ok(name, desc, claims, form="headers", path="/api/items", method="GET"):
            kid, sec = self.api_key(claims)
            hdrs = [("x-api-key", kid), ("x-api-secret", sec)] if form == "headers" else [
                ("authorization", f"ApiKey {kid}.{sec}")]
            self.add(name, desc, hdrs, path=path, method=method, expect_headers=self.key_ok(claims),
                     absent=list(KEY_IDENTITY_ABSENT), check=[("accept_key", kid, sec)])

        def deny(name, desc, hdrs, code, status=401, path="/api/items", check=None):
            self.add(name, desc, hdrs, path=path, status=status, code=code, check=check)

        ok("api_key_valid_headers", "Valid reader API key as x-api-key + x-api-secret.",
           self.key_claims("api_key_valid_headers"))
        ok("api_key_valid_authorization", "Valid reader API key as Authorization: ApiKey <key_id>.<secret>.",
           self.key_claims("api_key_valid_authorization"), form="authorization")
        ok("api_key_no_exp_valid", "API key without exp (never expires).", self.key_claims("api_key_no_exp", exp=DROP))
        ok("api_key_watermark_boundary", "API key with iat == watermark (now-10): the feed covers it, valid.",
           self.key_claims("api_key_watermark_boundary", iat=n - 10))

        kid, sec = self.api_key(self.key_claims("api_key_wrong_secret"))
        wrong = b64u(hashlib.sha256(b"not the secret").digest())
        deny("api_key_wrong_secret", "Well-formed key_id with a wrong (but well-formed) secret.",
             [("x-api-key", kid), ("x-api-secret", wrong)], "api_key_invalid")
        base = self.key_claims("api_key_escalated")
        _, old_sec = self.api_key(base)
        esc_kid, _ = self.api_key(dict(base, roles=["admin"]))
        deny("api_key_escalated_roles", "key_id re-encoded with roles [\"admin\"], sent with the secret of the "
             "original reader key.", [("x-api-key", esc_kid), ("x-api-secret", old_sec)], "api_key_invalid",
             path="/admin")
        kid, sec = self.api_key(self.key_claims("api_key_unknown_kid", kid="hk9"), hmac_name="hk_foreign")
        deny("api_key_unknown_kid", "Claims name HMAC key \"hk9\", which is not configured.",
             [("x-api-key", kid), ("x-api-secret", sec)], "api_key_unknown_kid")
        kid, sec = self.api_key(self.key_claims("api_key_foreign_hmac", roles=["admin"]), hmac_name="hk_foreign")
        deny("api_key_foreign_hmac", "Claims say kid hk1 but the secret is an HMAC under a foreign key.",
             [("x-api-key", kid), ("x-api-secret", sec)], "api_key_invalid")
        kid, sec = self.api_key(self.key_claims("api_key_expired", iat=n - 90000, exp=n - 3600))
        deny("api_key_expired", "API key with exp = now-3600.", [("x-api-key", kid), ("x-api-secret", sec)],
             "api_key_expired", check=[("key_hmac_ok", kid, sec)])
        revoked = self.key_claims("api_key_revoked")
        assert revoked["id"] == self.revoked_key_id
        kid, sec = self.api_key(revoked)
        deny("api_key_revoked", "API key whose id is listed in the feed's api_key list.",
             [("x-api-key", kid), ("x-api-secret", sec)], "api_key_revoked", check=[("key_hmac_ok", kid, sec)])
        kid, sec = self.api_key(self.key_claims("api_key_pending", iat=n - 5))
        deny("api_key_pending", "API key created at now-5, after the feed's watermark (now-10): the gateway "
             "cannot know yet whether it is verified.", [("x-api-key", kid), ("x-api-secret", sec)],
             "api_key_pending", check=[("key_hmac_ok", kid, sec)])
        # malformed key ids
        _, sec = self.api_key(self.key_claims("api_key_malformed"))
        deny("api_key_wrong_prefix", "key_id \"sk_live_...\" without the agk_ prefix.",
             [("x-api-key", "sk_live_" + "A" * 40), ("x-api-secret", sec)], "api_key_malformed")
        deny("api_key_bad_base64", "key_id \"agk_\" followed by characters outside base64url.",
             [("x-api-key", "agk_!!not*base64!!"), ("x-api-secret", sec)], "api_key_malformed")
        nj = "agk_" + b64u(b"not json at all")
        deny("api_key_non_json_claims", "key_id whose base64url part decodes to non-JSON.",
             [("x-api-key", nj), ("x-api-secret", sec)], "api_key_malformed")
        arr = "agk_" + b64u(b'["v",1]')
        deny("api_key_array_claims", "key_id whose claims are a JSON array, not an object.",
             [("x-api-key", arr), ("x-api-secret", sec)], "api_key_malformed")
        kid, sec = self.api_key(self.key_claims("api_key_secret_missing"))
        deny("api_key_secret_missing", "x-api-key without x-api-secret.", [("x-api-key", kid)], "api_key_malformed")
        deny("api_key_authorization_no_dot", "Authorization: ApiKey <key_id> with no \".<secret>\" part.",
             [("authorization", f"ApiKey {kid}")], "api_key_malformed")
        # where API keys may be used
        kid, sec = self.api_key(self.key_claims("api_key_on_jwt_only"))
        deny("api_key_on_jwt_only", "Valid API key on /jwt-only, which accepts only JWTs.",
             [("x-api-key", kid), ("x-api-secret", sec)], "credential_not_accepted", path="/jwt-only/x")
        admin = self.key_claims("api_key_admin", roles=["admin"])
        ok("api_key_admin_on_admin", "Valid API key with role admin on GET /admin.", admin, path="/admin/users")
        kid, sec = self.api_key(self.key_claims("api_key_reader_on_admin"))
        deny("api_key_reader_on_admin", "Valid reader API key on /admin.", [("x-api-key", kid), ("x-api-secret", sec)],
             "insufficient_role", status=403, path="/admin/users")
        kid, sec = self.api_key(self.key_claims("api_key_on_scoped", roles=["admin"]))
        deny("api_key_on_scoped", "Valid API key on /scoped: API keys carry roles, never scopes.",
             [("x-api-key", kid), ("x-api-secret", sec)], "insufficient_scope", status=403, path="/scoped/items")

    def cases_routes(self):
        def tok(name, **over):
            return self.pyjwt(self.at_claims(name, **over), "ed1")

        def deny(name, desc, token, status, code, path, method="GET"):
            self.bearer_deny(name, desc, token, status, code, path=path, method=method)

        deny("reader_on_admin", "Reader token on GET /admin/users.", tok("reader_on_admin"), 403,
             "insufficient_role", "/admin/users")
        deny("reader_post_admin", "Reader token on POST /admin/users.", tok("reader_post_admin"), 403,
             "insufficient_role", "/admin/users", "POST")
        self.bearer_ok("admin_on_admin", "Admin token on GET /admin/users.", tok("admin_on_admin", roles=["admin"]),
                       path="/admin/users", ident=self.jwt_ok(roles=("admin",)))
        self.bearer_ok("reader_delete_admin_falls_through", "DELETE is not in the /admin rule's methods, so the "
                       "request falls through to the \"/\" rule (authenticated): reader allowed.",
                       tok("reader_delete_admin"), path="/admin/users", method="DELETE")
        deny("admin_without_ops_on_ops", "Roles [admin] on /ops, which needs all of admin and ops.",
             tok("admin_without_ops", roles=["admin"]), 403, "insufficient_role", "/ops/deploy")
        deny("ops_without_admin_on_ops", "Roles [ops] on /ops.", tok("ops_without_admin", roles=["ops"]), 403,
             "insufficient_role", "/ops/deploy")
        self.bearer_ok("admin_ops_on_ops", "Roles [admin, ops] on /ops.",
                       tok("admin_ops_on_ops", roles=["admin", "ops"]), path="/ops/deploy",
                       ident=self.jwt_ok(roles=("admin", "ops")))
        deny("missing_scope_on_scoped", "scope \"items:read\" on /scoped (needs items:write).",
             tok("missing_scope_on_scoped"), 403, "insufficient_scope", "/scoped/items")
        deny("scope_prefix_not_enough", "scope \"items:writer items:read\": scopes match whole words only.",
             tok("scope_prefix", scope="items:writer items:read"), 403, "insufficient_scope", "/scoped/items")
        self.bearer_ok("scope_on_scoped", "scope \"items:read items:write\" on /scoped.",
                       tok("scope_on_scoped", scope="items:read items:write"), path="/scoped/items")
        self.bearer_ok("jwt_on_jwt_only", "Valid JWT on /jwt-only.", tok("jwt_on_jwt_only"), path="/jwt-only/x")
        self.add("credential_missing_on_admin", "No credential on /admin: 401, not 403.", [], path="/admin",
                 status=401, code="credential_missing")
        none = list(ALL_IDENTITY)
        self.add("public_no_credential", "Anonymous prefix route, no credential: allowed, no identity headers.",
                 [], path="/public/docs", absent=none)
        self.add("public_prefix_itself", "\"/public\" itself matches the /public prefix rule.", [], path="/public",
                 absent=none)
        self.add("public_garbage_bearer", "Anonymous route with a garbage bearer: credentials are not examined.",
                 [("authorization", "Bearer garbage.not.ajwt")], path="/public/docs", absent=none)
        self.add("public_expired_token", "Anonymous route with an expired token: still allowed, no identity.",
                 [("authorization", "Bearer " + tok("public_expired", exp=self.now - 3600, iat=self.now - 4200))],
                 path="/public/docs", absent=none)
        self.add("public_conflicting_credentials", "Anonymous route with bearer + x-api-key: credentials are not "
                 "examined, so no conflict either.",
                 [("authorization", "Bearer garbage"), ("x-api-key", "agk_garbage"), ("x-api-secret", "x")],
                 path="/public/docs", absent=none)
        self.add("public_query_string", "Anonymous route with a query string.", [], path="/public/search?q=admin",
                 absent=none)
        self.add("health_exact", "Exact-path anonymous route /health.", [], path="/health", absent=none)
        self.add("health_with_basic", "/health with an unsupported Basic credential: still allowed.",
                 [("authorization", "Basic dXNlcjpwYXNz")], path="/health", absent=none)
        self.add("health_subpath_not_anonymous", "/health is an exact path, so /health/deep falls through to the "
                 "\"/\" rule.", [], path="/health/deep", status=401, code="credential_missing")

    def cases_cookies(self):
        """Web apps: the access token in a cookie, and the double-submit CSRF rule on unsafe methods."""
        def tok(name, **over):
            return self.pyjwt(self.at_claims(name, **over), "ed1")

        def ok(name, desc, headers, method="GET", token=None):
            self.add(name, desc, headers, method=method, expect_headers=self.jwt_ok(), absent=list(JWT_IDENTITY_ABSENT),
                     check=[("accept_jwt", token)] if token else [])

        def deny(name, desc, headers, status, code, method="GET"):
            self.add(name, desc, headers, method=method, status=status, code=code)

        t = tok("cookie_get")
        ok("cookie_get", f"GET with the access token in the {COOKIE} cookie.", [("cookie", f"{COOKIE}={t}")], token=t)
        t = tok("cookie_among_others")
        ok("cookie_among_others", "The access cookie between other cookies, one with a quoted value.",
           [("cookie", f'theme=dark; {COOKIE}={t}; lang="en"')], token=t)
        t = tok("cookie_post_csrf")
        ok("cookie_post_csrf", "POST with the access cookie, the CSRF cookie and the same value in x-csrf-token.",
           [("cookie", f"{COOKIE}={t}; {CSRF_COOKIE}=csrf-1"), ("x-csrf-token", "csrf-1")], method="POST", token=t)
        t = tok("cookie_post_allowed_origin")
        ok("cookie_post_allowed_origin", "POST with the CSRF pair and an allowed Origin.",
           [("cookie", f"{COOKIE}={t}; {CSRF_COOKIE}=csrf-1"), ("x-csrf-token", "csrf-1"), ("origin", APP_ORIGIN)],
           method="DELETE", token=t)
        t = tok("cookie_bearer_wins")
        ok("cookie_bearer_wins", "A bearer token and a cookie holding garbage: the explicit header is the credential, "
           "the cookie is not looked at (and no CSRF is asked of a bearer POST).",
           [("authorization", f"Bearer {t}"), ("cookie", f"{COOKIE}=garbage")], method="POST", token=t)
        t = tok("cookie_post_no_csrf")
        deny("cookie_post_no_csrf", "POST with a valid access cookie and no CSRF header or cookie (a forged "
             "cross-site form).", [("cookie", f"{COOKIE}={t}")], 403, "csrf_token_invalid", method="POST")
        t = tok("cookie_post_csrf_mismatch")
        deny("cookie_post_csrf_mismatch", "POST whose x-csrf-token differs from the CSRF cookie.",
             [("cookie", f"{COOKIE}={t}; {CSRF_COOKIE}=csrf-1"), ("x-csrf-token", "csrf-2")], 403, "csrf_token_invalid",
             method="POST")
        t = tok("cookie_post_header_only")
        deny("cookie_post_header_only", "PUT with x-csrf-token but no CSRF cookie to match.",
             [("cookie", f"{COOKIE}={t}"), ("x-csrf-token", "csrf-1")], 403, "csrf_token_invalid", method="PUT")
        t = tok("cookie_post_bad_origin")
        deny("cookie_post_bad_origin", "POST with a matching CSRF pair but a foreign Origin.",
             [("cookie", f"{COOKIE}={t}; {CSRF_COOKIE}=csrf-1"), ("x-csrf-token", "csrf-1"),
              ("origin", "https://evil.example")], 403, "csrf_origin_mismatch", method="POST")
        deny("cookie_duplicate", "Two access cookies (cookie tossing): refused, not one picked.",
             [("cookie", f"{COOKIE}={tok('cookie_dup_a')}; {COOKIE}={tok('cookie_dup_b')}")], 400,
             "conflicting_credentials")
        deny("cookie_expired", "An expired access token in the cookie.",
             [("cookie", f"{COOKIE}={tok('cookie_expired', exp=self.now - 3600, iat=self.now - 4200)}")], 401,
             "token_expired")
        t = tok("cookie_tampered")
        head, payload, sig = t.split(".")
        forged = b64u(cjson({**json.loads(b64u_decode(payload)), "roles": ["admin"]}))
        deny("cookie_tampered", "A cookie token whose payload was changed (roles: admin) under the old signature.",
             [("cookie", f"{COOKIE}={head}.{forged}.{sig}")], 401, "signature_invalid")
        deny("cookie_other_name", "A valid token in a cookie of another name is not a credential.",
             [("cookie", f"session={tok('cookie_other_name')}")], 401, "credential_missing")
        deny("cookie_empty", "An empty access cookie (a cleared one) is no credential.", [("cookie", f"{COOKIE}=")],
             401, "credential_missing")

    def cases_paths(self):
        admin = self.pyjwt(self.at_claims("path_admin", roles=["admin"]), "ed1")
        for name, path, desc in (
            ("path_dotdot", "/public/../admin", "Dot-dot segment escaping the anonymous prefix."),
            ("path_dot", "/public/./admin", "Single-dot segment."),
            ("path_trailing_dotdot", "/public/..", "Trailing dot-dot segment."),
            ("path_encoded_dotdot", "/public/%2e%2e/admin", "Percent-encoded dot-dot (lowercase)."),
            ("path_encoded_dotdot_upper", "/public/%2E%2E/admin", "Percent-encoded dot-dot (uppercase)."),
            ("path_half_encoded_dotdot", "/public/.%2e/admin", "Half-encoded dot-dot."),
            ("path_encoded_slash", "/public%2fadmin", "Percent-encoded slash."),
            ("path_encoded_slash_upper", "/public/..%2Fadmin", "Encoded slash (uppercase) hiding a dot-dot."),
            ("path_backslash", "/public\\..\\admin", "Backslashes used as separators."),
            ("path_encoded_backslash", "/public/..%5cadmin", "Percent-encoded backslash."),
        ):
            self.add(name, desc + " Refused before routing (no credential sent).", [], path=path, status=400,
                     code="invalid_path")
        self.add("path_dotdot_with_admin_token", "Dot-dot path refused even with a valid admin token.",
                 [("authorization", "Bearer " + admin)], path="/api/../admin", status=400, code="invalid_path")
        reader = self.pyjwt(self.at_claims("path_encoded_letters"), "ed1")
        self.bearer_deny("path_encoded_letters", "Reader token on /%61dmin/users: percent-encoded unreserved letters "
                         "are the same path (RFC 3986 6.2.2.2) to an upstream that decodes them, so the /admin rule "
                         "applies.", reader, 403, "insufficient_role", path="/%61dmin/users")
        self.bearer_ok("path_encoded_letters_admin", "Admin token on /%61dmin/users: allowed by the /admin rule, and "
                       "forwarded as sent.", admin, path="/%61dmin/users", ident=self.jwt_ok(roles=("admin",)))


    def cases_route_bypasses(self):
        """What an upstream serves for a path or method the rules must see the same way."""
        def tok(name, **over):
            return self.pyjwt(self.at_claims(name, **over), "ed1")

        admin = tok("bypass_admin", roles=["admin"])
        reader = tok("bypass_reader")
        admin_ident = self.jwt_ok(roles=("admin",))
        # Path parameters: servlet containers cut ";..." from each segment before resolving "..".
        self.bearer_deny("path_param_dotdot", "/public/..;/admin/users: a servlet container serves /admin/users; "
                         "the dot segment hidden behind a path parameter is refused.", reader, 400, "invalid_path",
                         path="/public/..;/admin/users")
        self.bearer_deny("path_param_dot", "/public/.;x=1/admin: a single-dot segment with a parameter.", reader, 400,
                         "invalid_path", path="/public/.;x=1/admin")
        self.bearer_deny("path_param_encoded_dotdot", "/public/%2e%2e;/admin: an encoded dot-dot with a parameter.",
                         reader, 400, "invalid_path", path="/public/%2e%2e;/admin")
        self.bearer_deny("path_param_on_admin", "Reader on /admin;jsessionid=x/users: the rules see /admin/users, as "
                         "the upstream does.", reader, 403, "insufficient_role", path="/admin;jsessionid=x/users")
        self.bearer_ok("path_param_admin", "Admin on /admin;jsessionid=x/users: the /admin rule, forwarded as sent.",
                       admin, path="/admin;jsessionid=x/users", ident=admin_ident)
        self.add("path_encoded_semicolon", "/admin%3Bx/users: an encoded ; one upstream decodes and another does not: "
                 "refused.", [("authorization", "Bearer " + admin)], path="/admin%3Bx/users", status=400,
                 code="invalid_path")
        self.add("path_double_encoded_dot", "/public/%252e%252e/admin: %25 followed by hex is %2e again to an upstream "
                 "that decodes twice: refused.", [], path="/public/%252e%252e/admin", status=400, code="invalid_path")
        self.add("path_double_encoded_escaped_digits", "/public/%25%32%65%25%32%65/admin: %25 followed by escaped hex "
                 "digits is %2e once the unreserved escapes are decoded, . to an upstream that decodes twice: refused.",
                 [], path="/public/%25%32%65%25%32%65/admin", status=400, code="invalid_path")
        # Methods: frameworks run the GET handler for HEAD, and take method names in any case (Envoy
        # and workerd refuse a lower-case request method themselves; an override header's value
        # reaches the rules as sent).
        self.bearer_deny("method_head_admin", "Reader HEAD /admin/users: the upstream runs its GET handler, so the "
                         "GET rule applies.", reader, 403, "insufficient_role", path="/admin/users", method="HEAD")
        self.add("method_override_to_guarded_method", "Reader DELETE /admin/users (the catch-all rule allows it) "
                 "with x-http-method-override: POST, which the /admin rule guards: judged as both, refused.",
                 [("authorization", "Bearer " + reader), ("x-http-method-override", "POST")], path="/admin/users",
                 method="DELETE", status=403, code="insufficient_role")
        self.add("method_override_other_spelling", "The same with X-Method-Override.",
                 [("authorization", "Bearer " + reader), ("X-Method-Override", "post")], path="/admin/users",
                 method="DELETE", status=403, code="insufficient_role")
        # Laravel and Symfony also take the method from `_method` in the query (PHP reads `.method`
        # as `_method`); Express's method-override when configured with it.
        self.add("method_override_query_param", "Reader DELETE /admin/users?_method=POST: the query asks for the "
                 "guarded POST, judged as both, refused.", [("authorization", "Bearer " + reader)],
                 path="/admin/users?_method=POST", method="DELETE", status=403, code="insufficient_role")
        self.add("method_override_query_php_spelling", "Reader DELETE /admin/users?x=1&.method=post: PHP reads the "
                 "name as _method.", [("authorization", "Bearer " + reader)], path="/admin/users?x=1&.method=post",
                 method="DELETE", status=403, code="insufficient_role")
        self.add("method_override_query_not_a_method", "GET /public?_method=DE%20LETE on an anonymous route: an "
                 "override that is no method is refused.", [], path="/public?_method=DE%20LETE", status=400,
                 code="invalid_method")
        self.add("method_override_header_and_query_disagree", "x-http-method-override: PUT with _method=DELETE: "
                 "the upstream would run one of them, which is not ours to guess.",
                 [("authorization", "Bearer " + admin), ("x-http-method-override", "PUT")],
                 path="/api/items?_method=DELETE", method="POST", status=400, code="invalid_method")
        # Exact paths: /private/ is the same resource as /private to nearly every upstream.
        self.bearer_deny("exact_path_trailing_slash", "Reader on /private/ (the exact rule is /private, admin "
                         "only): a trailing slash does not escape it.", reader, 403, "insufficient_role",
                         path="/private/")
        self.bearer_ok("exact_path_trailing_slash_admin", "Admin on /private/.", admin, path="/private/",
                       ident=admin_ident)
        # Organisations: a tenant's admin is not the operator's.
        self.bearer_deny("org_tenant_admin_on_operator", "Admin of org-1 on /operator, which is restricted to "
                         f"{OPERATOR_ORG}.", admin, 403, "org_not_allowed", path="/operator/settings")
        self.bearer_deny("org_missing_on_operator", "Admin token without org on /operator.",
                         tok("org_missing", roles=["admin"], org=DROP), 403, "org_not_allowed",
                         path="/operator/settings")
        self.bearer_ok("org_operator_admin", f"Admin of {OPERATOR_ORG} on /operator.",
                       tok("org_operator_admin", roles=["admin"], org=OPERATOR_ORG), path="/operator/settings",
                       ident=self.jwt_ok(roles=("admin",), org=OPERATOR_ORG))
        api = self.key_claims("org_key_tenant_admin", roles=["admin"])
        kid, sec = self.api_key(api)
        self.add("org_api_key_tenant_on_operator", "An admin API key of org-1 on /operator.",
                 [("x-api-key", kid), ("x-api-secret", sec)], path="/operator/settings", status=403,
                 code="org_not_allowed", check=[("key_hmac_ok", kid, sec)])
        # Identity values outside printable ASCII reach every upstream as the same bytes.
        t = tok("claims_non_ascii", email="josé@example.com", sub="user-ü")
        self.bearer_ok("claims_non_ascii_encoded", "email josé@example.com and sub user-ü are forwarded "
                       "percent-encoded (UTF-8), the same on every host.", t,
                       ident=self.jwt_ok(sub="user-%C3%BC", email="jos%C3%A9@example.com"))
        t = tok("claims_percent_encoded", email="100%25@example.com")
        self.bearer_ok("claims_percent_sign_encoded", "An email holding \"%25\" itself is forwarded as %2525, so it "
                       "cannot pass for another value once decoded.", t,
                       ident=self.jwt_ok(email="100%2525@example.com"))
        # ES256: (r, n - s) verifies too; only the low-s form is accepted.
        h, p = seg({"alg": "ES256", "kid": "es1", "typ": "at+jwt"}), seg(self.at_claims("es256_high_s"))
        sig = raw_sign("ES256-HIGH-S", self.k.priv["es1"], f"{h}.{p}".encode())
        t = f"{h}.{p}.{b64u(sig)}"
        self.bearer_deny("es256_high_s", "ES256 token genuinely signed by es1 but in the high-s form (the second, "
                         "malleable encoding of the same signature): refused, and said so (the provider does not "
                         "set es256_accept_high_s).", t, 401, "signature_not_canonical",
                         check=[("sig_valid", t, "ES256", self.k.pub["es1"])])


# --------------------------------------------------------------------------- self-check


def forwarded(value: str) -> str:
    """An identity value as gateways forward it: UTF-8, with every byte outside printable ASCII
    and every "%" percent-encoded (upper-case hex), so each host sends the same bytes."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x25 else f"%{b:02X}" for b in value.encode("utf-8"))



def self_check(m: Minter, doc: dict) -> list[str]:
    """Re-verify the premises of the vectors with PyJWT and raw cryptography."""
    errors = []
    jwks = doc["jwks"]
    cfg = doc["config"]
    # the published JWKs must parse and round-trip to the key files
    for prov in cfg["providers"]:
        keys = prov.get("jwks", {}).get("keys", []) + (jwks[prov["issuer"]]["keys"] if "jwks_uri" in prov else [])
        for jwk in keys:
            jwt.PyJWK(jwk, algorithm=jwk.get("alg") or "RS256")
    pyjwk = {}
    for iss, ks in jwks.items():
        for jwk in ks["keys"]:
            pyjwk[(iss, jwk["kid"])] = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or "RS256")
    pyjwk[(MAIN_ISS, "hs1")] = jwt.PyJWK({"kty": "oct", "kid": "hs1", "alg": "HS256", "k": m.k.secret_b64["hs1"]})
    # the feed verifies under ed1
    if not raw_verify("EdDSA", m.k.pub["ed1"], doc["feed"]):
        errors.append("feed: signature does not verify under ed1")
    now = doc["now"]
    for case in doc["cases"]:
        name = case["name"]
        for chk in case["_check"]:
            kind = chk[0]
            try:
                if kind == "accept_jwt":
                    tok = chk[1]
                    if len(tok) > MAX_TOKEN:
                        raise AssertionError("too long")
                    hdr = jwt.get_unverified_header(tok)
                    iss = jwt.decode(tok, options={"verify_signature": False})["iss"]
                    prov = next(p for p in cfg["providers"] if p["issuer"] == iss)
                    key = pyjwk[(iss, hdr["kid"])]
                    claims = jwt.decode(
                        tok, key.key, algorithms=prov["algorithms"], audience=prov["audiences"], issuer=iss,
                        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                 "require": ["exp", "sub", "iss", "aud"]},
                    )
                    if "typ" in prov and hdr.get("typ", "").lower().removeprefix("application/") != "at+jwt":
                        raise AssertionError(f"typ {hdr.get('typ')}")
                    if not claims["exp"] >= now - SKEW:
                        raise AssertionError("expired")
                    if "nbf" in claims and not claims["nbf"] <= now + SKEW:
                        raise AssertionError("not yet valid")
                    want = case["expect"]["headers"]
                    if want["x-auth-subject"] != forwarded(claims["sub"]) or want["x-auth-roles"] != ",".join(claims["roles"]):
                        raise AssertionError("identity headers do not match the claims")
                    if "x-auth-email" in want and want["x-auth-email"] != forwarded(claims["email"]):
                        raise AssertionError("x-auth-email does not match the claim")
                elif kind in ("accept_key", "key_hmac_ok"):
                    kid, sec = chk[1], chk[2]
                    claims = json.loads(b64u_decode(kid.removeprefix("agk_")))
                    exp_sec = b64u(hmac.new(m.k.secret[claims["kid"]], kid.encode(), hashlib.sha256).digest())
                    if not hmac.compare_digest(exp_sec, sec):
                        raise AssertionError("HMAC mismatch")
                    if kind == "accept_key":
                        if claims.get("exp", now + 1) < now or claims["iat"] > now - 10:
                            raise AssertionError("expired or pending")
                        if claims["id"] == m.revoked_key_id:
                            raise AssertionError("revoked")
                elif kind == "sig_valid":
                    if not raw_verify(chk[2], chk[3], chk[1]):
                        raise AssertionError("signature should be valid under the named key")
                elif kind == "sig_invalid":
                    if raw_verify(chk[2], chk[3], chk[1]):
                        raise AssertionError("signature should NOT be valid under the real key")
                else:
                    raise AssertionError(f"unknown check {kind}")
            except Exception as exc:  # noqa: BLE001 - report every failure
                errors.append(f"{name}: {kind}: {exc!r}")
    return errors


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gen-keys", action="store_true", help="create missing key files in --keys-dir, then continue")
    ap.add_argument("--keys-dir", type=Path, default=HERE / "keys")
    ap.add_argument("--now", type=int, help="unix time the vectors are evaluated at")
    ap.add_argument("--jwks-mode", choices=("inline", "uri"), default="inline")
    ap.add_argument("--out", type=Path, help="where to write the vectors JSON")
    args = ap.parse_args(argv)

    if args.gen_keys:
        made = gen_keys(args.keys_dir)
        print(f"keys: created {made or 'nothing (all present)'} in {args.keys_dir}")
        if not args.out:
            return 0
    if not args.out or args.now is None:
        ap.error("--now and --out are required (or --gen-keys alone)")

    m = Minter(Keys(args.keys_dir), args.now, args.jwks_mode)
    doc = m.build()
    errors = self_check(m, doc)
    if errors:
        print("self-check FAILED:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    out = copy.deepcopy(doc)
    for case in out["cases"]:
        del case["_check"]
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    codes = {}
    for case in out["cases"]:
        codes[case["expect"]["code"] or "allow"] = codes.get(case["expect"]["code"] or "allow", 0) + 1
    print(f"wrote {args.out}: {len(out['cases'])} cases, self-check ok")
    print("  " + ", ".join(f"{c}={n}" for c, n in sorted(codes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
