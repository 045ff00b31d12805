"""IoT Hub twin-change notifications reach an Event Hub-triggered function on the dev host.

A real twin PATCH through the azure-iot-hub SDK on the IoT Hub emulator; the notification goes
through the emulator's delivery to the dev host's Event Hub endpoint, and the test app's
cardinality-many function records exactly what its trigger argument held.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready
from iothub_client import HubConnections, TwinPatch
from iothub_client.sdk_adapter import SdkIotHubRegistry
from sync.events import twin_change_from
from tests.integration.iothub_fixtures import (
    HUB_US,
    RunningIotHubEmulator,
    hub_http,
    start_iothub_emulator,
)

APPS = Path(__file__).resolve().parent / "apps"


@dataclass(frozen=True)
class Setup:
    host: Child
    emulator: RunningIotHubEmulator
    record_file: Path

    def records(self) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        lines = self.record_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, device_id: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [
                r
                for r in self.records()
                if r.get("function") == "twin_changes" and r["properties"]["deviceId"] == device_id
            ]
            if len(mine) >= count:
                return mine
            time.sleep(0.05)
        raise AssertionError(f"{count} notifications for {device_id} never arrived: {mine}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("twin-events")
    record_file = base / "records.jsonl"
    host = wait_ready(
        start_child(
            "events-host",
            "devstack.function_host",
            ["--script-root", str(APPS), "--app", "eventhub_app:app", "--port", "0"]
            + ["--settings-file", str(base / "none.json")],
            run_dir=base,
            cwd=APPS,
            env={
                "EH_RECORD_FILE": str(record_file),
                "TWIN_EVENTS_HUB": "twin-changes",
                "IotHubEventsConnection": "Endpoint=sb://devstack.servicebus.windows.net/",
            },
        )
    )
    try:
        emulator = start_iothub_emulator(
            base / "run",
            base / "data" / "iothub",
            hubs=((HUB_US, 0),),
            extra_args=["--events-url", f"{host.url}/admin/devstack/eventhubs/twin-changes"],
        )
    except Exception:
        stop_children([host])
        raise
    yield Setup(host=host, emulator=emulator, record_file=record_file)
    stop_children([emulator.child, host])


@pytest.fixture(scope="module")
def registry(setup: Setup) -> SdkIotHubRegistry:
    return SdkIotHubRegistry(
        HubConnections.from_connection_strings({HUB_US: setup.emulator.connection_string(HUB_US)}),
        timeout_seconds=5,
        ca_bundle=setup.emulator.ca_cert,
    )


def new_device(setup: Setup) -> str:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    manager = setup.emulator.registry_manager(HUB_US)
    manager.create_device_with_certificate_authority(device_id, "enabled")
    return device_id


async def test_a_twin_patch_reaches_the_function_with_iot_hubs_properties(setup, registry):
    device_id = new_device(setup)
    twin = await registry.get_twin(HUB_US, device_id)
    updated = await registry.update_twin(
        HUB_US,
        device_id,
        TwinPatch(tags={"assetId": "AST-7"}, desired={"firmware": {"target": "2.1.0"}}),
        etag=twin.etag,
    )
    [event] = setup.wait_for(device_id, 1)

    assert event["is_list"] is True  # cardinality many: a list of func.EventHubEvent
    assert event["properties"] == {
        "hubName": "hub-us-east",
        "deviceId": device_id,
        "operationTimestamp": event["properties"]["operationTimestamp"],
        "iothub-message-schema": "twinChangeNotification",
        "opType": "updateTwin",
    }
    assert event["properties"]["operationTimestamp"].endswith("Z")
    metadata = event["iothub_metadata"]
    assert metadata["message-source"] == "twinChangeEvents"
    assert metadata["connection-device-id"] == device_id
    assert metadata["enqueuedtime"]
    assert event["system_properties"]["content-type"] == "application/json"
    assert event["system_properties"]["content-encoding"] == "utf-8"

    body = json.loads(event["body"])
    assert body["version"] == updated.version
    assert body["tags"] == {"assetId": "AST-7"}
    desired = body["properties"]["desired"]
    assert desired["firmware"] == {"target": "2.1.0"}
    assert desired["$version"] == updated.desired_version
    assert "firmware" in desired["$metadata"]
    assert "reported" not in body["properties"]


async def test_removed_keys_arrive_as_null_and_identical_writes_still_notify(setup, registry):
    device_id = new_device(setup)
    await registry.update_twin(HUB_US, device_id, TwinPatch(tags={"a": 1, "b": 2}), etag=None)
    await registry.update_twin(HUB_US, device_id, TwinPatch(tags={"a": None}), etag=None)
    await registry.update_twin(HUB_US, device_id, TwinPatch(tags={"b": 2}), etag=None)
    first, removal, identical = setup.wait_for(device_id, 3)
    assert json.loads(removal["body"])["tags"] == {"a": None}
    assert json.loads(identical["body"])["tags"] == {"b": 2}
    versions = [json.loads(e["body"])["version"] for e in (first, removal, identical)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


async def test_a_device_reported_update_is_a_notification_too(setup, registry):
    device_id = new_device(setup)
    with hub_http(setup.emulator.connection_string(HUB_US), setup.emulator.ca_cert) as http:
        response = http.patch(
            f"/devstack/twins/{device_id}/reported", json={"firmwareVersion": "2.1.0"}
        )
        assert response.status_code < 300, response.text
    [event] = setup.wait_for(device_id, 1)
    body = json.loads(event["body"])
    assert body["properties"]["reported"]["firmwareVersion"] == "2.1.0"
    assert event["properties"]["opType"] == "updateTwin"
    assert (await registry.get_twin(HUB_US, device_id)).reported == {"firmwareVersion": "2.1.0"}
    # What the function received passes sync's check of IoT Hub's system properties.
    change = twin_change_from(event["body"].encode(), event["properties"], event["iothub_metadata"])
    assert (change.device_id, change.reported) == (device_id, {"firmwareVersion": "2.1.0"})


async def test_a_replace_is_a_replace_twin_notification_with_the_full_twin(setup):
    device_id = new_device(setup)
    from azure.iot.hub.models import Twin, TwinProperties

    manager = setup.emulator.registry_manager(HUB_US)
    manager.replace_twin(
        device_id, Twin(tags={"whole": True}, properties=TwinProperties(desired={"x": 1}))
    )
    [event] = setup.wait_for(device_id, 1)
    assert event["properties"]["opType"] == "replaceTwin"
    body = json.loads(event["body"])
    assert body["deviceId"] == device_id
    assert body["tags"] == {"whole": True}
    assert body["properties"]["desired"]["x"] == 1
