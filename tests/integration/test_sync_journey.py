"""Assets and twins in sync both ways, on the running devstack, with the real SDKs.

Every write is counted: twin writes by the twin's version, asset writes by the asset's version.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from azure.storage.queue import QueueClient

from asset_client import Asset
from device_twin import asset_owned_fields
from devstack.certificates import TestCertificateAuthority
from devstack.dps_device_client import register_device
from policies import load_policy
from roles import assign_role
from tests.integration.devstack_fixtures import REPO, devstack
from tests.integration.iothub_fixtures import hub_http, registry_manager

pytestmark = pytest.mark.slow

__all__ = ["devstack"]
T = TypeVar("T")
EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


def owned_hash(asset: dict[str, Any], public_url: str) -> str:
    policy = load_policy(REPO / "policies" / "demo.toml")
    model = Asset.model_validate(asset)
    role = assign_role(model.asset_type, policy.role_rules, policy.default_role)
    return asset_owned_fields(model, role, public_url).content_hash()


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 15) -> T:
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s; last: {value!r}")
        time.sleep(0.1)
        value = probe()
    return value


class Stack:
    def __init__(self, description: dict[str, Any]) -> None:
        self.d = description
        self.assets = httpx.Client(
            base_url=description["assetApi"],
            headers={"x-api-key": description["assetApiKey"]},
            timeout=10,
        )
        self.ca = description["tls"]["caCert"]

    def create_asset(self, asset_type: str, location: str) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8].upper()
        asset_id, serial = f"AST-S-{suffix}", f"SN-S-{suffix}"
        response = self.assets.put(
            f"/assets/{asset_id}",
            json={"serialNumber": serial, "assetType": asset_type, "location": location},
        )
        assert response.status_code == 201, response.text
        return asset_id, serial

    def asset(self, asset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.assets.get(f"/assets/{asset_id}").json()
        return body

    def patch_asset(
        self, asset_id: str, patch: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """`headers`: sent too (e.g. a `traceparent`)."""
        for _ in range(10):
            version = self.asset(asset_id)["version"]
            response = self.assets.patch(
                f"/assets/{asset_id}",
                json=patch,
                headers={
                    "if-match": f'"{version}"',
                    "content-type": "application/merge-patch+json",
                    **(headers or {}),
                },
            )
            if response.status_code != 412:
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body
        raise AssertionError("asset kept changing")

    def provision(self, registration_id: str, serial: str, tmp: Path) -> str:
        group = self.d["enrollmentGroups"][0]
        ca = TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))
        cert, key = ca.issue_device(registration_id, serial_number=serial).write(
            tmp, registration_id
        )
        dps = self.d["dps"]
        result = asyncio.run(
            register_device(
                host=dps["host"],
                port=dps["port"],
                id_scope=dps["idScope"],
                registration_id=registration_id,
                cert_file=cert,
                key_file=key,
                ca_file=Path(self.ca),
            )
        )
        assert result.status == "assigned", result.registration_state
        hub: str = result.registration_state["assignedHub"]
        return hub

    def twin(self, hub: str, device_id: str) -> Any:
        manager = registry_manager(self.d["hubs"][hub]["connectionString"], self.ca)
        return manager.get_twin(device_id)

    def report(self, hub: str, device_id: str, reported: dict[str, Any]) -> None:
        with hub_http(self.d["hubs"][hub]["connectionString"], self.ca) as http:
            response = http.patch(f"/devstack/twins/{device_id}/reported", json=reported)
            assert response.status_code < 300, response.text

    def pending_asset_events(self) -> int:
        items = self.assets.get("/devstack/events", params={"status": "pending"}).json()["items"]
        return len(items)

    def settle(self, hub: str, device_id: str, asset_id: str, quiet: float = 1.5) -> None:
        """Wait until nothing is pending and neither side has changed for `quiet` seconds."""
        eventually(self.pending_asset_events, lambda n: n == 0, timeout=30)
        last = (self.twin(hub, device_id).version, self.asset(asset_id)["version"])
        stable_since = time.monotonic()
        while time.monotonic() - stable_since < quiet:
            time.sleep(0.2)
            now = (self.twin(hub, device_id).version, self.asset(asset_id)["version"])
            if now != last:
                last, stable_since = now, time.monotonic()
        eventually(self.pending_asset_events, lambda n: n == 0, timeout=30)


@pytest.fixture(scope="module")
def stack(devstack: dict[str, Any]) -> Stack:
    return Stack(devstack)


@pytest.fixture
def device(stack: Stack, tmp_path: Path) -> tuple[str, str, str]:
    """A freshly provisioned sensor through DPS: (hub, device id, asset id), settled."""
    asset_id, serial = stack.create_asset("temperature-sensor", "us-east/plant-4/line-1")
    device_id = f"sync-{uuid.uuid4().hex[:8]}"
    hub = stack.provision(device_id, serial, tmp_path)
    assert hub == EAST
    stack.settle(hub, device_id, asset_id)
    return hub, device_id, asset_id


def test_a_location_change_reaches_the_twin_with_one_write_and_no_echo(stack, device):
    hub, device_id, asset_id = device
    twin_before = stack.twin(hub, device_id).version
    patched = stack.patch_asset(asset_id, {"location": "us-east/plant-4/line-9"})
    started = time.monotonic()
    twin = eventually(
        lambda: stack.twin(hub, device_id),
        lambda t: t.tags.get("location") == "us-east/plant-4/line-9",
    )
    assert time.monotonic() - started < 5
    stack.settle(hub, device_id, asset_id)
    twin = stack.twin(hub, device_id)
    assert twin.version == twin_before + 1, "exactly one twin write"
    assert twin.tags["sync"]["assetVersion"] == patched["version"]
    assert stack.asset(asset_id)["version"] == patched["version"], "the echo wrote nothing back"


def test_a_reported_firmware_version_updates_the_asset_once_and_writes_no_twin(stack, device):
    hub, device_id, asset_id = device
    asset_before = stack.asset(asset_id)["version"]
    stack.report(hub, device_id, {"firmwareVersion": "3.1.4"})
    twin_after_report = stack.twin(hub, device_id).version
    asset = eventually(
        lambda: stack.asset(asset_id),
        lambda a: a["attributes"].get("firmwareVersion") == "3.1.4",
    )
    stack.settle(hub, device_id, asset_id)
    assert stack.asset(asset_id)["version"] == asset_before + 1 == asset["version"]
    assert stack.twin(hub, device_id).version == twin_after_report, "no twin write followed"
    # The same report again (IoT Hub still raises an event) writes nothing.
    stack.report(hub, device_id, {"firmwareVersion": "3.1.4"})
    stack.settle(hub, device_id, asset_id)
    assert stack.asset(asset_id)["version"] == asset_before + 1


def test_an_asset_type_change_gives_a_provisioned_device_its_new_role(stack, device):
    hub, device_id, asset_id = device
    assert stack.twin(hub, device_id).tags["deviceRole"] == "sensor"
    stack.patch_asset(asset_id, {"assetType": "edge-gateway"})
    twin = eventually(
        lambda: stack.twin(hub, device_id), lambda t: t.tags.get("deviceRole") == "gateway"
    )
    permissions = twin.properties.desired["rolePermissions"]
    assert permissions == {
        "role": "gateway",
        "telemetry": {"send": True, "aggregate": True},
        "commands": {"receive": True, "relay": True},
        "configuration": "full",
        "deviceManagement": True,
    }


def test_duplicated_and_out_of_order_events_leave_the_twin_at_the_newest(stack, device):
    hub, device_id, asset_id = device
    for n in range(3):
        stack.patch_asset(asset_id, {"location": f"us-east/plant-4/line-{20 + n}"})
    final = stack.asset(asset_id)
    stack.settle(hub, device_id, asset_id)
    twin_version = stack.twin(hub, device_id).version
    # Deliver every event of this asset again, oldest first: stale, duplicated, reordered.
    events = stack.assets.get("/devstack/events", params={"status": "delivered", "limit": 1000})
    mine = [e["id"] for e in events.json()["items"] if e["event"]["data"]["assetId"] == asset_id]
    assert len(mine) >= 4
    response = stack.assets.post("/devstack/events/redeliver", json={"ids": mine[::-1] + mine})
    assert response.status_code == 200, response.text
    stack.settle(hub, device_id, asset_id)
    twin = stack.twin(hub, device_id)
    assert twin.tags["location"] == final["location"] == "us-east/plant-4/line-22"
    assert twin.tags["sync"]["assetVersion"] == final["version"]
    assert twin.version == twin_version, "replayed events caused no write"


def test_concurrent_asset_and_device_changes_converge_without_lost_updates(stack, device):
    hub, device_id, asset_id = device
    for round_ in range(4):
        location = f"us-east/plant-5/line-{round_}"
        firmware = f"4.0.{round_}"
        stack.report(hub, device_id, {"firmwareVersion": firmware, "health": f"h{round_}"})
        stack.patch_asset(asset_id, {"location": location, "attributes": {"note": str(round_)}})
    stack.settle(hub, device_id, asset_id)
    asset = stack.asset(asset_id)
    twin = stack.twin(hub, device_id)
    assert asset["location"] == twin.tags["location"] == "us-east/plant-5/line-3"
    assert asset["attributes"]["firmwareVersion"] == "4.0.3"
    assert asset["attributes"]["health"] == "h3"
    assert asset["attributes"]["note"] == "3", "the operator's attribute survived the merges"
    assert twin.properties.reported["firmwareVersion"] == "4.0.3"
    # The last asset write was the copied firmware, which no twin field depends on: the marker
    # stays at the last version that changed twin content, and that content is the asset's.
    assert twin.tags["sync"]["assetVersion"] <= asset["version"]
    assert twin.tags["sync"]["hash"] == owned_hash(asset, stack.d["assetApi"])


def test_a_move_to_another_hubs_region_flags_the_device_for_reprovisioning(stack, device):
    hub, device_id, asset_id = device
    stack.patch_asset(asset_id, {"location": "eu-west/site-c"})
    twin = eventually(
        lambda: stack.twin(hub, device_id),
        lambda t: "reprovision" in (t.properties.desired or {}),
    )
    request = twin.properties.desired["reprovision"]
    assert request["required"] is True
    assert request["targetHub"] == WEST
    assert twin.tags["location"] == "eu-west/site-c"


def test_a_cloud_event_drives_the_same_sync(stack, device):
    hub, device_id, asset_id = device
    # Change the asset without its own event reaching the function: deliver a CloudEvent by hand.
    patched = stack.patch_asset(asset_id, {"location": "us-east/plant-6/line-1"})
    cloud_event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/devstack/assetManagement",
        "type": "AssetManagement.AssetChanged",
        "subject": f"/assets/{asset_id}",
        "time": "2026-11-26T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"assetId": asset_id, "version": patched["version"]},
    }
    response = httpx.post(
        f"{stack.d['functionHost']}/runtime/webhooks/eventgrid",
        params={"functionName": "asset_changed"},
        json=cloud_event,
        headers={"aeg-event-type": "Notification", "content-type": "application/cloudevents+json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    twin = stack.twin(hub, device_id)
    assert twin.tags["location"] == "us-east/plant-6/line-1"


def test_a_spoofed_event_is_refused_and_recorded_not_applied(stack, device):
    hub, device_id, asset_id = device
    before = stack.twin(hub, device_id).version
    spoof = [
        {
            "id": str(uuid.uuid4()),
            "subject": f"/assets/{asset_id}",
            "eventType": "AssetManagement.AssetChanged",
            "eventTime": "2026-11-26T00:00:00Z",
            "dataVersion": "1.0",
            "data": {"assetId": "AST-1001", "version": 99},
        }
    ]
    response = httpx.post(
        f"{stack.d['functionHost']}/runtime/webhooks/eventgrid",
        params={"functionName": "asset_changed"},
        json=spoof,
        headers={"aeg-event-type": "Notification"},
        timeout=10,
    )
    assert response.status_code == 200, "a bad event is acknowledged, not retried forever"
    assert stack.twin(hub, device_id).version == before
    from azure.storage.queue import QueueClient

    # A bad event cannot get better by retrying: it goes straight to the dead letters.
    queue = QueueClient.from_connection_string(
        stack.d["storage"]["connectionString"], "dead-letters"
    )
    import base64
    import json

    messages = [
        json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)
    ]
    assert any(
        m["kind"] == "assetChange"
        and m["source"] == "sync"
        and m["replayable"] is False
        and "contradicts" in m["detail"]
        for m in messages
    )


def test_an_etag_conflict_on_the_twin_is_reread_and_reapplied(stack, device):
    hub, device_id, asset_id = device
    before = stack.twin(hub, device_id).version
    with hub_http(stack.d["hubs"][hub]["connectionString"], stack.ca) as http:
        fault = {"status": 412, "count": 2, "pathPrefix": f"/twins/{device_id}", "method": "PATCH"}
        assert http.post("/devstack/faults", json=fault).status_code < 300
    stack.patch_asset(asset_id, {"location": "us-east/plant-7/line-7"})
    twin = eventually(
        lambda: stack.twin(hub, device_id),
        lambda t: t.tags.get("location") == "us-east/plant-7/line-7",
    )
    stack.settle(hub, device_id, asset_id)
    assert stack.twin(hub, device_id).version == before + 1 == twin.version


# --- untrusted reports and forged events, delivered as the Event Hubs trigger would -------------

HOSTILE = "Zq7\u2603"
"""In the hostile value only: it must appear in no audit entry."""


def twin_change_event(
    device_id: str, reported: dict[str, Any], sequence: int, *, system: bool = True
) -> dict[str, Any]:
    """A twin change notification as IoT Hub routes it to its built-in Event Hub endpoint;
    without `system`, what a sender with only the Event Hub's send rights could forge."""
    enqueued = "2026-11-26T05:00:00.1234567Z"
    return {
        "body": json.dumps({"version": sequence, "properties": {"reported": reported}}),
        "properties": {
            "hubName": "hub-us-east",
            "deviceId": device_id,
            "opType": "updateTwin",
            "iothub-message-schema": "twinChangeNotification",
            "operationTimestamp": enqueued,
        },
        "systemProperties": (
            {
                "iothub-message-source": "twinChangeEvents",
                "iothub-connection-device-id": device_id,
                "iothub-enqueuedtime": enqueued,
                "content-type": "application/json",
                "content-encoding": "utf-8",
            }
            if system
            else {"content-type": "application/json"}
        ),
        "enqueuedTimeUtc": enqueued,
    }


def deliver(stack: Stack, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch to the dev host's Event Hub endpoint; answers once the function has run."""
    response = httpx.post(
        f"{stack.d['functionHost']}/admin/devstack/eventhubs/{stack.d['twinEventsHub']}",
        json={"events": events},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def operator(stack: Stack, *args: str) -> Any:
    completed = subprocess.run(
        [sys.executable, "-m", "operator_cli", *args],
        cwd=REPO,
        env={**os.environ, "AzureWebJobsStorage": stack.d["storage"]["connectionString"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout)


def audit_of(stack: Stack, device_id: str, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = operator(stack, "audit", "device", device_id, "--json")["items"]
    return [entry for entry in entries if entry["action"] == action]


@pytest.fixture
def second_device(stack: Stack, tmp_path: Path) -> tuple[str, str, str]:
    asset_id, serial = stack.create_asset("temperature-sensor", "us-east/plant-4/line-2")
    device_id = f"sync-{uuid.uuid4().hex[:8]}"
    hub = stack.provision(device_id, serial, tmp_path)
    stack.settle(hub, device_id, asset_id)
    return hub, device_id, asset_id


def test_a_hostile_report_is_refused_and_audited_while_its_batch_is_written(
    stack, device, second_device
):
    hub, device_id, asset_id = device
    _, other_id, other_asset = second_device
    hostile = {"firmwareVersion": "7.0.1", "health": f"\x1b[2J{HOSTILE}" + "x" * 5000}
    result = deliver(
        stack,
        [
            twin_change_event(device_id, hostile, 900),
            twin_change_event(other_id, {"health": "ok-7"}, 901),
        ],
    )
    assert (result["invocations"], result["failed"]) == (1, 0), "one batch, not poisoned"

    asset = stack.asset(asset_id)
    assert asset["attributes"]["firmwareVersion"] == "7.0.1", "the valid field is written"
    assert "health" not in asset["attributes"], "the invalid one is not"
    assert stack.asset(other_asset)["attributes"]["health"] == "ok-7", "the batch went on"

    [refusal] = eventually(
        lambda: audit_of(stack, device_id, "sync.refused"), lambda found: len(found) >= 1
    )
    assert (refusal["actor"], refusal["outcome"]) == ("twin-sync", "invalid reported value")
    assert refusal["assetId"] == asset_id
    assert refusal["details"]["field"] == "health"
    assert refusal["details"]["violation"] == "length outside 1-32"
    assert refusal["details"]["rule"].startswith("a string of 1-32 characters")
    assert HOSTILE not in json.dumps(refusal)
    log = Path(stack.d["logs"]["function-host"]).read_text(errors="replace")
    assert HOSTILE not in log, "nor in the host's log"
    assert "reportInvalid" in log
    stack.settle(hub, device_id, asset_id)


def test_a_forged_twin_change_changes_nothing_and_is_dead_lettered(stack, device):
    _, device_id, asset_id = device
    before = stack.asset(asset_id)
    forged = twin_change_event(device_id, {"firmwareVersion": "6.6.6"}, 902, system=False)
    result = deliver(stack, [forged])
    assert (result["invocations"], result["failed"]) == (1, 0)
    after = stack.asset(asset_id)
    assert after["version"] == before["version"], "nothing was written"
    assert "firmwareVersion" not in after["attributes"]

    # Peeked, as an operator's listing would hide the messages for a while.
    queue = QueueClient.from_connection_string(
        stack.d["storage"]["connectionString"], "dead-letters"
    )
    letters = [
        json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)
    ]
    mine = [
        letter
        for letter in letters
        if (letter.get("request") or {}).get("properties", {}).get("deviceId") == device_id
    ]
    assert len(mine) == 1, letters
    [letter] = mine
    assert (letter["kind"], letter["source"], letter["reason"]) == (
        "twinChange",
        "sync",
        "invalid event",
    )
    assert letter["replayable"] is False
    assert "iothub-message-source" in letter["detail"]
    assert letter["request"]["systemProperties"] == {}, "kept as it arrived, for the operator"
