"""Writes the auth-server fuzz targets' fixtures and hand-made seeds: what a real IdP or
authenticator would send, made here so that the targets start from answers that pass every
check (a fuzzer cannot sign). Run from the repository root with the test virtualenv:

    .venv/bin/python auth-server/fuzz/make_seeds.py

The keys are test keys, committed so that the seeds can be made again; the clock, parties and
challenge are the fuzz targets' (fuzz_targets/*.rs). SAML answers are built and signed by the
test suite's IdP (tests/server/saml_peer.py: lxml and signxml) on a fixed clock."""

import base64
import datetime
import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parents[1] / "tests" / "server"))
import saml_peer  # noqa: E402

# The fuzz targets' fixtures (keep in step with fuzz_targets/*.rs and src/fuzz.rs).
NOW = 1_800_000_000
IDP = "https://idp.example/saml"
SP = "https://auth.example/saml/conn/metadata"
ACS = "https://auth.example/saml/conn/acs"
REQUEST_ID = "_request"
CLIENT_ID = "client-1"
NONCE = "n0nce-of-this-round-trip"
PUBLIC_URL = "http://localhost:8080"
CHALLENGE = base64.urlsafe_b64encode(b"B" * 32).rstrip(b"=").decode()
USER_HANDLE = bytes.fromhex("00112233445566778899aabbccddeeff")
MICROSOFT_CONSUMERS = "9188040d-6c67-4c5b-b112-36a304b66dad"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def fixture_key(name: str, make):
    path = ROOT / "fixtures" / name
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), None)
    key = make()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write(path, pem)
    return key


# --- SAML ---------------------------------------------------------------------------------

def saml_seeds():
    key = fixture_key("saml-idp-key.pem", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authgate fuzz IdP")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=36500)).sign(key, hashes.SHA256())
    )
    write(ROOT / "fixtures" / "saml-idp-cert.b64", saml_peer.der_b64(cert))

    def instant(offset_s=0):
        t = datetime.datetime.fromtimestamp(NOW + offset_s, datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    saml_peer.instant = instant  # the seeds' clock is the fuzz target's
    idp = saml_peer.Idp.__new__(saml_peer.Idp)
    idp.key, idp.cert, idp.algorithm, idp.entity_id = key, cert, saml_peer.SignatureMethod.RSA_SHA256, IDP
    request = {"id": REQUEST_ID, "acs": ACS, "issuer": SP}
    attrs = {"email": "Person@Example.com", "displayName": "A Person", "groups": ["admin", "viewer", "root"]}
    out = ROOT / "seeds" / "saml"
    for sign in ("assertion", "response", "both", "none"):
        r = idp.response(request, idp.assertion(request, "person-1", attributes=attrs), sign=sign)
        write(out / f"signed-{sign}.xml", etree.tostring(r))
    variants = {
        "email-nameid": dict(name_id_format=saml_peer.EMAIL),
        "transient": dict(name_id_format=saml_peer.TRANSIENT),
        "expired": dict(not_on_or_after=-400),
        "other-audience": dict(audience="https://other.example"),
    }
    for label, kw in variants.items():
        r = idp.response(request, idp.assertion(request, "person@example.com", **kw), sign="assertion")
        write(out / f"{label}.xml", etree.tostring(r))
    # A bare signed assertion (no Response around it).
    write(out / "assertion-only.xml", etree.tostring(idp.sign(idp.assertion(request, "person-2", attributes=attrs))))


# --- OpenID Connect ID token claims -------------------------------------------------------

def oidc_seeds():
    base = {"aud": CLIENT_ID, "exp": NOW + 600, "iat": NOW - 10, "nonce": NONCE, "sub": "user-1",
            "email": "Person@Example.com", "email_verified": True, "name": "A Person"}
    seeds = {
        "generic": {**base, "iss": "https://idp.example"},
        "google": {**base, "iss": "https://accounts.google.com", "email_verified": "true"},
        "microsoft": {**base, "iss": f"https://login.microsoftonline.com/{MICROSOFT_CONSUMERS}/v2.0", "tid": MICROSOFT_CONSUMERS},
        "entra": {**base, "iss": "https://login.microsoftonline.com/tenant-a/v2.0", "tid": "tenant-a", "xms_edov": True},
        "azp": {**base, "iss": "https://idp.example", "aud": [CLIENT_ID, "other"], "azp": CLIENT_ID},
        "wrong-nonce": {**base, "iss": "https://idp.example", "nonce": "other"},
    }
    for label, claims in seeds.items():
        write(ROOT / "seeds" / "oidc_id_token" / f"{label}.json", json.dumps(claims))


# --- WebAuthn -----------------------------------------------------------------------------

def cbor(v) -> bytes:
    """The CBOR of what WebAuthn sends (RFC 8949: integers, byte and text strings, maps)."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | info]) + struct.pack(fmt, n)
        raise ValueError(n)

    if isinstance(v, bool) or v is None:
        raise TypeError(v)
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        return head(3, len(v.encode())) + v.encode()
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def client_data(kind: str) -> bytes:
    return json.dumps({"type": kind, "challenge": CHALLENGE, "origin": PUBLIC_URL, "crossOrigin": False}).encode()


def passkey_seeds():
    key = fixture_key("passkey-key.pem", lambda: ec.generate_private_key(ec.SECP256R1()))
    numbers = key.public_key().public_numbers()
    cose = cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
    cred_id = hashlib.sha256(b"authgate fuzz credential").digest()
    rp_hash = hashlib.sha256(b"localhost").digest()

    def registration(flags: int, fmt="none") -> bytes:
        auth_data = rp_hash + bytes([flags]) + struct.pack(">I", 0) + bytes(16) + struct.pack(">H", len(cred_id)) + cred_id + cose
        attestation = cbor({"fmt": fmt, "attStmt": {}, "authData": auth_data})
        return json.dumps({
            "id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key", "extensions": {},
            "response": {"attestationObject": b64u(attestation), "clientDataJSON": b64u(client_data("webauthn.create")),
                         "transports": ["internal"]},
        }).encode()

    def sign_in(flags: int, counter: int, handle=USER_HANDLE) -> bytes:
        auth_data = rp_hash + bytes([flags]) + struct.pack(">I", counter)
        cd = client_data("webauthn.get")
        signature = key.sign(auth_data + hashlib.sha256(cd).digest(), ec.ECDSA(hashes.SHA256()))
        response = {"authenticatorData": b64u(auth_data), "clientDataJSON": b64u(cd), "signature": b64u(signature)}
        if handle is not None:
            response["userHandle"] = b64u(handle)
        return json.dumps({"id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key", "extensions": {},
                           "response": response}).encode()

    UP, UV, AT = 0x01, 0x04, 0x40
    registered = registration(UP | UV | AT)
    write(ROOT / "fixtures" / "passkey-registration.json", registered)
    out = ROOT / "seeds" / "passkey_registration"
    write(out / "uv.json", registered)
    write(out / "no-uv.json", registration(UP | AT))
    write(out / "packed-without-statement.json", registration(UP | UV | AT, fmt="packed"))
    out = ROOT / "seeds" / "passkey_sign_in"
    write(out / "uv.json", sign_in(UP | UV, 1))
    write(out / "no-uv.json", sign_in(UP, 2))
    write(out / "no-user-handle.json", sign_in(UP | UV, 3, handle=None))


if __name__ == "__main__":
    saml_seeds()
    oidc_seeds()
    passkey_seeds()
