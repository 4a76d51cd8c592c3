"""Each organisation's sign-in rules and claimed email domains: its admins (or platform admins)
set which methods its people may sign in with and whether two factors are required; a domain
claim verified by platform authority puts every address of the domain under the organisation's
rules from the login's first step — the same answers for every address of the domain, with or
without an account. The rules of the organisation a session opens in are met before it opens."""

import json
import secrets
import socket

import pytest

from authsrv import (
    PASSWORD,
    admin_user,
    assert_error,
    new_email,
    operator_user,
)
from test_server_authority import claims_of
from test_server_memberships import new_org


def start(srv, email):
    c = srv.client()
    r = c.post("/v1/auth/init", json={"email": email})
    assert r.status_code == 200, r.text
    return c, {"x-session-token": r.headers["x-session-token"]}, r.json()["methods"]


def step(c, h, **body):
    return c.post("/v1/auth/authenticate", json=body, headers=h)


def email_step(srv, mail, c, h, email):
    mark = mail.mark()
    r = step(c, h, method="email_otp")
    assert r.status_code == 200 and r.json()["status"] == "code_sent", r.text
    return step(c, h, method="email_otp", code=mail.code(email, "sign-in", start=mark))


def test_admins_set_their_organisations_rules_and_nobody_elses(srv, mail):
    org = new_org(srv, "Rules")
    _, admin = admin_user(srv, roles=("admin",), org=org)
    _, member = admin_user(srv, roles=("reader",), org=org)
    _, stranger = admin_user(srv, roles=("admin",), org=new_org(srv, "Elsewhere"))
    a, c = admin["access_token"], srv.client()
    r = c.get(f"/v1/orgs/{org}/auth", token=a)
    assert r.status_code == 200 and r.json() == {"methods": ["password", "email_otp", "totp", "passkey", "sso"], "mfa_required": False, "domains": []}
    for bad, why in [({"methods": ["totp"], "mfa_required": False}, "second step"), ({"methods": [], "mfa_required": False}, "at least one"),
                     ({"methods": ["password", "sms"], "mfa_required": False}, "one of"),
                     ({"methods": ["password", "password"], "mfa_required": False}, "at most once")]:
        r = c.put(f"/v1/orgs/{org}/auth", json=bad, token=a)
        assert_error(r, 400, "invalid_auth_rules")
        assert why in r.json()["message"]
    assert_error(c.put(f"/v1/orgs/{org}/auth", json={"methods": ["password"], "mfa_required": False, "sso": True}, token=a), 400)
    r = c.put(f"/v1/orgs/{org}/auth", json={"methods": ["passkey", "email_otp"], "mfa_required": True}, token=a)
    assert r.status_code == 200 and r.json()["methods"] == ["email_otp", "passkey"] and r.json()["mfa_required"] is True, r.text
    # Another organisation's admin learns nothing; a member who is not an admin is refused.
    for method, path, body in [("GET", f"/v1/orgs/{org}/auth", None), ("PUT", f"/v1/orgs/{org}/auth", {"methods": ["password"], "mfa_required": False}),
                               ("POST", f"/v1/orgs/{org}/domains", {"domain": "stranger.example"})]:
        assert_error(c.req(method, path, token=stranger["access_token"], json=body), 404, "org_not_found")
        assert_error(c.req(method, path, token=member["access_token"], json=body), 403, "insufficient_role")
    # A platform admin reads and changes any organisation's rules.
    _, op = operator_user(srv)
    r = c.put(f"/v1/orgs/{org}/auth", json={"methods": ["password", "email_otp"], "mfa_required": False}, token=op["access_token"])
    assert r.status_code == 200, r.text
    assert_error(c.get("/v1/orgs/org_missing/auth", token=op["access_token"]), 404, "org_not_found")
    events = c.get("/v1/audit", token=a, params={"action": "org.auth_changed"}).json()
    assert [e["data"]["methods"] for e in events] == [["password", "email_otp"], ["email_otp", "passkey"]]


def test_a_domain_counts_once_platform_authority_verified_it(srv, mail):
    org, other = new_org(srv, "Claims"), new_org(srv, "Rival")
    _, admin = admin_user(srv, roles=("admin",), org=org)
    _, rival = admin_user(srv, roles=("admin",), org=other)
    _, op = operator_user(srv)
    domain = f"claims-{secrets.token_hex(4)}.example"
    c, a = srv.client(), admin["access_token"]
    r = c.post(f"/v1/orgs/{org}/domains", json={"domain": domain.upper() + "."}, token=a)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["domain"] == domain and d["verified_at"] is None and d["txt_name"] == f"_authgate.{domain}"
    assert d["txt_value"].startswith("authgate-verification=")
    assert_error(c.post(f"/v1/orgs/{org}/domains", json={"domain": domain}, token=a), 409, "domain_exists")
    for bad in ["", "com", "bad_domain.example", "a..b", "1.2.3.4", "bücher.example"]:
        assert_error(c.post(f"/v1/orgs/{org}/domains", json={"domain": bad}, token=a), 400, "invalid_domain")
    # A rival may ask for it too; asking changes nothing for anyone.
    assert c.post(f"/v1/orgs/{other}/domains", json={"domain": domain}, token=rival["access_token"]).status_code == 201
    pw_rules = {"methods": ["email_otp"], "mfa_required": False}
    assert c.put(f"/v1/orgs/{org}/auth", json=pw_rules, token=a).status_code == 200
    _, _, methods = start(srv, f"someone@{domain}")
    assert "password" in methods
    # A tenant cannot vouch for itself (it proves control with the TXT record: the DNS test
    # below); the platform can.
    r = c.post(f"/v1/orgs/{org}/domains/{domain}/verify", token=op["access_token"])
    assert r.status_code == 200 and r.json()["verified_at"], r.text
    _, _, methods = start(srv, f"someone@{domain}")
    assert methods == ["email_otp"]
    # One holder at a time.
    assert_error(c.post(f"/v1/orgs/{other}/domains/{domain}/verify", token=op["access_token"]), 409, "domain_taken")
    r = srv.cli("orgs", "verify-domain", "--org", other, "--domain", domain, check=False)
    assert r.returncode != 0 and "domain_taken" in r.stderr
    listed = c.get(f"/v1/orgs/{org}/auth", token=a).json()["domains"]
    assert [(x["domain"], bool(x["verified_at"])) for x in listed] == [(domain, True)]
    # Removing the claim frees the addresses (and the rival could then be verified).
    assert c.delete(f"/v1/orgs/{org}/domains/{domain}", token=a).status_code == 204
    assert_error(c.delete(f"/v1/orgs/{org}/domains/{domain}", token=a), 404, "domain_not_found")
    _, _, methods = start(srv, f"someone@{domain}")
    assert "password" in methods
    out = json.loads(srv.cli("orgs", "verify-domain", "--org", other, "--domain", domain).stdout)
    assert out["domain"] == domain and out["verified_at"]
    actions = [e["action"] for e in c.get("/v1/audit", token=a, params={"action": "org."}).json()]
    assert actions[:3] == ["org.domain_removed", "org.domain_verified", "org.auth_changed"] and "org.domain_added" in actions


def test_a_domain_that_forbids_passwords_answers_every_address_alike(srv, mail):
    """`init` and the password step answer the same for an address with an account and one
    without; the emailed code signs the member in."""
    org = new_org(srv, "NoPasswords")
    domain = f"nopw-{secrets.token_hex(4)}.example"
    member = f"member@{domain}"
    srv.cli("admin", "create-user", "--email", member, "--org", org, "--role", "reader", env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    srv.cli("orgs", "set-auth", "--org", org, "--method", "email_otp", "--method", "totp")
    srv.cli("orgs", "verify-domain", "--org", org, "--domain", domain)
    answers = []
    for addr in [member, f"nobody@{domain}"]:
        c, h, methods = start(srv, addr)
        r = step(c, h, method="password", password=PASSWORD)
        answers.append((methods, r.status_code, r.headers.get("x-error-code")))
        r = c.post("/v1/sessions", json={"email": addr, "password": PASSWORD})
        answers.append((r.status_code, r.headers.get("x-error-code")))
    assert answers[0] == answers[2] == (["email_otp", "totp"], 403, "method_not_allowed")
    assert answers[1] == answers[3] == (403, "method_not_allowed")
    c, h, _ = start(srv, member)
    r = email_step(srv, mail, c, h, member)
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    assert claims_of(r.json()["access_token"])["amr"] == ["email"]
    # Addresses of other domains are not touched.
    email, _ = admin_user(srv, roles=("admin",))
    c, h, methods = start(srv, email)
    assert "password" in methods and step(c, h, method="password", password=PASSWORD).json()["status"] == "complete"


def test_the_sessions_organisation_rules_are_met_before_it_opens(srv, mail):
    strict = new_org(srv, "Strict")
    email = new_email("strict")
    srv.cli("admin", "create-user", "--email", email, "--org", strict, "--role", "reader", env={"AUTHGATE_NEW_PASSWORD": PASSWORD})
    srv.cli("orgs", "set-auth", "--org", strict, "--method", "password", "--method", "email_otp", "--mfa-required")
    # The account needs one factor; the organisation wants two: after the password, a code.
    c, h, methods = start(srv, email)
    assert "password" in methods
    r = step(c, h, method="password", password=PASSWORD)
    assert r.status_code == 200 and r.json()["status"] == "continue" and r.json()["next"] == ["email_otp"], r.text
    assert_error(step(c, h, method="org", org=strict), 400, "method_not_allowed_now")
    r = email_step(srv, mail, c, h, email)
    assert r.status_code == 200 and r.json()["status"] == "complete", r.text
    claims = claims_of(r.json()["access_token"])
    assert claims["org"] == strict and claims["amr"] == ["pwd", "email", "mfa"]
    # The short form is two factors already.
    mark = mail.mark()
    r = c.post("/v1/sessions", json={"email": email, "password": PASSWORD})
    assert r.status_code == 202, r.text
    r = c.post("/v1/sessions/verify", json={"verification_id": r.json()["verification_id"], "code": mail.code(email, "sign-in", start=mark)})
    assert r.status_code == 200, r.text
    # An organisation that forbids the emailed code refuses the short form's session.
    srv.cli("orgs", "set-auth", "--org", strict, "--method", "password", "--method", "totp")
    mark = mail.mark()
    r = c.post("/v1/sessions", json={"email": email, "password": PASSWORD})
    r = c.post("/v1/sessions/verify", json={"verification_id": r.json()["verification_id"], "code": mail.code(email, "sign-in", start=mark)})
    assert_error(r, 403, "auth_rules_unmet")
    # Rules this account cannot meet (a passkey only; it has none) stop the login after its factors.
    srv.cli("orgs", "set-auth", "--org", strict, "--method", "passkey")
    c, h, _ = start(srv, email)
    assert_error(step(c, h, method="password", password=PASSWORD), 403, "auth_rules_unmet")
    # A password-free organisation: the password does not count there, the code does.
    srv.cli("orgs", "set-auth", "--org", strict, "--method", "email_otp")
    c, h, _ = start(srv, email)
    r = step(c, h, method="password", password=PASSWORD)
    assert r.json()["status"] == "continue" and r.json()["next"] == ["email_otp"], r.text
    r = email_step(srv, mail, c, h, email)
    assert r.json()["status"] == "complete" and claims_of(r.json()["access_token"])["org"] == strict
    # Other organisations' people are not touched.
    other, _ = admin_user(srv, roles=("admin",))
    c, h, _ = start(srv, other)
    assert step(c, h, method="password", password=PASSWORD).json()["status"] == "complete"


class Zone:
    """A DNS server on 127.0.0.1 (PyPI `dnslib`) answering TXT records the test publishes;
    NXDOMAIN for every other name."""

    def __init__(self):
        from dnslib import QTYPE, RR, TXT
        from dnslib.server import BaseResolver, DNSServer

        zone = self
        self.txt = {}

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                if request.q.qtype == QTYPE.TXT and name in zone.txt:
                    for value in zone.txt[name]:
                        reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=0))
                elif name not in zone.txt:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        # A port free for both UDP and TCP: a free UDP port's TCP twin may be taken (or still in
        # TIME_WAIT from an earlier zone), so try again with another.
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            try:
                udp = DNSServer(Resolver(), port=self.port, address="127.0.0.1")
            except OSError:
                continue
            try:
                self.servers = [udp, DNSServer(Resolver(), port=self.port, address="127.0.0.1", tcp=True)]
                break
            except OSError:
                udp.server.server_close()
        else:
            raise RuntimeError("no port free for a DNS server on both UDP and TCP")
        for server in self.servers:
            server.start_thread()

    def stop(self):
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def zone():
    z = Zone()
    yield z
    z.stop()


@pytest.fixture(scope="module")
def dns_srv(backend, zone):
    """A server of the backend that reads TXT records from the test's DNS server."""
    srv = backend.server(AUTHGATE_DOMAINS__RESOLVER=f"127.0.0.1:{zone.port}")
    yield srv
    srv.stop()


def test_an_organisations_admins_prove_a_domain_with_its_txt_record(dns_srv, zone, mail):
    srv = dns_srv
    org, rival = new_org(srv, "Provers"), new_org(srv, "Rivals")
    _, admin = admin_user(srv, roles=("admin",), org=org)
    _, their_admin = admin_user(srv, roles=("admin",), org=rival)
    _, reader = admin_user(srv, roles=("reader",), org=org)
    c, a, r_ = srv.client(), admin["access_token"], their_admin["access_token"]
    domain = f"proven-{secrets.token_hex(4)}.example"
    verify = f"/v1/orgs/{org}/domains/{domain}/verify"
    # Not asked for yet: nothing to prove.
    assert_error(c.post(verify, token=a), 404, "domain_not_found")
    mine = c.post(f"/v1/orgs/{org}/domains", json={"domain": domain}, token=a).json()
    theirs = c.post(f"/v1/orgs/{rival}/domains", json={"domain": domain}, token=r_).json()
    # No record; then only the rival's record: not proof of this organisation's control.
    assert_error(c.post(verify, token=a), 409, "dns_record_missing")
    zone.txt[mine["txt_name"]] = [theirs["txt_value"], "v=spf1 -all"]
    assert_error(c.post(verify, token=a), 409, "dns_record_missing")
    # A member who is not an admin, and another organisation's admin, may not ask.
    assert_error(c.post(verify, token=reader["access_token"]), 403, "insufficient_role")
    assert_error(c.post(verify, token=r_), 404, "org_not_found")
    # The organisation's own record: verified, its rules now govern the domain's addresses.
    zone.txt[mine["txt_name"]].append(mine["txt_value"])
    r = c.post(verify, token=a)
    assert r.status_code == 200 and r.json()["verified_at"], r.text
    assert c.put(f"/v1/orgs/{org}/auth", json={"methods": ["email_otp"], "mfa_required": False}, token=a).status_code == 200
    assert start(srv, f"anyone@{domain}")[2] == ["email_otp"]
    # The rival's record published too changes nothing: one holder at a time.
    assert_error(c.post(f"/v1/orgs/{rival}/domains/{domain}/verify", token=r_), 409, "domain_taken")
    events = c.get("/v1/audit", token=a, params={"action": "org.domain_verified"}).json()
    assert [e["action"] for e in events] == ["org.domain_verified"], events


def test_dns_verification_can_be_left_to_the_platform(backend, zone, mail):
    srv = backend.server(AUTHGATE_DOMAINS__RESOLVER=f"127.0.0.1:{zone.port}", AUTHGATE_DOMAINS__DNS_VERIFICATION="false")
    try:
        org = new_org(srv, "Operator only")
        _, admin = admin_user(srv, roles=("admin",), org=org)
        domain = f"operator-{secrets.token_hex(4)}.example"
        d = srv.client().post(f"/v1/orgs/{org}/domains", json={"domain": domain}, token=admin["access_token"]).json()
        zone.txt[d["txt_name"]] = [d["txt_value"]]
        r = srv.client().post(f"/v1/orgs/{org}/domains/{domain}/verify", token=admin["access_token"])
        assert_error(r, 403, "insufficient_role")
    finally:
        srv.stop()
