"""A SAML 2.0 identity provider the tests control: its metadata, the AuthnRequest read as an IdP
reads it (HTTP-Redirect binding: base64 of raw DEFLATE), and Responses built and signed with
PyPI `signxml` (an independent XML-DSig implementation: exclusive C14N, RSA-SHA256) — signed on
the assertion, the response, both or neither, or tampered with the ways XML signature wrapping,
comment injection and replays attack a service provider.

On 127.0.0.1 in a thread it also serves `/sso` as an IdP's single sign-on page does for a
browser: it reads the AuthnRequest and answers with a page that posts the signed Response to the
ACS the request named (the HTTP-POST binding), for the person set with `sign_in_as`."""

import base64
import datetime
import html
import secrets
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec as ec_key
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


def keypair(cn="authgate test IdP", ec=False):
    key = ec_key.generate_private_key(ec_key.SECP256R1()) if ec else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def der_b64(cert) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


class LegacySigner(XMLSigner):
    """Signs with SHA-1 too (signxml refuses it by default): what an old IdP still sends."""

    def check_deprecated_methods(self):
        pass


def instant(offset_s=0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_request(location: str) -> dict:
    """The AuthnRequest of a redirect-binding URL, as an IdP reads it."""
    q = parse_qs(urlparse(location).query)
    xml = zlib.decompress(base64.b64decode(q["SAMLRequest"][0]), -15)
    root = etree.fromstring(xml)
    assert root.tag == f"{{{SAMLP}}}AuthnRequest", xml
    issuer = root.find(f"{{{SAML}}}Issuer")
    return {
        "id": root.get("ID"),
        "acs": root.get("AssertionConsumerServiceURL"),
        "destination": root.get("Destination"),
        "binding": root.get("ProtocolBinding"),
        "issuer": issuer.text if issuer is not None else None,
        "relay_state": q.get("RelayState", [""])[0],
        "xml": xml.decode(),
    }


def request_signature_valid(location: str, certificate_b64: str) -> bool:
    """The redirect binding's signature (SAML bindings 3.4.4.1): RSA-SHA256 over
    `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as encoded in the query, by `certificate_b64`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding
    from urllib.parse import unquote_plus

    raw = dict(p.split("=", 1) for p in urlparse(location).query.split("&"))
    if unquote_plus(raw.get("SigAlg", "")) != "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256":
        return False
    signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw).encode()
    cert = x509.load_der_x509_certificate(base64.b64decode(certificate_b64))
    try:
        cert.public_key().verify(base64.b64decode(unquote_plus(raw["Signature"])), signed, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, KeyError, ValueError):
        return False


class Idp:
    def __init__(self, entity_id=None, host="127.0.0.1", ec=False):
        """`host`: how the IdP's address is written (`localhost` makes it another site than
        the server's 127.0.0.1 for a browser); `ec`: a P-256 key instead of RSA."""
        self.key, self.cert = keypair(ec=ec)
        self.algorithm = SignatureMethod.ECDSA_SHA256 if ec else SignatureMethod.RSA_SHA256
        self.entity_id = entity_id or f"https://idp-{secrets.token_hex(3)}.example/saml"
        self.next_person = None  # what /sso signs in as
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    @property
    def sso_url(self):
        return f"{self.url}/sso"

    def metadata(self, certs=None) -> str:
        keys = "".join(
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der_b64(c)}'
            "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            for c in (certs or [self.cert])
        )
        return (
            '<?xml version="1.0"?>\n'
            f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="{DS}" entityID="{self.entity_id}">'
            f'<md:IDPSSODescriptor protocolSupportEnumeration="{SAMLP}">{keys}'
            f"<md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>"
            '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example/post"/>'
            f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{self.sso_url}"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    def assertion(self, request, name_id, *, attributes=None, audience=None, recipient=None, in_response_to=None,
                  issuer=None, not_on_or_after=300, not_before=-60, issued=0, name_id_format=PERSISTENT,
                  confirmation_not_on_or_after=None):
        """An Assertion element answering `request` (overrides for the attack tests)."""
        aid = "_a" + secrets.token_hex(16)
        irt = request["id"] if in_response_to is None else in_response_to
        attrs = "".join(
            f'<saml:Attribute Name="{html.escape(k)}">'
            + "".join(f"<saml:AttributeValue>{html.escape(v)}</saml:AttributeValue>" for v in (vs if isinstance(vs, list) else [vs]))
            + "</saml:Attribute>"
            for k, vs in (attributes or {}).items()
        )
        cnoa = not_on_or_after if confirmation_not_on_or_after is None else confirmation_not_on_or_after
        xml = (
            f'<saml:Assertion xmlns:saml="{SAML}" ID="{aid}" Version="2.0" IssueInstant="{instant(issued)}">'
            f"<saml:Issuer>{html.escape(issuer or self.entity_id)}</saml:Issuer>"
            f'<ds:Signature xmlns:ds="{DS}" Id="placeholder"></ds:Signature>'
            f'<saml:Subject><saml:NameID Format="{name_id_format}">{name_id}</saml:NameID>'
            '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData InResponseTo="{irt}" Recipient="{html.escape(recipient or request["acs"])}" '
            f'NotOnOrAfter="{instant(cnoa)}"/></saml:SubjectConfirmation></saml:Subject>'
            f'<saml:Conditions NotBefore="{instant(not_before)}" NotOnOrAfter="{instant(not_on_or_after)}">'
            f"<saml:AudienceRestriction><saml:Audience>{html.escape(audience or request['issuer'])}</saml:Audience>"
            "</saml:AudienceRestriction></saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{instant()}"><saml:AuthnContext><saml:AuthnContextClassRef>'
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>"
            f"</saml:AuthnStatement><saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>"
        )
        return etree.fromstring(xml)

    def sign(self, element, key=None, cert=None, algorithm=None, digest=DigestAlgorithm.SHA256):
        """`element` signed where its placeholder is (enveloped, exclusive C14N, by ID)."""
        algorithm = algorithm or self.algorithm
        signer = (LegacySigner if "SHA1" in algorithm.name else XMLSigner)(
            signature_algorithm=algorithm,
            digest_algorithm=digest,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signer.namespaces = {"ds": DS}
        return signer.sign(element, key=key or self.key, cert=[cert or self.cert], reference_uri=element.get("ID"), id_attribute="ID")

    def response(self, request, assertion, *, sign="assertion", destination=None, in_response_to=None, status="Success",
                 issuer=None, key=None, cert=None, algorithm=None, digest=DigestAlgorithm.SHA256):
        """The Response carrying `assertion`, signed as `sign` says: assertion, response, both, none."""
        if sign in ("assertion", "both"):
            assertion = self.sign(assertion, key, cert, algorithm, digest)
        else:
            placeholder = assertion.find(f"{{{DS}}}Signature")
            assertion.remove(placeholder)
        rid = "_r" + secrets.token_hex(16)
        irt = request["id"] if in_response_to is None else in_response_to
        resp = etree.fromstring(
            f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" IssueInstant="{instant()}" '
            f'Destination="{html.escape(destination or request["acs"])}" InResponseTo="{irt}">'
            f"<saml:Issuer>{html.escape(issuer or self.entity_id)}</saml:Issuer>"
            f'<ds:Signature xmlns:ds="{DS}" Id="placeholder"></ds:Signature>'
            f'<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:{status}"/></samlp:Status></samlp:Response>'
        )
        resp.append(assertion)
        if sign in ("response", "both"):
            resp = self.sign(resp, key, cert, algorithm, digest)
        else:
            resp.remove(resp.find(f"{{{DS}}}Signature"))
        return resp

    @staticmethod
    def encode(element_or_xml) -> str:
        xml = element_or_xml if isinstance(element_or_xml, (bytes, str)) else etree.tostring(element_or_xml)
        return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()

    def answer(self, request, name_id, sign="assertion", **kw):
        """A signed, base64 SAMLResponse answering `request` for `name_id`."""
        return self.encode(self.response(request, self.assertion(request, name_id, **kw), sign=sign))

    # The browser's side.
    def sign_in_as(self, name_id, **kw):
        self.next_person = (name_id, kw)

    def _handler(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if urlparse(self.path).path != "/sso" or idp.next_person is None:
                    self.send_error(404)
                    return
                request = read_request(self.path)
                name_id, kw = idp.next_person
                response = idp.answer(request, name_id, **kw)
                page = (
                    "<!doctype html><html><body>"
                    f'<form method="post" action="{html.escape(request["acs"])}">'
                    f'<input type="hidden" name="SAMLResponse" value="{response}">'
                    f'<input type="hidden" name="RelayState" value="{html.escape(request["relay_state"])}">'
                    '<button type="submit" id="go">Continue to the service</button></form></body></html>'
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        return Handler
