"""End-to-end suite for auth-server: every flow over HTTP against the real binary.

Backends: every test that takes the `srv` fixture runs twice, against SQLite (ephemeral state in
the database) and against PostgreSQL 127.0.0.1:5432 with Redis 127.0.0.1:6379 (a fresh database
and a fresh Redis key prefix per run). Emails go to a real SMTP server (aiosmtpd) started here;
codes are read from the received messages.

Passwords are hashed with a LOW argon2id cost in this suite (1 MiB, 1 iteration) to keep the
wall time short; production defaults are 19 MiB, 2 iterations (docs/auth-server.md).
"""

import pytest

from authsrv import Backend, build_binaries, mail  # noqa: F401  (mail: a fixture)


@pytest.fixture(scope="session")
def binaries():
    """Builds auth-server and the authgate CLI (a no-op when they are up to date)."""
    return build_binaries()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request, binaries, tmp_path_factory, mail):
    b = Backend(request.param, binaries, tmp_path_factory.mktemp(request.param), mail)
    yield b
    b.close()


@pytest.fixture(scope="session")
def srv(backend):
    """The shared server of a backend (default configuration)."""
    return backend.server()


@pytest.fixture(scope="session")
def fed_srv(backend):
    """A server of the same backend that may call identity providers over http on this machine
    (the federation tests' providers)."""
    return backend.server(AUTHGATE_FEDERATION__ALLOW_HTTP="true", AUTHGATE_FEDERATION__ALLOW_PRIVATE_ADDRESSES="true")


@pytest.fixture(scope="session")
def orgs_srv(backend):
    """A server of the same backend whose sign-ups may create their own organisation."""
    return backend.server(AUTHGATE_SIGNUP__ALLOW_ORG_CREATION="true")
