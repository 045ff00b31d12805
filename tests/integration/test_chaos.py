"""Chaos: devices onboard through DPS while the asset system is slowed, failing and killed.

Afterwards no device is lost or duplicated, and once the asset system is back and
reconciliation has drained, every device is linked to its asset with its real role.
CHAOS_DEVICES sets the fleet (60 in `make test`; `make chaos` runs 300).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from devstack.dps_device_client import RegistrationResult
from tests.integration.outage_fixtures import OutageStack, eventually

# The host is stopped before the queues are counted. A message whose lease it could not release
# in time (a loaded machine) comes back when the lease ends: 20 s here instead of the
# extension's ten minutes, and the count waits for it.
CHAOS_HOST_ENV = {"DEVSTACK_QUEUE_LEASE_SECONDS": "20"}
DRAIN_SECONDS = 40

pytestmark = pytest.mark.slow

DEVICES = int(os.environ.get("CHAOS_DEVICES", "60"))
TYPES = {"temperature-sensor": "sensor", "valve-actuator": "actuator", "edge-gateway": "gateway"}


def chaos(stack: OutageStack, done: threading.Event) -> list[str]:
    """Slow, then flaky, then killed and restarted, then flaky again, until registrations end."""
    steps = []

    def step(name: str, action: Any, pause: float) -> None:
        if done.is_set():
            return
        action()
        steps.append(name)
        done.wait(pause)

    step("slow", lambda: stack.faults(latencyMs=400), 0.6)
    step("5xx at random", lambda: stack.faults(errorRate=0.5, latencyMs=50), 0.6)
    step("killed", lambda: stack.local.stop("asset-service", kill=True), 1.5)
    step("restarted", lambda: stack.local.start_again("asset-service"), 0.3)
    step("5xx at random again", lambda: stack.faults(errorRate=0.3), 0.8)
    step("down", lambda: stack.faults(down=True), 0.5)
    if not any(child.name == "asset-service" for child in stack.local.children):
        stack.local.start_again("asset-service")
    return steps


def wait_for_role(stack: OutageStack, hub: str, device_id: str, asset_type: str) -> Any:
    role = TYPES[asset_type]

    def reconciled(twin: Any) -> bool:
        tags = twin.tags
        return bool(
            tags.get("provisioningState") == "provisioned" and tags.get("deviceRole") == role
        )

    return eventually(lambda: stack.twin(hub, device_id), reconciled, timeout=60)


def test_no_device_is_lost_or_duplicated_when_the_asset_system_fails(tmp_path):
    stack = OutageStack(tmp_path / "chaos", CHAOS_HOST_ENV)
    try:
        run_chaos(stack)
    finally:
        stack.close()


def run_chaos(stack: OutageStack) -> None:
    fleet: dict[str, tuple[str, str, str]] = {}
    for n in range(DEVICES):
        asset_type = list(TYPES)[n % len(TYPES)]
        asset_id, serial = stack.create_asset(asset_type, f"us-east/chaos/line-{n % 5}")
        fleet[f"chaos-{uuid.uuid4().hex[:6]}-{n:03d}"] = (asset_id, serial, asset_type)
    assets_before = len(stack.all_assets())

    results: dict[str, RegistrationResult | BaseException] = {}
    done = threading.Event()

    async def register_all() -> None:
        gate = asyncio.Semaphore(100)

        async def one(device_id: str, serial: str) -> None:
            async with gate:
                try:
                    results[device_id] = await stack.register(device_id, serial)
                except Exception as error:  # counted, and fails the test below
                    results[device_id] = error

        await asyncio.gather(*(one(d, serial) for d, (_, serial, _) in fleet.items()))

    def work() -> None:
        try:
            asyncio.run(register_all())
        finally:
            done.set()

    worker = threading.Thread(target=work)
    worker.start()
    steps = chaos(stack, done)
    worker.join(timeout=600)
    assert not worker.is_alive(), "registrations did not finish"
    assert steps, "chaos never started"

    outcomes = Counter(
        r.status if isinstance(r, RegistrationResult) else type(r).__name__
        for r in results.values()
    )
    assert outcomes == {"assigned": DEVICES}, outcomes
    fallbacks = {
        d
        for d, r in results.items()
        if isinstance(r, RegistrationResult)
        and r.registration_state["payload"]["provisioningState"] == "pendingReconciliation"
    }

    # Conservation, with nothing moving: the function host (the reconciler) is stopped.
    stack.local.stop("function-host")
    stack.faults()
    linked = {a["deviceId"] for a in stack.all_assets() if (a["deviceId"] or "") in fleet}
    pending = {
        m.get("deviceId")
        for queue in ("reconciliation", "reconciliation-poison")
        for m in stack.drain_read(queue, timeout=DRAIN_SECONDS)
    }
    dead = {m.get("deviceId") for m in stack.drain_read("dead-letters", timeout=DRAIN_SECONDS)}
    for device_id in fleet:
        places = [device_id in linked, device_id in pending, device_id in dead]
        assert any(places), f"{device_id} is lost: neither linked, pending nor dead-lettered"
        assert not (places[2] and (places[0] or places[1])), f"{device_id} counted twice"
    assert fallbacks <= pending | linked | dead
    assert len(stack.all_assets()) == assets_before, "no asset was duplicated"

    # Recovery: reconciliation drains, dead letters (if any) are replayed by the operator.
    stack.local.start_again("function-host")

    def settled() -> tuple[int, int]:
        return (
            stack.approximate_count("reconciliation")
            + stack.approximate_count("reconciliation-poison"),
            sum(1 for a in stack.all_assets() if (a["deviceId"] or "") in fleet),
        )

    eventually(settled, lambda s: s[0] == 0, timeout=120)
    if stack.approximate_count("dead-letters"):
        replay = subprocess.run(
            [sys.executable, "-m", "operator_cli", "dead-letters", "replay", "--all", "--yes"],
            env={**os.environ, "AzureWebJobsStorage": stack.d["storage"]["connectionString"]},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
    eventually(settled, lambda s: s == (0, DEVICES), timeout=120)

    by_device = {a["deviceId"]: a for a in stack.all_assets() if (a["deviceId"] or "") in fleet}
    assert set(by_device) == set(fleet)
    for device_id, (asset_id, _, asset_type) in fleet.items():
        assert by_device[device_id]["assetId"] == asset_id
        result = results[device_id]
        assert isinstance(result, RegistrationResult)
        twin = wait_for_role(stack, result.registration_state["assignedHub"], device_id, asset_type)
        assert twin.properties.desired["rolePermissions"]["role"] == TYPES[asset_type]
    assert len(stack.all_assets()) == assets_before
    print(f"chaos: {DEVICES} devices, {len(fallbacks)} onboarded by fallback, steps {steps}")
