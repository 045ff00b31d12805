"""Each outage policy end to end: a device registering through the DPS emulator while the
asset system is down."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.dps_requests import allocation_request
from tests.integration.outage_fixtures import OutageStack, eventually, outage_stack
from tests.integration.policy_files import policy_file

pytestmark = pytest.mark.slow

EAST = "hub-us-east.azure-devices.net"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fallback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    yield from outage_stack(tmp_path_factory.mktemp("fallback"))


@pytest.fixture(scope="module")
def defer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    base = tmp_path_factory.mktemp("defer")
    policy = base / "defer.toml"
    demo = (REPO / "policies" / "demo.toml").read_text()
    policy.write_text(demo.replace('policy = "fallback"', 'policy = "defer"'))
    yield from outage_stack(base / "stack", {"POLICY_FILE": str(policy)})


def test_fallback_assigns_the_default_role_then_reconciliation_gives_the_real_one(fallback):
    asset_id, serial = fallback.create_asset("valve-actuator", "us-east/plant-8/line-1")
    device_id = f"fb-{uuid.uuid4().hex[:8]}"
    fallback.faults(down=True)
    try:
        result = fallback.register_sync(device_id, serial)
        assert result.status == "assigned", result.registration_state
        state = result.registration_state
        assert state["payload"] == {
            "deviceRole": "sensor",
            "provisioningState": "pendingReconciliation",
        }
        hub = state["assignedHub"]
        twin = fallback.twin(hub, device_id)
        assert twin.tags["provisioningState"] == "pendingReconciliation"
        assert twin.properties.desired["rolePermissions"]["role"] == "sensor"
    finally:
        fallback.faults()
    twin = eventually(
        lambda: fallback.twin(hub, device_id),
        lambda t: t.tags.get("provisioningState") == "provisioned",
    )
    assert twin.tags["deviceRole"] == "actuator"
    assert twin.tags["assetId"] == asset_id
    assert twin.properties.desired["rolePermissions"]["role"] == "actuator"
    asset = fallback.asset(asset_id)
    assert asset["deviceId"] == device_id
    assert asset["provisioningStatus"] == "provisioned"
    assert fallback.approximate_count("reconciliation") == 0
    assert fallback.drain_read("dead-letters") == []


def test_defer_lets_dps_retry_until_the_asset_system_is_back(defer):
    asset_id, serial = defer.create_asset("edge-gateway", "us-east/plant-8/line-2")
    device_id = f"df-{uuid.uuid4().hex[:8]}"
    defer.faults(down=True)

    def recover_after_two_deferrals() -> None:
        eventually(
            lambda: len(deferred_at(defer.log("function-host"), device_id)),
            lambda n: n >= 2,
            timeout=60,
        )
        defer.faults()

    watcher = threading.Thread(target=recover_after_two_deferrals)
    watcher.start()
    result = defer.register_sync(device_id, serial)
    watcher.join()
    assert result.status == "assigned", result.registration_state
    # Not a fallback: DPS kept retrying and the device got its real role at once.
    assert result.registration_state["payload"] == {
        "deviceRole": "gateway",
        "provisioningState": "provisioned",
        "assetId": asset_id,
    }
    assert defer.asset(asset_id)["deviceId"] == device_id
    assert len(deferred_at(defer.log("function-host"), device_id)) >= 2


def deferred_at(log: str, device_id: str) -> list[float]:
    """Seconds of day of each 'allocation deferred' line for this device."""
    stamps = re.findall(
        rf"^(\d\d):(\d\d):(\d\d\.\d+) WARNING allocation: allocation deferred "
        rf"registrationId={device_id}\b",
        log,
        flags=re.MULTILINE,
    )
    return [int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in stamps]


def test_defer_gives_up_after_dps_ten_tries(defer):
    _, serial = defer.create_asset("edge-gateway", "us-east/plant-8/line-3")
    device_id = f"dg-{uuid.uuid4().hex[:8]}"
    defer.faults(down=True)
    try:
        result = defer.register_sync(device_id, serial)
    finally:
        defer.faults()
    assert result.status == "failed"
    # DPS's schedule: 10 tries (1 s, then +9 s each; scaled down here), then it gives up.
    assert len(deferred_at(defer.log("function-host"), device_id)) == 10
    assert result.registration_state["errorCode"] == 400207


def approve_replacement(stack: OutageStack, asset_id: str, old: str, serial: str) -> None:
    with stack.assets() as client:
        version = client.get(f"/assets/{asset_id}").json()["version"]
        approved = client.patch(
            f"/assets/{asset_id}",
            json={
                "status": "pendingReplacement",
                "replacement": {"oldDeviceId": old, "reason": "bent", "approvedSerial": serial},
            },
            headers={"if-match": f'"{version}"', "content-type": "application/merge-patch+json"},
        )
        assert approved.status_code == 200, approved.text


def test_a_replacement_claim_during_an_outage_is_deferred_and_links_nothing(fallback):
    asset_id, serial = fallback.create_asset("valve-actuator", "us-east/plant-8/line-4")
    suffix = uuid.uuid4().hex[:8]
    old, new = f"ro-{suffix}", f"rn-{suffix}"
    assert fallback.register_sync(old, serial).status == "assigned"
    approve_replacement(fallback, asset_id, old, f"SN-NEW-{suffix}")
    claim = {"replacementFor": {"deviceId": old, "reason": "bent"}}
    fallback.faults(down=True)
    try:
        result = fallback.register_sync(new, f"SN-NEW-{suffix}", claim)
    finally:
        fallback.faults()
    # DPS was answered 503 on each of its ten tries, then gave up: never the fallback.
    assert result.status == "failed", result.registration_state
    assert "answered 503" in result.registration_state["errorMessage"]
    assert len(deferred_at(fallback.log("function-host"), new)) == 10
    asset = fallback.asset(asset_id)
    assert (asset["deviceId"], asset["status"]) == (old, "pendingReplacement")
    hub = "hub-us-east.azure-devices.net"
    assert fallback.device_status(hub, old) == "enabled"
    # Once the asset system is back, the same claim goes through.
    again = fallback.register_sync(new, f"SN-NEW-{suffix}", claim)
    assert again.status == "assigned", again.registration_state
    assert fallback.asset(asset_id)["deviceId"] == new


def test_a_fallback_device_found_unknown_after_recovery_ends_disabled(fallback):
    device_id = f"unk-{uuid.uuid4().hex[:8]}"
    fallback.faults(down=True)
    try:
        result = fallback.register_sync(device_id, f"SN-NOBODY-{device_id}")
    finally:
        fallback.faults()
    assert result.status == "assigned", result.registration_state
    hub = result.registration_state["assignedHub"]
    twin = eventually(
        lambda: fallback.twin(hub, device_id),
        lambda t: t.tags.get("provisioningState") == "refused",
    )
    assert "pendingSince" not in twin.tags
    assert fallback.device_status(hub, device_id) == "disabled"
    letters = [m for m in fallback.drain_read("dead-letters") if m.get("deviceId") == device_id]
    assert [letter["kind"] for letter in letters] == ["allocation"]
    assert "no asset" in letters[0]["reason"]
    actions = [
        entry["action"]
        for entry in eventually(
            lambda: fallback.trail("device", device_id),
            lambda entries: any(e["action"] == "reconciliation.refused" for e in entries),
        )
    ]
    assert "allocation.fallback" in actions
    assert "reconciliation.refused" in actions


@pytest.fixture(scope="module")
def sweeping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    """A deadline of under two seconds, and reconciliation that keeps retrying meanwhile."""
    base = tmp_path_factory.mktemp("sweep")
    policy = policy_file(
        base / "sweep.toml", groups=["devstack-x509"], reconciliation_deadline_hours=0.0005
    )
    env = {
        "POLICY_FILE": str(policy),
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "1000",
    }
    yield from outage_stack(base / "stack", env)


def test_an_overdue_fallback_device_is_disabled_then_enabled_when_reconciled(sweeping):
    asset_id, serial = sweeping.create_asset("edge-gateway", "us-east/plant-8/line-5")
    device_id = f"od-{uuid.uuid4().hex[:8]}"
    sweeping.faults(down=True)
    try:
        result = sweeping.register_sync(device_id, serial)
        assert result.status == "assigned", result.registration_state
        hub = result.registration_state["assignedHub"]
        time.sleep(2.5)  # past the 1.8 s deadline; waiting longer only makes it more overdue
        sweeping.run_function("pending_sweep")
        twin = eventually(
            lambda: sweeping.twin(hub, device_id),
            lambda t: t.tags.get("provisioningState") == "reconciliationOverdue",
        )
        assert sweeping.device_status(hub, device_id) == "disabled"
        entries = eventually(
            lambda: sweeping.trail("device", device_id),
            lambda found: any(e["action"] == "device.disabled" for e in found),
        )
        [disabled] = [e for e in entries if e["action"] == "device.disabled"]
        assert disabled["actor"] == "pending-sweep"
    finally:
        sweeping.faults()
    # Reconciliation, still retrying, succeeds now: the device gets its role and is back.
    twin = eventually(
        lambda: sweeping.twin(hub, device_id),
        lambda t: t.tags.get("provisioningState") == "provisioned",
        timeout=60,
    )
    assert twin.tags["deviceRole"] == "gateway"
    assert eventually(lambda: sweeping.device_status(hub, device_id), lambda s: s == "enabled")
    assert sweeping.asset(asset_id)["deviceId"] == device_id
    letters = [m for m in sweeping.drain_read("dead-letters") if m.get("deviceId") == device_id]
    assert [letter["reason"] for letter in letters] == ["reconciliation overdue"]


def test_a_refusal_is_not_answered_until_its_dead_letter_is_recorded(fallback):
    """One way out: the service writes the dead letter before the answer; when the queue
    cannot take it, DPS is told to retry (503) rather than told no with nothing recorded."""
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    cert = fallback.ca.issue_device(ghost, serial_number=f"SN-NONE-{ghost}")
    body = allocation_request(ghost, x509={"clientCertificate": cert.der_base64})

    def post() -> httpx.Response:
        return httpx.post(fallback.d["allocateUrl"], json=body, timeout=30)

    fallback.local.stop_storage("queue")
    try:
        during = post()
    finally:
        fallback.local.start_storage("queue")
    assert during.status_code == 503, during.text
    assert during.headers["retry-after"]
    assert during.json()["type"].endswith(":storage-unavailable")
    assert "queue" not in during.json()["detail"]  # our storage's words stay in the log
    after = post()
    assert after.status_code == 400, after.text
    assert after.json()["type"].endswith(":unknown-device")
    letters = [m for m in fallback.drain_read("dead-letters") if m.get("registrationId") == ghost]
    assert [letter["reason"] for letter in letters] == ["unknown-device"]
