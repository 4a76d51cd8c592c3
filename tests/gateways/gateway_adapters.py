"""One small adapter per gateway, so tests/gateways writes each scenario once: start a gateway
from a gateway document (the one JSON schema every host reads), send it requests, read its log,
stop it. What a host adds around the document (the plugin's `host` block and Envoy's files in
docs/envoy/, the worker's wrangler.toml vars) is the adapter's business.

Each adapter also says what only it can: `lag_s`, how long after auth-core makes material due
every request sees the result (Envoy: the fetcher's tick, then a tick for the other worker VMs
to adopt it; the worker: the fetch the first request after it is due starts in the background),
and `path_seen`, the path the gateway's code is handed for a request target."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for d in (TESTS, TESTS / "plugin", TESTS / "worker"):
    sys.path.insert(0, str(d))

from gateway_fixtures import Echo, Issuer  # noqa: E402
from plugin_harness import TICK_MS, Envoy, ensure_wasm, plugin_document  # noqa: E402
from worker_harness import Worker, ensure_built, whatwg_path, worker_env  # noqa: E402


class Gateway:
    """What a scenario uses of a started gateway; `host` is the harness's running host."""

    name: str
    lag_s: float
    host: Envoy | Worker
    # Whether EdDSA/ES256/RS256 signatures go to the host's native crypto (the default where
    # it has one) or stay in the WebAssembly code (the fallback variants).
    host_crypto = True

    @property
    def port(self) -> int:
        return self.host.port

    def request(self, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 15):
        """One request on a fresh connection: (status, headers, body), see gateway_fixtures.http_request."""
        return self.host.request(method, path, headers, body, timeout)

    def log(self) -> str:
        return self.host.log()

    def stop(self):
        self.host.stop()


class EnvoyGateway(Gateway):
    """The plugin in Envoy 1.40 with two worker threads, from docs/envoy/ (plugin_harness.Envoy)."""

    name = "envoy"
    lag_s = 2 * TICK_MS / 1000
    build = staticmethod(ensure_wasm)

    def __init__(self, workdir: Path, gateway: dict, issuer: Issuer, echo: Echo):
        self.host = Envoy(workdir, plugin_document(gateway, issuer), issuer, echo)
        try:
            self.host.wait_ready()
        except BaseException:
            self.host.stop()
            raise

    def host_crypto_used(self) -> bool:
        """Whether the filter asked Envoy's `verify_signature` (BoringSSL) to check signatures."""
        return self.host.stats().get("wasmcustom.authgate.signatures_checked_by_proxy", 0) > 0

    @staticmethod
    def path_seen(target: str) -> str:
        # docs/envoy/envoy.yaml: normalize_path and merge_slashes off, escaped slashes kept.
        return target


class EnvoyFilterCryptoGateway(EnvoyGateway):
    """The same, with every signature checked by the filter's own code (`host.signatures:
    "filter"`): the fallback Kong runs, where the proxy has no `verify_signature`."""

    name = "envoy-filter-crypto"
    host_crypto = False

    def __init__(self, workdir: Path, gateway: dict, issuer: Issuer, echo: Echo):
        gateway = {**gateway, "host": {**gateway.get("host", {}), "signatures": "filter"}}
        super().__init__(workdir, gateway, issuer, echo)


class WorkerGateway(Gateway):
    """The edge worker in workerd, from wrangler.toml (worker_harness.Worker)."""

    name = "worker"
    lag_s = 1.0
    build = staticmethod(ensure_built)

    def __init__(self, workdir: Path, gateway: dict, issuer: Issuer, echo: Echo):
        self.host = Worker(workdir, worker_env(gateway, echo))

    def host_crypto_used(self) -> bool:
        """Whether WebCrypto answered a signature check (the worker logs it once per isolate)."""
        return "checked by the runtime's WebCrypto" in self.host.log()

    # The Workers runtime parses request.url with the WHATWG URL parser before the worker runs.
    path_seen = staticmethod(whatwg_path)


ADAPTERS = {a.name: a for a in (EnvoyGateway, WorkerGateway)}
class WorkerOwnCryptoGateway(WorkerGateway):
    """The same, with every signature checked by the worker's own code (`AUTHGATE_SIGNATURES=worker`)."""

    name = "worker-own-crypto"
    host_crypto = False

    def __init__(self, workdir: Path, gateway: dict, issuer: Issuer, echo: Echo):
        self.host = Worker(workdir, worker_env(gateway, echo, AUTHGATE_SIGNATURES="worker"))


# The conformance file also runs through each host's other signature path (host crypto or the
# in-WebAssembly fallback): both ship, both must give the same answers.
CRYPTO_FALLBACKS = {a.name: a for a in (EnvoyFilterCryptoGateway, WorkerOwnCryptoGateway)}
