"""Each outage policy end to end: a device registering through the DPS emulator while the
asset system is down."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.outage_fixtures import OutageStack, eventually, outage_stack

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
