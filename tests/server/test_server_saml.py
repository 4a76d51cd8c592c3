"""SAML 2.0 sign-in, this server the service provider, against an IdP the test controls
(saml_peer.Idp, signing with PyPI `signxml`): the IdP's metadata imported, ours published, the
AuthnRequest (HTTP-Redirect), the Response (HTTP-POST) signed on the assertion, the response or
both; addresses only in the organisation's own domains; roles mapped within the allowed list.
And the attacks: no signature, another key, a changed NameID, signature wrapping (an unsigned
assertion beside or around a signed one, a duplicate ID), comment injection in the NameID,
another audience, recipient, destination or request, expired or future assertions, another
issuer, SHA-1, a DTD, a transient NameID, a replayed or misdirected answer, login CSRF."""

import copy
import json
import secrets

import pytest
import requests
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod

from authsrv import PASSWORD, assert_error, login, new_email
from saml_peer import DS, EMAIL, SAML, SAMLP, TRANSIENT, Idp, der_b64, keypair, pem, read_request, request_signature_valid
from test_server_federation import assert_page_error, signed_in, start
from test_server_federation_presets import admin_of


@pytest.fixture(scope="module")
def idp():
    i = Idp()
    yield i
    i.stop()


def saml_connection(srv, token, org, idp, status=201, roles=(), create_accounts=True, **saml):
    body = {"kind": "saml", "name": "Acme SAML", "roles": list(roles), "create_accounts": create_accounts,
            "saml": {"metadata": idp.metadata(), **saml}}
    r = srv.client().post(f"/v1/orgs/{org}/connections", json=body, token=token)
    assert r.status_code == status, r.text
    return r.json()


def held_domain(srv, org):
    domain = f"acme-{secrets.token_hex(4)}.example"
    srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    return domain


def begin(srv, conn_id):
    location, bound = start(srv, conn_id)
    request = read_request(location)
    assert request["relay_state"] == bound[1]
    return request, bound


def acs(srv, conn_id, response, relay_state, bound=None, again=False):
    data = {"SAMLResponse": response, "RelayState": relay_state}
    if again:
        data["again"] = "1"
    headers = {"cookie": f"{bound[0]}={bound[1]}"} if bound else {}
    return requests.post(f"{srv.url}/saml/{conn_id}/acs", data=data, headers=headers, allow_redirects=False, timeout=10)


def saml_sso(srv, idp, conn, name_id, sign="assertion", **kw):
    request, bound = begin(srv, conn["id"])
    return acs(srv, conn["id"], idp.answer(request, name_id, sign=sign, **kw), request["relay_state"], bound)


@pytest.fixture(scope="module")
def acme(fed_srv, idp):
    """An organisation holding a domain, with a SAML connection to the IdP (roles mapped)."""
    org, admin = admin_of(fed_srv, "Acme SAML")
    domain = held_domain(fed_srv, org)
    conn = saml_connection(fed_srv, admin, org, idp, roles=["reader"], roles_attribute="groups", allowed_roles=["editor"])
    return {"org": org, "admin": admin, "domain": domain, "conn": conn}


def test_metadata_both_ways_and_the_authn_request(fed_srv, idp, acme):
    conn = acme["conn"]
    entity = f"{fed_srv.issuer}/saml/{conn['id']}/metadata"
    acs_url = f"{fed_srv.issuer}/saml/{conn['id']}/acs"
    s = conn["saml"]
    assert conn["kind"] == "saml" and conn["issuer"] == idp.entity_id and conn["client_id"] == entity
    assert s["sp_entity_id"] == entity and s["acs_url"] == acs_url and s["sso_url"] == idp.sso_url
    import hashlib
    import base64

    assert s["certificate_fingerprints"] == [hashlib.sha256(base64.b64decode(der_b64(idp.cert))).hexdigest()]
    # Ours, for the IdP's admin: entity id, the POST-binding ACS, signed assertions wanted.
    r = requests.get(entity, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/samlmetadata+xml"
    md = etree.fromstring(r.content)
    assert md.get("entityID") == entity
    sp = md.find("{urn:oasis:names:tc:SAML:2.0:metadata}SPSSODescriptor")
    assert sp.get("WantAssertionsSigned") == "true"
    service = sp.find("{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert service.get("Location") == acs_url and service.get("Binding").endswith("HTTP-POST")
    assert requests.get(f"{fed_srv.url}/saml/conn_nosuch/metadata", timeout=10).status_code == 404
    # Our signing certificate, in our metadata and on the connection; its key never shown.
    key_info = sp.find("{urn:oasis:names:tc:SAML:2.0:metadata}KeyDescriptor")
    assert sp.get("AuthnRequestsSigned") == "true" and key_info.get("use") == "signing"
    certificate = key_info.find(f".//{{{DS}}}X509Certificate").text
    assert certificate == s["sp_certificate"] and "sp_key" not in s
    # The AuthnRequest, as the IdP reads it from the redirect: signed by that certificate.
    location, _ = start(fed_srv, conn["id"])
    request = read_request(location)
    assert request["destination"] == idp.sso_url and request["acs"] == acs_url and request["issuer"] == entity
    assert request["binding"].endswith("HTTP-POST") and request["id"].startswith("_")
    assert request_signature_valid(location, certificate)
    assert not request_signature_valid(location.replace("RelayState=", "RelayState=x"), certificate)
    # Each connection has its own key.
    org, admin = admin_of(fed_srv, "Second SAML")
    assert saml_connection(fed_srv, admin, org, idp)["saml"]["sp_certificate"] != certificate


def test_a_signed_answer_signs_in_an_address_of_the_organisations_domain(fed_srv, idp, acme, mail):
    conn, domain = acme["conn"], acme["domain"]
    name_id = "emp-" + secrets.token_hex(4)
    email = f"pat.{secrets.token_hex(3)}@{domain}"
    attrs = {"email": email, "displayName": "Pat Doe", "groups": ["editor", "admin"]}
    claims = signed_in(saml_sso(fed_srv, idp, conn, name_id, attributes=attrs))
    # `admin` is not among the connection's allowed roles: never given.
    assert claims["email"] == email and claims["org"] == acme["org"] and claims["amr"] == ["fed"]
    assert claims["roles"] == ["editor", "reader"]
    # The response signed instead, or both: the same person.
    for sign in ("response", "both"):
        again = signed_in(saml_sso(fed_srv, idp, conn, name_id, sign=sign, attributes={**attrs, "groups": ["editor"]}))
        assert again["sub"] == claims["sub"] and again["roles"] == ["editor", "reader"]
    # The IdP stops saying `editor`: the next sign-in takes it away (`reader` is not the IdP's to take).
    fewer = signed_in(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": email}))
    assert fewer["roles"] == ["reader"]


def test_addresses_outside_the_organisations_domains_are_not_taken(fed_srv, idp, acme, mail):
    # A SAML IdP is the organisation's own: it vouches for its own domains only.
    r = saml_sso(fed_srv, idp, acme["conn"], "x-" + secrets.token_hex(4), attributes={"email": new_email("elsewhere")})
    assert_page_error(r, 403, "email_not_verified")
    # No address at all.
    assert_page_error(saml_sso(fed_srv, idp, acme["conn"], "y-" + secrets.token_hex(4)), 403, "email_not_verified")


def test_an_email_nameid_is_the_address(fed_srv, idp, acme, mail):
    email = f"nameid.{secrets.token_hex(3)}@{acme['domain']}"
    claims = signed_in(saml_sso(fed_srv, idp, acme["conn"], email, name_id_format=EMAIL))
    assert claims["email"] == email


def forged(fed_srv, idp, conn, build):
    """Starts a round trip, lets `build(request)` make the answer, posts it."""
    request, bound = begin(fed_srv, conn["id"])
    return acs(fed_srv, conn["id"], build(request), request["relay_state"], bound)


def test_forged_and_misdirected_answers_are_refused(fed_srv, idp, acme, mail):
    conn, domain = acme["conn"], acme["domain"]
    victim = f"victim.{secrets.token_hex(3)}@{domain}"
    attrs = {"email": victim}
    stranger_key, stranger_cert = keypair("attacker")
    other_sp = f"{fed_srv.issuer}/saml/conn_other/metadata"
    cases = {
        "unsigned": (lambda rq: idp.answer(rq, "v", sign="none", attributes=attrs), "saml_signature_invalid"),
        "another key, its certificate in KeyInfo": (
            lambda rq: idp.encode(idp.response(rq, idp.assertion(rq, "v", attributes=attrs), key=stranger_key, cert=stranger_cert)),
            "saml_signature_invalid"),
        "SHA-1": (
            lambda rq: idp.encode(idp.response(rq, idp.assertion(rq, "v", attributes=attrs), algorithm=SignatureMethod.RSA_SHA1,
                                               digest=DigestAlgorithm.SHA1)),
            "saml_signature_invalid"),
        "another audience": (lambda rq: idp.answer(rq, "v", attributes=attrs, audience=other_sp), "saml_audience_invalid"),
        "another recipient": (lambda rq: idp.answer(rq, "v", attributes=attrs, recipient=f"{fed_srv.issuer}/saml/conn_other/acs"),
                              "saml_confirmation_invalid"),
        "another request": (lambda rq: idp.answer(rq, "v", attributes=attrs, in_response_to="_other"), "saml_confirmation_invalid"),
        "signed response to another request": (
            lambda rq: idp.encode(idp.response(rq, idp.assertion(rq, "v", attributes=attrs), sign="response", in_response_to="_other")),
            "saml_in_response_to_invalid"),
        "signed response for another address": (
            lambda rq: idp.encode(idp.response(rq, idp.assertion(rq, "v", attributes=attrs), sign="response",
                                               destination="https://sp.example/acs")),
            "saml_destination_invalid"),
        "signed refusal": (
            lambda rq: idp.encode(idp.response(rq, idp.assertion(rq, "v", attributes=attrs), sign="response", status="Requester")),
            "sso_failed"),
        "expired": (lambda rq: idp.answer(rq, "v", attributes=attrs, not_on_or_after=-600), "saml_expired"),
        "not yet valid": (lambda rq: idp.answer(rq, "v", attributes=attrs, not_before=900), "saml_expired"),
        "issued long ago": (lambda rq: idp.answer(rq, "v", attributes=attrs, issued=-7200), "saml_expired"),
        "confirmation expired": (lambda rq: idp.answer(rq, "v", attributes=attrs, confirmation_not_on_or_after=-600),
                                 "saml_confirmation_invalid"),
        "another issuer": (lambda rq: idp.answer(rq, "v", attributes=attrs, issuer="https://evil.example/idp"), "saml_issuer_invalid"),
        "transient NameID": (lambda rq: idp.answer(rq, "v", attributes=attrs, name_id_format=TRANSIENT), "saml_subject_invalid"),
        "not base64": (lambda rq: "%%%", "saml_response_invalid"),
    }
    for name, (build, code) in cases.items():
        r = forged(fed_srv, idp, conn, build)
        assert r.status_code == 403 and r.headers.get("x-error-code") == code, (name, r.status_code, r.headers.get("x-error-code"))


def test_changed_or_wrapped_content_is_refused(fed_srv, idp, acme, mail):
    conn, domain = acme["conn"], acme["domain"]
    attacker_email = f"mallory.{secrets.token_hex(3)}@{domain}"
    victim_email = f"victim.{secrets.token_hex(3)}@{domain}"
    attacker_id, victim_id = "mallory-" + secrets.token_hex(3), "victim-" + secrets.token_hex(3)
    victim = signed_in(saml_sso(fed_srv, idp, conn, victim_id, attributes={"email": victim_email}))

    def evil_copy(assertion):
        """The signed assertion with the victim's NameID and address, signature dropped."""
        e = copy.deepcopy(assertion)
        sig = e.find(f"{{{DS}}}Signature")
        if sig is not None:
            e.remove(sig)
        e.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID").text = victim_id
        for v in e.iter(f"{{{SAML}}}AttributeValue"):
            v.text = victim_email
        return e

    def tampered(rq):
        resp = idp.response(rq, idp.assertion(rq, attacker_id, attributes={"email": attacker_email}))
        resp.find(f"{{{SAML}}}Assertion/{{{SAML}}}Subject/{{{SAML}}}NameID").text = victim_id
        return idp.encode(resp)

    def beside(rq):  # XSW: an unsigned assertion before the signed one
        resp = idp.response(rq, idp.assertion(rq, attacker_id, attributes={"email": attacker_email}))
        signed = resp.find(f"{{{SAML}}}Assertion")
        evil = evil_copy(signed)
        evil.set("ID", "_evil" + secrets.token_hex(8))
        resp.insert(list(resp).index(signed), evil)
        return idp.encode(resp)

    def same_id(rq):  # XSW: the evil assertion takes the signed one's ID, the signed one hidden inside it
        resp = idp.response(rq, idp.assertion(rq, attacker_id, attributes={"email": attacker_email}))
        signed = resp.find(f"{{{SAML}}}Assertion")
        evil = evil_copy(signed)
        resp.remove(signed)
        evil.append(signed)
        resp.append(evil)
        return idp.encode(resp)

    def wrapped_response(rq):  # XSW: a signed response moved into the extensions of an unsigned one
        good = idp.response(rq, idp.assertion(rq, attacker_id, attributes={"email": attacker_email}), sign="response")
        outer = copy.deepcopy(good)
        outer.remove(outer.find(f"{{{DS}}}Signature"))
        outer.set("ID", "_evil" + secrets.token_hex(4))
        outer.remove(outer.find(f"{{{SAML}}}Assertion"))
        ext = etree.SubElement(outer, f"{{{SAMLP}}}Extensions")
        ext.append(good)
        evil = evil_copy(good.find(f"{{{SAML}}}Assertion"))
        evil.set("ID", "_evil" + secrets.token_hex(8))
        outer.append(evil)
        return idp.encode(outer)

    def comment_in_name_id(rq):
        # The attacker's own NameID "victim-id.evil": signed, then a comment splits it after
        # "victim-id" (C14N drops comments: the signature still holds).
        a = idp.assertion(rq, victim_id + ".evil", attributes={"email": attacker_email})
        resp = idp.response(rq, a)
        name_id = resp.find(f"{{{SAML}}}Assertion/{{{SAML}}}Subject/{{{SAML}}}NameID")
        name_id.text = victim_id
        comment = etree.Comment("")
        comment.tail = ".evil"
        name_id.append(comment)
        return idp.encode(resp)

    def encrypted(rq):
        resp = idp.response(rq, idp.assertion(rq, victim_id, attributes={"email": victim_email}))
        resp.remove(resp.find(f"{{{SAML}}}Assertion"))
        etree.SubElement(resp, f"{{{SAML}}}EncryptedAssertion")
        return idp.encode(resp)

    def doctype(rq):
        xml = etree.tostring(idp.response(rq, idp.assertion(rq, victim_id, attributes={"email": victim_email})))
        return idp.encode(b'<!DOCTYPE r [<!ENTITY x "y">]>' + xml)

    cases = {
        "tampered": (tampered, "saml_signature_invalid"),
        "beside": (beside, "saml_response_invalid"),
        "same ID": (same_id, "saml_response_invalid"),
        "wrapped response": (wrapped_response, "saml_response_invalid"),
        "comment in NameID": (comment_in_name_id, "saml_response_invalid"),
        "DOCTYPE": (doctype, "saml_response_invalid"),
        "encrypted": (encrypted, "saml_response_invalid"),
    }
    for name, (build, code) in cases.items():
        r = forged(fed_srv, idp, conn, build)
        # Refused outright: not even the attacker's own signed identity gets through a wrapper.
        assert r.status_code == 403 and r.headers["x-error-code"] == code, (name, r.status_code, r.headers.get("x-error-code"))
        assert not any("authgate_at" in c for c in r.raw.headers.getlist("set-cookie")), name
    # The victim's own sign-in still works.
    assert signed_in(saml_sso(fed_srv, idp, conn, victim_id, attributes={"email": victim_email}))["sub"] == victim["sub"]


def test_an_answer_counts_once_in_the_browser_that_asked(fed_srv, idp, acme, mail):
    conn = acme["conn"]
    email = f"once.{secrets.token_hex(3)}@{acme['domain']}"
    request, bound = begin(fed_srv, conn["id"])
    answer = idp.answer(request, "once-" + secrets.token_hex(3), attributes={"email": email})
    # Posted from the IdP's site the state's cookie stays behind: our page posts it again.
    first = acs(fed_srv, conn["id"], answer, request["relay_state"])
    assert first.status_code == 200 and 'name="again"' in first.text and "data-autosubmit" in first.text
    assert f'action="/saml/{conn["id"]}/acs"' in first.text or f'/saml/{conn["id"]}/acs"' in first.text
    # Posted again without the cookie (another browser: login CSRF): refused.
    assert_page_error(acs(fed_srv, conn["id"], answer, request["relay_state"], again=True), 400, "sso_state_invalid")
    # The cookie of another round trip: refused.
    _, other = begin(fed_srv, conn["id"])
    assert_page_error(acs(fed_srv, conn["id"], answer, request["relay_state"], bound=other, again=True), 400, "sso_state_invalid")
    # The browser that asked: signed in, once.
    assert signed_in(acs(fed_srv, conn["id"], answer, request["relay_state"], bound, again=True))["email"] == email
    assert_page_error(acs(fed_srv, conn["id"], answer, request["relay_state"], bound, again=True), 400, "sso_state_invalid")
    # The same answer in a new round trip: not to its request.
    request2, bound2 = begin(fed_srv, conn["id"])
    assert_page_error(acs(fed_srv, conn["id"], answer, request2["relay_state"], bound2), 403, "saml_confirmation_invalid")


def test_an_answer_for_one_connection_does_not_sign_in_through_another(fed_srv, idp, acme, mail):
    org, admin = admin_of(fed_srv, "Other SAML")
    other = saml_connection(fed_srv, admin, org, idp)
    request, bound = begin(fed_srv, acme["conn"]["id"])
    answer = idp.answer(request, "cross-" + secrets.token_hex(3), attributes={"email": f"c@{acme['domain']}"})
    assert_page_error(acs(fed_srv, other["id"], answer, request["relay_state"], bound), 403, "sso_failed")


def test_connections_are_checked_when_registered(fed_srv, idp, mail):
    org, admin = admin_of(fed_srv, "Checked SAML")
    c = fed_srv.client()

    def refused(body, field):
        r = c.post(f"/v1/orgs/{org}/connections", json={"kind": "saml", "name": "X", **body}, token=admin)
        assert_error(r, 400, "invalid_connection")
        assert field in r.json()["message"], r.text

    refused({}, "saml")
    refused({"saml": {"sso_url": idp.sso_url, "certificates": [pem(idp.cert)]}}, "issuer")
    refused({"issuer": "urn:x", "saml": {"certificates": [pem(idp.cert)]}}, "saml.sso_url")
    refused({"issuer": "urn:x", "saml": {"sso_url": idp.sso_url}}, "saml.certificates")
    refused({"issuer": "urn:x", "saml": {"sso_url": idp.sso_url, "certificates": ["not a certificate"]}}, "saml.certificates")
    refused({"issuer": "urn:x", "saml": {"sso_url": "javascript:alert(1)", "certificates": [pem(idp.cert)]}}, "saml.sso_url")
    refused({"saml": {"metadata": "<!DOCTYPE x><x/>"}}, "saml.metadata")
    refused({"saml": {"metadata": "<html/>"}}, "saml.metadata")
    refused({"client_id": "c", "saml": {"metadata": idp.metadata()}}, "client_id")
    refused({"saml": {"metadata": idp.metadata(), "allowed_roles": ["editor"]}}, "roles_attribute")
    r = c.post(f"/v1/orgs/{org}/connections", json={"kind": "oidc", "name": "X", "client_id": "c", "issuer": idp.url,
                                                     "saml": {"metadata": idp.metadata()}}, token=admin)
    assert_error(r, 400, "invalid_connection")
    # Parts by hand, a PEM certificate; the IdP's entity id given replaces the metadata's.
    r = c.post(f"/v1/orgs/{org}/connections", token=admin, json={
        "kind": "saml", "name": "Parts", "issuer": "urn:example:idp", "saml": {"sso_url": idp.sso_url, "certificates": [pem(idp.cert)]}})
    assert r.status_code == 201, r.text
    assert r.json()["issuer"] == "urn:example:idp"
    # Roles the IdP may give: only ones this admin may grant (never platform authority).
    r = c.post(f"/v1/orgs/{org}/connections", token=admin, json={
        "kind": "saml", "name": "Roles", "saml": {"metadata": idp.metadata(), "roles_attribute": "groups", "allowed_roles": ["platform_admin"]}})
    assert r.status_code in (400, 403), r.text
    # Audited; listed with what to enter at the IdP.
    listed = c.get(f"/v1/orgs/{org}/connections", token=admin).json()
    assert any(x["kind"] == "saml" and x["saml"]["acs_url"].endswith("/acs") for x in listed)


def test_sso_off_in_the_organisations_rules_refuses_its_idp(fed_srv, idp, mail):
    org, admin = admin_of(fed_srv, "No SSO SAML")
    conn = saml_connection(fed_srv, admin, org, idp)
    r = fed_srv.client().put(f"/v1/orgs/{org}/auth", json={"methods": ["password"], "mfa_required": False}, token=admin)
    assert r.status_code == 200, r.text
    r = requests.get(f"{fed_srv.url}/login/sso/{conn['id']}", allow_redirects=False, timeout=10)
    assert_page_error(r, 403, "method_not_allowed")


def test_the_operator_adds_a_saml_idp_from_a_metadata_file(fed_srv, idp, tmp_path, mail):
    org, _ = admin_of(fed_srv, "CLI SAML")
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata())
    out = fed_srv.cli("orgs", "add-connection", "--org", org, "--kind", "saml", "--name", "CLI SAML", "--saml-metadata", str(path))
    conn = json.loads(out.stdout)
    assert conn["kind"] == "saml" and conn["issuer"] == idp.entity_id and conn["saml"]["sso_url"] == idp.sso_url
    bad = fed_srv.cli("orgs", "add-connection", "--org", org, "--kind", "saml", "--name", "X", "--saml-metadata", str(tmp_path / "none.xml"),
                      check=False)
    assert bad.returncode != 0 and "--saml-metadata" in bad.stderr


def test_a_signed_in_member_links_a_saml_identity(fed_srv, idp, mail):
    org, admin = admin_of(fed_srv, "Linked SAML")
    conn = saml_connection(fed_srv, admin, org, idp, create_accounts=False)
    # A member whose address is in no domain the organisation holds: linking rests on both
    # sign-ins, not on the address.
    email = new_email("saml-linker")
    fed_srv.cli("admin", "create-user", "--email", email, "--org", org, env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    name_id = "linker-" + secrets.token_hex(3)
    assert_page_error(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": email}), 403, "email_not_verified")
    me = login(fed_srv, email)["access_token"]
    c = fed_srv.client()
    sso_cookie = start(fed_srv, conn["id"])[1][0]
    r = c.post("/v1/me/identities", json={"connection_id": conn["id"]}, token=me)
    assert r.status_code == 200, r.text
    started = r.json()
    request = read_request(started["authorization_url"])
    assert request["relay_state"] == started["state"] and started["authorization_url"].startswith(idp.sso_url)
    answer = idp.answer(request, name_id, attributes={"email": email})
    r = acs(fed_srv, conn["id"], answer, started["state"], (sso_cookie, started["state"]))
    assert r.status_code == 200 and "done=identity_linked" in r.text, r.text[:300]
    [identity] = c.get("/v1/me/identities", token=me).json()
    assert identity["connection_id"] == conn["id"] and identity["kind"] == "saml"
    # Now the IdP's NameID signs this account in, whatever address it asserts.
    assert signed_in(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": new_email("other")}))["email"] == email


def test_an_admin_rolls_the_idps_certificate_over_and_the_identities_stay(fed_srv, idp, acme, mail):
    conn, domain = acme["conn"], acme["domain"]
    c = fed_srv.client()
    email, name_id = f"roll.{secrets.token_hex(3)}@{domain}", "roll-" + secrets.token_hex(3)
    first = signed_in(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": email}))
    new_key, new_cert = keypair("next year's IdP key")

    def signed_by_new(rq):
        return idp.encode(idp.response(rq, idp.assertion(rq, name_id, attributes={"email": email}), key=new_key, cert=new_cert))

    assert_page_error(forged(fed_srv, idp, conn, signed_by_new), 403, "saml_signature_invalid")
    path = f"/v1/orgs/{acme['org']}/connections/{conn['id']}/saml"
    both = {"sso_url": idp.sso_url, "certificates": [pem(idp.cert), pem(new_cert)], "roles_attribute": "groups", "allowed_roles": ["editor"]}
    # Only this organisation's admins; only its SAML connections.
    _, admin2 = admin_of(fed_srv, "Someone else")
    assert_error(c.put(path, json={"saml": both}, token=admin2), 404)
    assert_error(c.put(path, json={"saml": {**both, "certificates": ["junk"]}}, token=acme["admin"]), 400, "invalid_connection")
    r = c.put(path, json={"saml": both}, token=acme["admin"])
    assert r.status_code == 200, r.text
    updated = r.json()
    assert len(updated["saml"]["certificate_fingerprints"]) == 2 and updated["issuer"] == idp.entity_id
    # Our side did not move: the IdP keeps what it was given.
    assert updated["client_id"] == conn["client_id"] and updated["saml"]["sp_certificate"] == conn["saml"]["sp_certificate"]
    # Either key signs during the rollover; the person is the same account.
    assert signed_in(forged(fed_srv, idp, conn, signed_by_new))["sub"] == first["sub"]
    assert signed_in(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": email}))["sub"] == first["sub"]
    # The old certificate retired: its signatures no longer count.
    r = c.put(path, json={"saml": {**both, "certificates": [pem(new_cert)]}}, token=acme["admin"])
    assert r.status_code == 200, r.text
    assert_page_error(saml_sso(fed_srv, idp, conn, name_id, attributes={"email": email}), 403, "saml_signature_invalid")
    assert signed_in(forged(fed_srv, idp, conn, signed_by_new))["sub"] == first["sub"]
    events = c.get("/v1/audit", token=acme["admin"], params={"action": "connection.updated"}).json()
    assert len(events) >= 2 and all(e["target_id"] == conn["id"] for e in events), events
    # Back to the IdP's own certificate for the module's other tests.
    assert c.put(path, json={"saml": {"metadata": idp.metadata(), "roles_attribute": "groups", "allowed_roles": ["editor"]}},
                 token=acme["admin"]).status_code == 200


def test_an_idp_signing_with_ecdsa_p256(fed_srv, mail):
    idp = Idp(ec=True)
    try:
        org, admin = admin_of(fed_srv, "EC SAML")
        domain = held_domain(fed_srv, org)
        conn = saml_connection(fed_srv, admin, org, idp)
        email = f"ec.{secrets.token_hex(3)}@{domain}"
        for sign in ("assertion", "response"):
            assert signed_in(saml_sso(fed_srv, idp, conn, "ec-user", sign=sign, attributes={"email": email}))["email"] == email
    finally:
        idp.stop()
