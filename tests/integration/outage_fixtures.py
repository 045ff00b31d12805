"""A whole local stack driven directly (faults, kills, restarts) for outage and chaos tests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from azure.storage.queue import QueueClient
from rich.console import Console

from devstack.certificates import TestCertificateAuthority
from devstack.dps_device_client import RegistrationResult, register_device
from devstack.stack import LocalStack, StackOptions
from tests.integration.iothub_fixtures import registry_manager

T = TypeVar("T")

FAST_QUEUES = {
    # Reconciliation retries every second instead of every 30 s; 5 tries before poison.
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
    "ASSET_API_BREAKER_RESET_SECONDS": "1",
}


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last: {value!r}")
        time.sleep(0.2)
        value = probe()
    return value


class OutageStack:
    def __init__(
        self,
        data_dir: Path,
        host_env: dict[str, str] | None = None,
        *,
        dps_retry_scale: float = 0.01,
        keyless: bool = False,
        function_key: str | None = None,
    ) -> None:
        options = StackOptions.on_free_ports(
            data_dir,
            keyless=keyless,
            function_key=function_key,
            dps_retry_scale=dps_retry_scale,
            event_retry_scale=0.05,
            host_env={**FAST_QUEUES, **(host_env or {})},
        )
        self.local = LocalStack(options, Console(quiet=True))
        self.d = self.local.start()
        self.tmp = data_dir / "devices"
        group = self.d["enrollmentGroups"][0]
        self.ca = TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))

    def close(self) -> None:
        from devstack.processes import stop_children

        stop_children(list(reversed(self.local.children)))

    # -- the asset system -------------------------------------------------------------------
    def assets(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.d["assetApi"], headers={"x-api-key": self.d["assetApiKey"]}, timeout=10
        )

    def faults(self, **faults: Any) -> None:
        with self.assets() as client:
            response = client.post("/devstack/faults", json=faults)
            assert response.status_code == 200, response.text

    def create_asset(self, asset_type: str, location: str) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8].upper()
        asset_id, serial = f"AST-O-{suffix}", f"SN-O-{suffix}"
        with self.assets() as client:
            response = client.put(
                f"/assets/{asset_id}",
                json={"serialNumber": serial, "assetType": asset_type, "location": location},
            )
            assert response.status_code == 201, response.text
        return asset_id, serial

    def asset(self, asset_id: str) -> dict[str, Any]:
        with self.assets() as client:
            body: dict[str, Any] = client.get(f"/assets/{asset_id}").json()
            return body

    def all_assets(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after = None
        with self.assets() as client:
            while True:
                params = {"limit": "1000", **({"after": after} if after else {})}
                page = client.get("/assets", params=params).json()
                items += page["items"]
                after = page["next"]
                if not after:
                    return items

    # -- devices ------------------------------------------------------------------------------
    async def register(
        self, registration_id: str, serial: str, payload: dict[str, Any] | None = None
    ) -> RegistrationResult:
        cert, key = self.ca.issue_device(registration_id, serial_number=serial).write(
            self.tmp, registration_id
        )
        dps = self.d["dps"]
        return await register_device(
            host=dps["host"],
            port=dps["port"],
            id_scope=dps["idScope"],
            registration_id=registration_id,
            cert_file=cert,
            key_file=key,
            ca_file=Path(self.d["tls"]["caCert"]),
            payload=payload,
            timeout=300,
        )

    def register_sync(
        self, registration_id: str, serial: str, payload: dict[str, Any] | None = None
    ) -> RegistrationResult:
        return asyncio.run(self.register(registration_id, serial, payload))

    def device_status(self, hub: str, device_id: str) -> str:
        manager = registry_manager(self.d["hubs"][hub]["connectionString"], self.d["tls"]["caCert"])
        return str(manager.get_device(device_id).status)

    def run_function(self, name: str) -> None:
        """Run a non-HTTP function now, as Core Tools' admin endpoint does (202: it runs
        in the background)."""
        with httpx.Client(base_url=self.d["functionHost"], timeout=10) as client:
            response = client.post(f"/admin/functions/{name}", json={"input": ""})
            assert response.status_code == 202, response.text

    def operator(self, *args: str) -> Any:
        """The operator CLI as an operator runs it, against this stack's storage and assets."""
        return run_operator(self.d, *args)

    def trail(self, subject: str, subject_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.operator("audit", subject, subject_id, "--json")[
            "items"
        ]
        return entries

    def twin(self, hub: str, device_id: str) -> Any:
        manager = registry_manager(self.d["hubs"][hub]["connectionString"], self.d["tls"]["caCert"])
        return manager.get_twin(device_id)

    # -- queues -------------------------------------------------------------------------------
    def queue(self, name: str) -> QueueClient:
        # Keyless, Azurite speaks HTTPS (and still takes the account key this inspection uses).
        return QueueClient.from_connection_string(
            self.d["storage"]["connectionString"], name, connection_verify=self.d["tls"]["caCert"]
        )

    def approximate_count(self, name: str) -> int:
        """Visible and invisible messages alike; 0 for a queue nobody has created yet."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            count = self.queue(name).get_queue_properties().approximate_message_count
        except ResourceNotFoundError:
            return 0
        return count or 0

    def drain_read(self, name: str, timeout: float = 10) -> list[dict[str, Any]]:
        """Every message of a queue nobody else consumes (receive, then release).

        Messages a failed attempt left invisible reappear after the visibility timeout, so
        this waits until it has seen as many as the queue says it holds.
        """
        queue = self.queue(name)
        expected = self.approximate_count(name)
        seen: dict[str, dict[str, Any]] = {}
        held = []
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            batch = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
            if not batch:
                time.sleep(0.2)
            for message in batch:
                seen[message.id] = json.loads(base64.b64decode(message.content))
                held.append(message)
        for message in held:
            queue.update_message(message, visibility_timeout=0)
        assert len(seen) >= expected, f"{name}: saw {len(seen)} of {expected} messages"
        return list(seen.values())

    def log(self, name: str) -> str:
        return Path(self.d["logs"][name]).read_text(errors="replace")


def outage_stack(
    tmp: Path,
    host_env: dict[str, str] | None = None,
    *,
    keyless: bool = False,
    function_key: str | None = None,
) -> Iterator[OutageStack]:
    stack = OutageStack(tmp, host_env, keyless=keyless, function_key=function_key)
    try:
        yield stack
    finally:
        stack.close()


def run_operator(description: dict[str, Any], *args: str) -> Any:
    """`python -m operator_cli ... --json` against a stack.json-shaped description; its JSON.

    Against a keyless stack the CLI reaches storage as the app does, with identity-based
    settings and tokens from the stack's identity endpoint."""
    storage = description["storage"]
    identity_settings = storage.get("identitySettings")
    connection = (
        {**identity_settings, "STORAGE_CA_BUNDLE": description["tls"]["caCert"]}
        if identity_settings
        else {"AzureWebJobsStorage": storage["connectionString"]}
    )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")}
    done = subprocess.run(
        [sys.executable, "-m", "operator_cli", *args],
        env={
            **inherited,
            **connection,
            "ASSET_API_URL": description["assetApi"],
            "ASSET_API_KEY": description["assetApiKey"],
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)
