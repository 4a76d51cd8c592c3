"""Schemathesis hooks for test_server_openapi.py: the fuzzer signs in as the account the test
made (AUTHGATE_FUZZ_BASE, _EMAIL, _PASSWORD) and signs in again whenever a request it made ended
its own session (a logout, "revoke all", a password change) — so it keeps testing past them."""

import os

import requests
import schemathesis


def sign_in():
    base = os.environ["AUTHGATE_FUZZ_BASE"]
    r = requests.post(base + "/v1/auth/init", json={"email": os.environ["AUTHGATE_FUZZ_EMAIL"]}, timeout=10)
    r.raise_for_status()
    r = requests.post(
        base + "/v1/auth/authenticate",
        json={"method": "password", "password": os.environ["AUTHGATE_FUZZ_PASSWORD"]},
        headers={"x-session-token": r.headers["x-session-token"]},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


@schemathesis.auth(refresh_interval=None, retry_on=[401])
class Session:
    def get(self, case, ctx):
        return sign_in()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        # /metrics takes the operator's metrics token, not a user's.
        token = os.environ["AUTHGATE_FUZZ_METRICS_TOKEN"] if case.path == "/metrics" else data
        case.headers["Authorization"] = f"Bearer {token}"
