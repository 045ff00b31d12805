"""A device's whole journey: Microsoft's Node device client -> DPS emulator -> allocation
webhook (dev functions host + asset service) -> IoT Hub emulator, checked with azure-iot-hub."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from azure.iot.hub.models import Twin, TwinProperties
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msrest.exceptions import HttpOperationError

from devstack.dps_device_client import register_device
from devstack.dps_requests import allocation_request
from devstack.enrollment import REPO_ROOT, cli_environment
from tests.integration.conftest import ASSET_KEY, FUNCTION_KEY
from tests.integration.journey_fixtures import (
    EAST,
    NODE_HARNESS,
    WEST,
    DeviceCredentials,
    Journey,
    issue_device,
    journey_stack,  # noqa: F401 - the module's stack fixture, named "journey"
    register_with_node,
)

pytestmark = pytest.mark.slow

FLEET_SIZE = 300


def new_asset(journey: Journey, location: str, asset_type: str = "valve-actuator") -> str:
    """A fresh asset; returns its serial number."""
    suffix = uuid.uuid4().hex[:8]
    serial = f"SN-J-{suffix}"
    with journey.asset_client() as client:
        response = client.put(
            f"/assets/AST-J-{suffix}",
            json={"serialNumber": serial, "assetType": asset_type, "location": location},
        )
        assert response.status_code == 201, response.text
    return serial


def move_asset(journey: Journey, serial: str, location: str) -> None:
    """Change the asset's location the way an asset system user does: PATCH with If-Match."""
    with journey.asset_client() as client:
        [asset] = client.get("/assets", params={"serialNumber": serial}).json()["items"]
        current = client.get(f"/assets/{asset['assetId']}")
        response = client.patch(
            f"/assets/{asset['assetId']}",
            json={"location": location},
            headers={
                "If-Match": current.headers["etag"],
                "Content-Type": "application/merge-patch+json",
            },
        )
        assert response.status_code == 200, response.text


def webhook_answer(journey: Journey, device: DeviceCredentials, current_hub: str) -> Any:
    """Ask the allocation webhook directly what it answers for this device now."""
    certificate = x509.load_pem_x509_certificate(device.cert.read_bytes())
    der = certificate.public_bytes(serialization.Encoding.DER)
    body = allocation_request(
        device.registration_id,
        x509={"clientCertificate": base64.b64encode(der).decode()},
        current_hub=current_hub,
    )
    response = httpx.post(
        f"{journey.host.url}/api/allocate", params={"code": FUNCTION_KEY}, json=body, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def desired(twin: Any) -> dict[str, Any]:
    return {k: v for k, v in (twin.properties.desired or {}).items() if not k.startswith("$")}


def absent(journey: Journey, hub: str, device_id: str) -> bool:
    try:
        journey.registry(hub).get_device(device_id)
    except HttpOperationError as exc:
        return bool(exc.response.status_code == 404)
    return False


def node_register(journey: Journey, device: DeviceCredentials) -> dict[str, Any]:
    done = register_with_node(journey.dps, device, journey.tls.ca_cert)
    assert done.returncode == 0, done.stderr
    assert done.state is not None
    return done.state


def annotate_twin(journey: Journey, hub: str, device_id: str) -> Any:
    """An operator's change on the twin, which DPS must keep or migrate, never overwrite."""
    manager = journey.registry(hub)
    twin = manager.get_twin(device_id)
    patch = Twin(
        tags={"operatorNote": "recalibrated"},
        properties=TwinProperties(desired={"samplingSeconds": 30}),
    )
    manager.update_twin(device_id, patch, twin.etag)
    return manager.get_twin(device_id)


def test_microsofts_node_client_onboards_a_seeded_device(journey: Journey, tmp_path: Path):
    device = issue_device(
        journey.groups["default"], "sensor-1003", tmp_path, serial_number="SN-1003"
    )
    state = node_register(journey, device)

    assert state["status"] == "assigned"
    assert state["assignedHub"] == EAST
    assert state["deviceId"] == "sensor-1003"
    assert state["registrationId"] == "sensor-1003"
    assert state["substatus"] == "initialAssignment"
    assert state["payload"] == {
        "deviceRole": "actuator",
        "provisioningState": "provisioned",
        "assetId": "AST-1003",
    }
    assert state["x509"]["enrollmentGroupId"] == "devstack-x509"

    registry = journey.registry(EAST)
    identity = registry.get_device("sensor-1003")
    assert identity.device_id == "sensor-1003"
    assert identity.authentication.type == "certificateAuthority"
    assert identity.status == "enabled"
    assert absent(journey, WEST, "sensor-1003")

    twin = registry.get_twin("sensor-1003")
    answer = webhook_answer(journey, device, current_hub=EAST)
    assert answer["iotHubHostName"] == EAST
    assert twin.tags == answer["initialTwin"]["tags"]
    assert desired(twin) == answer["initialTwin"]["properties"]["desired"]
    assert twin.tags["assetId"] == "AST-1003"
    assert twin.tags["deviceRole"] == "actuator"
    assert twin.tags["location"] == "us-east/plant-2/line-1"
    assert twin.tags["provisioningState"] == "provisioned"
    assert desired(twin)["rolePermissions"]["role"] == "actuator"

    with journey.asset_client() as client:
        asset = client.get("/assets/AST-1003").json()
    assert asset["deviceId"] == "sensor-1003"


def test_reregistration_to_the_same_hub_leaves_the_twin_alone(journey: Journey, tmp_path: Path):
    serial = new_asset(journey, "us-east/plant-9/line-1")
    device = issue_device(journey.groups["migrate"], "same-hub-1", tmp_path, serial_number=serial)
    node_register(journey, device)
    before = annotate_twin(journey, EAST, "same-hub-1")

    again = node_register(journey, device)

    assert again["assignedHub"] == EAST
    assert again["substatus"] == "initialAssignment"
    after = journey.registry(EAST).get_twin("same-hub-1")
    assert after.tags == before.tags
    assert after.tags["operatorNote"] == "recalibrated"
    assert after.properties.desired == before.properties.desired
    assert desired(after)["samplingSeconds"] == 30


def test_a_hub_change_under_migrate_copies_the_twin(journey: Journey, tmp_path: Path):
    serial = new_asset(journey, "us-east/plant-9/line-2")
    device = issue_device(journey.groups["migrate"], "migrating-1", tmp_path, serial_number=serial)
    node_register(journey, device)
    old = annotate_twin(journey, EAST, "migrating-1")
    move_asset(journey, serial, "eu-west/site-z/hall-1")

    moved = node_register(journey, device)

    assert moved["assignedHub"] == WEST
    assert moved["substatus"] == "deviceDataMigrated"
    assert moved["payload"]["deviceRole"] == "actuator"
    twin = journey.registry(WEST).get_twin("migrating-1")
    # The webhook answered with the new location; DPS migrates the old twin instead.
    assert webhook_answer(journey, device, WEST)["initialTwin"]["tags"]["location"] == (
        "eu-west/site-z/hall-1"
    )
    assert twin.tags == old.tags
    assert twin.tags["location"] == "us-east/plant-9/line-2"
    assert desired(twin) == desired(old)
    assert journey.registry(WEST).get_device("migrating-1").authentication.type == (
        "certificateAuthority"
    )
    assert absent(journey, EAST, "migrating-1")


def test_a_hub_change_under_reset_applies_the_initial_twin(journey: Journey, tmp_path: Path):
    serial = new_asset(journey, "us-east/plant-9/line-3")
    device = issue_device(journey.groups["reset"], "resetting-1", tmp_path, serial_number=serial)
    node_register(journey, device)
    annotate_twin(journey, EAST, "resetting-1")
    move_asset(journey, serial, "eu-west/site-z/hall-2")

    moved = node_register(journey, device)

    assert moved["assignedHub"] == WEST
    assert moved["substatus"] == "deviceDataReset"
    twin = journey.registry(WEST).get_twin("resetting-1")
    answer = webhook_answer(journey, device, WEST)
    assert twin.tags == answer["initialTwin"]["tags"]
    assert twin.tags["location"] == "eu-west/site-z/hall-2"
    assert "operatorNote" not in twin.tags
    assert desired(twin) == answer["initialTwin"]["properties"]["desired"]
    assert "samplingSeconds" not in desired(twin)
    assert absent(journey, EAST, "resetting-1")


def test_never_reprovision_keeps_the_device_where_it_is(journey: Journey, tmp_path: Path):
    serial = new_asset(journey, "us-east/plant-9/line-4")
    device = issue_device(journey.groups["never"], "staying-1", tmp_path, serial_number=serial)
    node_register(journey, device)
    before = annotate_twin(journey, EAST, "staying-1")
    move_asset(journey, serial, "eu-west/site-z/hall-3")

    again = node_register(journey, device)

    assert again["assignedHub"] == EAST
    assert again["substatus"] == "initialAssignment"
    after = journey.registry(EAST).get_twin("staying-1")
    assert after.tags == before.tags
    assert after.properties.desired == before.properties.desired
    assert absent(journey, WEST, "staying-1")


@pytest.mark.timeout(60)
def test_the_node_client_in_fleet_mode_reports_each_device(journey: Journey, tmp_path: Path):
    """Fleet mode (the journey benchmark's driver): one Node process, one line per device."""
    fleet = []
    for n in range(2):
        serial = new_asset(journey, "eu-west/fleet-mode/hall-1", "humidity-sensor")
        device = issue_device(
            journey.groups["default"],
            f"fm-{uuid.uuid4().hex[:6]}-{n}",
            tmp_path,
            serial_number=serial,
        )
        fleet.append(
            {
                "registrationId": device.registration_id,
                "cert": str(device.cert),
                "key": str(device.key),
            }
        )
    # A registration id its certificate does not name: DPS refuses it, the others go on.
    fleet.append({**fleet[0], "registrationId": "someone-else"})
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps(fleet))
    command = [
        "node",
        str(NODE_HARNESS),
        "--host",
        "127.0.0.1",
        "--port",
        str(journey.dps.info["port"]),
    ]
    command += ["--id-scope", journey.dps.info["idScope"], "--ca", str(journey.tls.ca_cert)]
    done = subprocess.run(
        [*command, "--fleet", str(fleet_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {line["registrationId"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {member["registrationId"] for member in fleet}
    for member in fleet[:2]:
        line = lines[member["registrationId"]]
        assert line["result"]["status"] == "assigned", line
        assert line["result"]["assignedHub"] == WEST
        assert line["result"]["payload"]["deviceRole"] == "sensor"
        assert line["ms"] > 0
    refused = lines["someone-else"]
    assert "result" not in refused
    assert refused["error"]["statusCode"] == 401, refused


async def test_three_hundred_devices_register_at_once(journey: Journey, tmp_path: Path):
    run = uuid.uuid4().hex[:6]
    locations = {EAST: "us-east/fleet/line-1", WEST: "eu-west/fleet/hall-1"}
    fleet: list[tuple[DeviceCredentials, str]] = []
    async with httpx.AsyncClient(
        base_url=journey.assets.url, headers={"x-api-key": ASSET_KEY}, timeout=20
    ) as assets:
        puts = []
        for index in range(FLEET_SIZE):
            hub = EAST if index % 2 else WEST
            serial = f"SN-F{run}-{index:04d}"
            puts.append(
                assets.put(
                    f"/assets/AST-F{run}-{index:04d}",
                    json={
                        "serialNumber": serial,
                        "assetType": "pump-actuator" if index % 3 == 0 else "humidity-sensor",
                        "location": locations[hub],
                    },
                )
            )
            device = issue_device(
                journey.groups["default"],
                f"fleet-{run}-{index:04d}",
                tmp_path,
                serial_number=serial,
            )
            fleet.append((device, hub))
        assert {r.status_code for r in await asyncio.gather(*puts)} == {201}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.gather(
            *(
                register_device(
                    host="127.0.0.1",
                    port=journey.dps.info["port"],
                    id_scope=journey.dps.info["idScope"],
                    registration_id=device.registration_id,
                    cert_file=device.cert,
                    key_file=device.key,
                    ca_file=journey.tls.ca_cert,
                    session=session,
                    timeout=50,
                )
                for device, _ in fleet
            )
        )

    failures = [r.registration_state for r in results if r.status != "assigned"]
    assert failures == []
    assert [r.assigned_hub for r in results] == [hub for _, hub in fleet]
    assert [r.device_id for r in results] == [d.registration_id for d, _ in fleet]
    for device, hub in fleet[:: FLEET_SIZE // 10]:
        twin = journey.registry(hub).get_twin(device.registration_id)
        assert twin.tags["location"] == locations[hub]


def test_the_node_client_registers_against_the_group_enrollment_apply_created(
    journey: Journey, tmp_path: Path
):
    """The default group came in through `python -m operator_cli enrollment apply`: DPS lists
    it with the webhook URL masked, and its signing CA is the one that admitted the device."""
    env = cli_environment(
        journey.dps.info, webhook_url=f"{journey.host.url}/api/allocate", function_key=None
    )
    listed = subprocess.run(
        [sys.executable, "-m", "operator_cli", "enrollment", "list", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert FUNCTION_KEY not in listed.stdout
    groups = {group["enrollmentGroupId"]: group for group in json.loads(listed.stdout)}
    group = groups["devstack-x509"]
    assert group["etag"]
    assert group["customAllocationDefinition"]["webhookUrl"].endswith("/api/allocate?****")
    signer = group["attestation"]["x509"]["signingCertificates"]["primary"]["info"]

    device = issue_device(
        journey.groups["default"], "sensor-1002", tmp_path, serial_number="SN-1002"
    )
    state = node_register(journey, device)

    assert state["status"] == "assigned"
    assert state["x509"]["enrollmentGroupId"] == "devstack-x509"
    admitted_by = state["x509"]["signingCertificateInfo"]["sha256Thumbprint"]
    assert admitted_by == signer["sha256Thumbprint"]
