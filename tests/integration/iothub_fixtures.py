"""Run the IoT Hub emulator as a real child process, and talk to it as the app does.

Import into a test module: `from tests.integration.iothub_fixtures import iothub_emulator`
(a module-scoped emulator with two hubs on free ports), or call start_iothub_emulator() for
one with other options. registry_manager() builds the real azure-iot-hub client, trusting the
emulator's CA and with the SDK's own retries off; hub_http() is a plain HTTPS client for the
devstack extras (faults, events, device-side reported properties).

Every emulator trusts the bearer tokens of an identity key pair made in its data dir's parent
(`identity/`): bearer_token() signs one in-process, and the identity service started on that
directory (identity_fixtures.start_identity_service) hands out tokens the emulator accepts.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.identity import TokenIssuer, ensure_identity_files, load_issuer
from devstack.iothub_emulator import HubConnectionInfo, hubs_from_ready_info
from devstack.processes import Child, start_child, stop_children, wait_ready

IOTHUB_EMULATOR_MODULE = "devstack.iothub_emulator"
HUB_US = "hub-us-east.azure-devices.net"
HUB_EU = "hub-eu-west.azure-devices.net"
IOTHUB_AUDIENCE = "https://iothubs.azure.net"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningIotHubEmulator:
    child: Child
    data_dir: Path
    identity_dir: Path

    def token_issuer(self) -> TokenIssuer:
        """Signs with the key the emulator trusts."""
        return load_issuer(self.identity_dir)

    def bearer_token(self, audience: str = IOTHUB_AUDIENCE) -> str:
        """A token the identity service would hand out for IoT Hub."""
        return self.token_issuer().issue(audience).access_token

    @property
    def ca_cert(self) -> str:
        return str(self.child.info["caCert"])

    @property
    def hubs(self) -> dict[str, HubConnectionInfo]:
        return hubs_from_ready_info(self.child.info)

    def hub(self, name: str = HUB_US) -> HubConnectionInfo:
        return self.hubs[name]

    def connection_string(self, hub: str = HUB_US, policy: str = "iothubowner") -> str:
        return str(self.child.info["hubs"][hub]["connectionStrings"][policy])

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the emulator's CA (for plain HTTPS clients such as httpx)."""
        return ssl.create_default_context(cafile=self.ca_cert)

    def registry_manager(self, hub: str = HUB_US, policy: str = "iothubowner") -> Any:
        return registry_manager(self.connection_string(hub, policy), self.ca_cert)

    def http(self, hub: str = HUB_US) -> httpx.Client:
        return hub_http(self.connection_string(hub), self.ca_cert)


def sas_token(connection_string: str, ttl: int = 3600) -> str:
    """A service SAS token made by the SDK's own code, not the emulator's."""
    from azure.iot.hub.connection_string import ConnectionString
    from azure.iot.hub.sastoken import SasToken

    parts = ConnectionString(connection_string)
    return str(
        SasToken(parts["HostName"], parts["SharedAccessKey"], parts["SharedAccessKeyName"], ttl=ttl)
    )


def registry_manager(connection_string: str, ca_cert: str) -> Any:
    """IoTHubRegistryManager as the app configures it: our CA trusted, SDK retries off."""
    from azure.iot.hub import IoTHubRegistryManager

    manager = IoTHubRegistryManager.from_connection_string(connection_string)
    manager.protocol.config.connection.verify = ca_cert
    manager.protocol.config.retry_policy.retries = 0
    return manager


class _SasAuth(httpx.Auth):
    """A fresh SAS token on every request, as the SDK does."""

    def __init__(self, connection_string: str) -> None:
        self._connection_string = connection_string

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = sas_token(self._connection_string)
        yield request


def hub_http(connection_string: str, ca_cert: str) -> httpx.Client:
    """HTTPS client for one hub, authenticated with the connection string's policy."""
    host = connection_string.split("HostName=", 1)[1].split(";", 1)[0]
    return httpx.Client(
        base_url=f"https://{host}",
        verify=ssl.create_default_context(cafile=ca_cert),
        auth=_SasAuth(connection_string),
        timeout=10,
    )


def hub_events(http: httpx.Client, after: int = 0) -> list[dict[str, Any]]:
    """GET /devstack/events?after=N: the twin change notifications the hub emitted."""
    response = http.get("/devstack/events", params={"after": after})
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def last_sequence_number(http: httpx.Client) -> int:
    """The newest event's sequence number (0 if none): pass it as `after` to see only new ones."""
    after = 0
    while batch := hub_events(http, after):
        after = batch[-1]["sequenceNumber"]
    return after


def event_body(event: dict[str, Any]) -> Any:
    return json.loads(event["body"])


def start_iothub_emulator(
    run_dir: Path,
    data_dir: Path,
    *,
    name: str = "iothub-emulator",
    hubs: Sequence[tuple[str, int]] = ((HUB_US, 0), (HUB_EU, 0)),
    extra_args: Sequence[str] = (),
    trust_tokens: bool = True,
) -> RunningIotHubEmulator:
    """Start on free ports (unless hubs name them); return when ready.

    TLS comes from devstack.tls in data_dir's parent, as `make run` does it; bearer tokens are
    checked against the identity key pair in data_dir's parent's `identity/`, unless
    trust_tokens is False (then the emulator takes SAS only).
    """
    identity_dir = data_dir.parent / "identity"
    public_key = ensure_identity_files(identity_dir).public_key
    args = ["--data-dir", str(data_dir)]
    if trust_tokens:
        args += ["--token-issuer-key", str(public_key)]
    for hub, port in hubs:
        args += ["--hub", f"{hub}={port}"]
    child = start_child(
        name, IOTHUB_EMULATOR_MODULE, [*args, *extra_args], run_dir=run_dir, cwd=REPO_ROOT
    )
    return RunningIotHubEmulator(
        child=wait_ready(child), data_dir=data_dir, identity_dir=identity_dir
    )


@pytest.fixture(scope="module")
def iothub_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningIotHubEmulator]:
    """Two hubs with default limits (50 twin updates/s), shared by one test module."""
    base = tmp_path_factory.mktemp("iothub")
    emulator = start_iothub_emulator(base / "run", base / "data" / "iothub")
    try:
        yield emulator
    finally:
        stop_children([emulator.child])


class EventSink:
    """A small real HTTP server receiving the emulator's event deliveries.

    `statuses[path]` lists answers to give, in order, before answering 200 on that path;
    every attempt is recorded, accepted batches separately.
    """

    def __init__(self, port: int = 0, statuses: dict[str, list[int]] | None = None) -> None:
        self.statuses = {path: list(codes) for path, codes in (statuses or {}).items()}
        self.attempts: list[tuple[str, int, list[dict[str, Any]]]] = []
        self.accepted: list[tuple[str, list[dict[str, Any]]]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                events = json.loads(raw)["events"]
                with sink._lock:
                    queue = sink.statuses.get(self.path, [])
                    status = queue.pop(0) if queue else 200
                    sink.attempts.append((self.path, status, events))
                    if status < 300:
                        sink.accepted.append((self.path, events))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list[dict[str, Any]]:
        """Accepted events posted to `path`, in the order they arrived."""
        with self._lock:
            return [event for p, events in self.accepted if p == path for event in events]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(events := self.delivered(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(events)} of {count} events reached {path}")
            time.sleep(0.02)
        return events

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
