"""Hardware replacement through the DPS emulator, with real certificates, on the whole stack."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from devstack.certificates import TestCertificateAuthority
from devstack.dps_device_client import RegistrationResult, register_device
from tests.integration.devstack_fixtures import devstack
from tests.integration.iothub_fixtures import registry_manager
from tests.integration.outage_fixtures import eventually, run_operator

pytestmark = pytest.mark.slow

__all__ = ["devstack"]


class Journey:
    def __init__(self, description: dict[str, Any], tmp: Path) -> None:
        self.d = description
        self.tmp = tmp
        group = description["enrollmentGroups"][0]
        self.ca = TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))
        self.assets = httpx.Client(
            base_url=description["assetApi"],
            headers={"x-api-key": description["assetApiKey"]},
            timeout=10,
        )

    def register(
        self, device_id: str, serial: str, payload: dict[str, Any] | None = None
    ) -> RegistrationResult:
        cert, key = self.ca.issue_device(device_id, serial_number=serial).write(self.tmp, device_id)
        dps = self.d["dps"]
        return asyncio.run(
            register_device(
                host=dps["host"],
                port=dps["port"],
                id_scope=dps["idScope"],
                registration_id=device_id,
                cert_file=cert,
                key_file=key,
                ca_file=Path(self.d["tls"]["caCert"]),
                payload=payload,
            )
        )

    def asset(self, asset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.assets.get(f"/assets/{asset_id}").json()
        return body

    def history(self, asset_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.assets.get(f"/assets/{asset_id}/history").json()["items"]
        return items

    def operator(self, *args: str) -> Any:
        """The operator CLI as an operator runs it, against this stack's storage and assets."""
        return run_operator(self.d, *args)

    def trail(self, subject: str, subject_id: str, count: int) -> list[dict[str, Any]]:
        """The audit timeline, once the audit writer has stored at least `count` entries."""
        entries: list[dict[str, Any]] = eventually(
            lambda: self.operator("audit", subject, subject_id, "--json")["items"],
            lambda found: len(found) >= count,
        )
        return entries

    def device(self, hub: str, device_id: str) -> Any:
        manager = registry_manager(self.d["hubs"][hub]["connectionString"], self.d["tls"]["caCert"])
        return manager.get_device(device_id)


@pytest.fixture(scope="module")
def journey(devstack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Journey:
    return Journey(devstack, tmp_path_factory.mktemp("devices"))


def test_an_approved_replacement_keeps_the_asset_and_retires_the_old_device(journey):
    suffix = uuid.uuid4().hex[:6]
    asset_id, old, new = f"AST-R-{suffix}", f"old-{suffix}", f"new-{suffix}"
    created = journey.assets.put(
        f"/assets/{asset_id}",
        json={
            "serialNumber": f"SN-A-{suffix}",
            "assetType": "valve-actuator",
            "location": "us-east/plant-3/line-4",
        },
    )
    assert created.status_code == 201, created.text

    # 1. Device A is onboarded.
    first = journey.register(old, f"SN-A-{suffix}")
    assert first.status == "assigned", first.registration_state
    hub = first.registration_state["assignedHub"]
    assert journey.asset(asset_id)["deviceId"] == old

    # 2. A technician approves its replacement in the asset system.
    version = journey.asset(asset_id)["version"]
    approved = journey.assets.patch(
        f"/assets/{asset_id}",
        json={
            "status": "pendingReplacement",
            "replacement": {
                "oldDeviceId": old,
                "reason": "screen cracked",
                "approvedSerial": f"SN-B-{suffix}",
            },
        },
        headers={"if-match": f'"{version}"', "content-type": "application/merge-patch+json"},
    )
    assert approved.status_code == 200, approved.text

    # 3. Device B registers, claiming the replacement.
    second = journey.register(
        new, f"SN-B-{suffix}", {"replacementFor": {"deviceId": old, "reason": "screen cracked"}}
    )
    assert second.status == "assigned", second.registration_state
    assert second.registration_state["payload"]["assetId"] == asset_id
    assert second.registration_state["payload"]["deviceRole"] == "actuator"

    asset = journey.asset(asset_id)
    assert (asset["deviceId"], asset["status"], asset["replacement"]) == (new, "active", None)
    device = eventually(lambda: journey.device(hub, old), lambda d: d.status == "disabled")
    assert device.status == "disabled"
    assert journey.device(second.registration_state["assignedHub"], new).status == "enabled"

    history = [e for e in journey.history(asset_id) if e["type"] != "created"]
    assert [e["type"] for e in history] == ["deviceLinked", "replacementApproved", "deviceReplaced"]
    linked, _, replaced = history
    assert linked["deviceId"] == old
    assert (replaced["oldDeviceId"], replaced["newDeviceId"], replaced["reason"]) == (
        old,
        new,
        "screen cracked",
    )
    assert replaced["at"] > linked["at"]

    # The audit tells the whole story, in order.
    story = [
        (e["action"], e.get("deviceId"))
        for e in journey.trail("asset", asset_id, 4)
        if e["action"] in ("allocation.decided", "replacement.accepted", "device.deregistered")
    ]
    assert story == [
        ("allocation.decided", old),
        ("allocation.decided", new),
        ("replacement.accepted", new),
        ("device.deregistered", old),
    ]
    accepted = next(
        e for e in journey.trail("asset", asset_id, 4) if e["action"] == "replacement.accepted"
    )
    assert accepted["details"]["oldDeviceId"] == old
    assert accepted["details"]["reason"] == "screen cracked"
    assert accepted["details"]["approvedBy"] == "asset system"

    # Why did the old device get what it got, and what would it get today?
    explained = journey.operator("explain", old, "--json")
    assert explained["recorded"]["outcome"] == "allocated"
    assert explained["recorded"]["details"]["role"] == "actuator"
    assert explained["replay"]["asset"] == asset_id
    assert "linked to device" in explained["replay"]["refusal"]

    # Registering again changes nothing.
    again = journey.register(
        new, f"SN-B-{suffix}", {"replacementFor": {"deviceId": old, "reason": "screen cracked"}}
    )
    assert again.status == "assigned"
    assert len(journey.history(asset_id)) == len(history) + 1


def test_an_unapproved_replacement_claim_is_refused_and_leaves_the_device_alone(journey):
    suffix = uuid.uuid4().hex[:6]
    asset_id, owner, intruder = f"AST-S-{suffix}", f"own-{suffix}", f"spy-{suffix}"
    journey.assets.put(
        f"/assets/{asset_id}",
        json={
            "serialNumber": f"SN-O-{suffix}",
            "assetType": "edge-gateway",
            "location": "us-east/plant-3/line-5",
        },
    )
    first = journey.register(owner, f"SN-O-{suffix}")
    hub = first.registration_state["assignedHub"]
    before = journey.asset(asset_id)

    spoof = journey.register(
        intruder, f"SN-X-{suffix}", {"replacementFor": {"deviceId": owner, "reason": "trust me"}}
    )
    assert spoof.status == "failed"
    assert spoof.registration_state["errorCode"] == 400207
    assert "replacement" in spoof.registration_state["errorMessage"]
    assert journey.asset(asset_id) == before
    assert journey.device(hub, owner).status == "enabled"
    queue = QueueClient.from_connection_string(
        journey.d["storage"]["connectionString"], "dead-letters"
    )
    letters = [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(32)]
    [letter] = [m for m in letters if m.get("registrationId") == intruder]
    assert letter["reason"] == "replacement-refused"
    assert letter["replayable"] is False
    actions = {e["action"]: e for e in journey.trail("registration", intruder, 2)}
    assert actions["allocation.refused"]["outcome"] == "replacement-refused"
    assert actions["replacement.refused"]["details"]["claimedOldDeviceId"] == owner
