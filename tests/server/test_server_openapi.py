"""The OpenAPI document tells the truth: Schemathesis (a schema-based fuzzer) generates requests
for every operation of /openapi.json — valid, invalid, missing credentials, unsupported methods,
and sequences that follow the document's links — against a server this test starts, signed in
as an admin, with the rate limits raised. Every answer must be a status the document declares,
with the headers and body it declares for it, and none may be a 5xx."""

import os
import subprocess
import sys
from pathlib import Path

from authsrv import PASSWORD, admin_user, operator_user
from test_server_org_auth import zone  # noqa: F401  (a fixture)

HERE = Path(__file__).resolve().parent
METRICS_TOKEN = "m" * 40


def test_the_api_answers_as_its_openapi_document_says(backend, tmp_path, zone):
    srv = backend.isolated().server(
        AUTHGATE_RATE_LIMITS__AUTH_PER_IP="1000000",
        AUTHGATE_RATE_LIMITS__AUTH_PER_ACCOUNT="1000000",
        AUTHGATE_CODES__ISSUE_LIMIT="1000000",
        AUTHGATE_METRICS__TOKEN=METRICS_TOKEN,
        # Webhook URLs the fuzzer makes up are not resolved (no DNS from the test machine).
        AUTHGATE_WEBHOOKS__ALLOW_HTTP="true",
        AUTHGATE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES="true",
        AUTHGATE_WEBHOOKS__MAX_PER_ORG="100",
        # Nor are domains' TXT records: a DNS server of the test answers that none exist.
        AUTHGATE_DOMAINS__RESOLVER=f"127.0.0.1:{zone.port}",
    )
    tenant_admin, _ = admin_user(srv, roles=("admin", "reader", "editor"))
    platform_admin, _ = operator_user(srv)
    # Every operation as a tenant admin; then the platform's own (organisations, the whole audit
    # log) as a platform admin, which the first pass only sees refused.
    for who, email, only in [("tenant admin", tenant_admin, None), ("platform admin", platform_admin, "^/v1/(orgs|audit)")]:
        out = fuzz(srv, email, only, tmp_path)
        tail = out.stdout[-20000:]
        assert out.returncode == 0, f"as {who}:\n{tail}"
        assert "Tested: " in out.stdout and " passed" in out.stdout, tail


def fuzz(srv, email, only, tmp_path):
    env = dict(os.environ)
    env.update({
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": str(HERE),
        "AUTHGATE_FUZZ_BASE": srv.url,
        "AUTHGATE_FUZZ_EMAIL": email,
        "AUTHGATE_FUZZ_PASSWORD": PASSWORD,
        "AUTHGATE_FUZZ_METRICS_TOKEN": METRICS_TOKEN,
    })
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(HERE / "schemathesis.toml"), "run", srv.url + "/openapi.json"]
    if only:
        cmd += ["--include-path-regex", only]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
