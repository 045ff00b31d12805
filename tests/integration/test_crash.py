"""A crash loses nothing: the functions host is SIGKILLed in the middle of a burst through DPS.

On Azure a worker can be killed at any instant (scale-in, recycling). Here 300 devices register
at once (a tenth of them unknown to the asset system, so refused), the dev host is killed with
SIGKILL once a third have been allocated, and started again on the same port. DPS retries what
was in flight (connection errors count as retryable). Then:
- every device ends in exactly one place: linked to its own asset, pending reconciliation, or
  dead-lettered; no asset is duplicated;
- every registration DPS saw answered 200 has its allocation entry on the audit trail, and
  every refusal its refusal entry.
CRASH_DEVICES sets the burst (default 300).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from devstack.dps_device_client import RegistrationResult
from tests.integration.audit_tables import AuditTableSides
from tests.integration.outage_fixtures import OutageStack, eventually

pytestmark = pytest.mark.slow

DEVICES = int(os.environ.get("CRASH_DEVICES", "300"))
ALLOCATED = ("allocation.decided", "allocation.fallback")
# Queue messages the killed worker had received come back when its lease ends: ten minutes
# on Azure, five seconds here.
CRASH_HOST_ENV = {"DEVSTACK_QUEUE_LEASE_SECONDS": "5"}


def test_killing_the_host_mid_burst_loses_nothing(tmp_path: Path) -> None:
    # DPS's real retry schedule (1 s, then +9 s each) scaled to a tenth: ~37 s of retries,
    # enough to outlast a host restart on a busy machine.
    stack = OutageStack(tmp_path / "crash", CRASH_HOST_ENV, dps_retry_scale=0.1)
    try:
        run_crash(stack)
    finally:
        stack.close()


def run_crash(stack: OutageStack) -> None:
    known: dict[str, tuple[str, str]] = {}
    for n in range(DEVICES - DEVICES // 10):
        asset_id, serial = stack.create_asset("temperature-sensor", f"us-east/crash/line-{n % 4}")
        known[f"crash-{uuid.uuid4().hex[:6]}-{n:03d}"] = (asset_id, serial)
    unknown = {
        f"ghost-{uuid.uuid4().hex[:6]}-{n:03d}": f"SN-GHOST-{n}" for n in range(DEVICES // 10)
    }
    serials = {device: serial for device, (_, serial) in known.items()} | unknown
    assets_before = len(stack.all_assets())
    host_log = Path(stack.d["logs"]["function-host"])

    results: dict[str, RegistrationResult | BaseException] = {}

    async def register_all() -> None:
        gate = asyncio.Semaphore(100)

        async def one(device_id: str, serial: str) -> None:
            async with gate:
                try:
                    results[device_id] = await stack.register(device_id, serial)
                except Exception as error:  # counted below, fails the test
                    results[device_id] = error

        await asyncio.gather(*(one(d, s) for d, s in serials.items()))

    worker = threading.Thread(target=lambda: asyncio.run(register_all()))
    worker.start()
    allocated_before_kill = eventually(
        lambda: allocation_lines(host_log), lambda n: n >= DEVICES // 3, timeout=120
    )
    stack.local.stop("function-host", kill=True)  # SIGKILL: no flush, no goodbye
    killed_at = time.monotonic()
    time.sleep(0.5)
    stack.local.start_again("function-host")
    down_for = time.monotonic() - killed_at
    worker.join(timeout=600)
    assert not worker.is_alive(), "registrations did not finish"

    outcomes = Counter(
        r.status if isinstance(r, RegistrationResult) else type(r).__name__
        for r in results.values()
    )
    assigned = {
        d
        for d, r in results.items()
        if isinstance(r, RegistrationResult) and r.status == "assigned"
    }
    assert outcomes == {"assigned": len(known), "failed": len(unknown)}, outcomes
    assert assigned == set(known)
    for device_id in unknown:
        result = results[device_id]
        assert isinstance(result, RegistrationResult)
        assert result.registration_state["errorCode"] == 400207, result.registration_state

    # Conservation, with nothing moving: the host (the reconciler) is stopped.
    stack.local.stop("function-host")
    owners = Counter(a["deviceId"] for a in stack.all_assets() if a["deviceId"])
    assert all(count == 1 for count in owners.values()), "a device is on two assets"
    by_asset = {a["assetId"]: a["deviceId"] for a in stack.all_assets()}
    linked = {d for d, (asset_id, _) in known.items() if by_asset[asset_id] == d}
    pending = {m.get("deviceId") for m in stack.drain_read("reconciliation")}
    letters = Counter(m.get("deviceId") for m in stack.drain_read("dead-letters"))
    for device_id in serials:
        places = [device_id in linked, device_id in pending, device_id in letters]
        assert sum(places) == 1, f"{device_id}: linked, pending, dead-lettered = {places}"
    assert set(letters) == set(unknown)
    assert len(stack.all_assets()) == assets_before, "no asset was duplicated"

    # The trail: once the audit writer has drained, every answered registration has its entry.
    stack.local.start_again("function-host")
    eventually(lambda: stack.approximate_count("audit"), lambda n: n == 0, timeout=120)
    timelines = asyncio.run(decisions(stack, list(serials)))
    for device_id in known:
        assert any(a in ALLOCATED for a in timelines[device_id]), (device_id, timelines[device_id])
    for device_id in unknown:
        assert "allocation.refused" in timelines[device_id], (device_id, timelines[device_id])

    retried = dps_retries(Path(stack.d["logs"]["dps-emulator"]))
    duplicates = sum(count - 1 for count in letters.values())
    print(
        f"crash: {DEVICES} devices; killed after {allocated_before_kill} allocations, host down "
        f"{down_for:.1f} s; {retried} webhook calls retried by DPS; {len(pending)} pending; "
        f"{duplicates} duplicate dead letters"
    )


def allocation_lines(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r" allocation: (?:allocated|allocation refused) ", text))


def dps_retries(log: Path) -> int:
    return len(re.findall(r"try \d+ of 10", log.read_text(errors="replace")))


async def decisions(stack: OutageStack, ids: list[str]) -> dict[str, list[str]]:
    store = AuditTableSides(stack.d["storage"]["connectionString"], "audit")
    async with store:
        found: dict[str, list[str]] = {}
        for registration_id in ids:
            timeline = await store.timelines.by_registration(registration_id, 50)
            found[registration_id] = [str(entry.action) for entry in timeline.entries]
        return found


def test_the_window_that_remains_is_the_audit_queues_own_outage(tmp_path: Path) -> None:
    """Measured, not hidden: while the audit queue is unreachable, allocations still answer
    (a device is never held up by its audit entry) and their entries wait in the worker's
    memory. A crash in that window loses exactly those entries; the devices themselves are
    assigned and linked, and nothing recorded before the outage is lost."""
    stack = OutageStack(tmp_path / "window", CRASH_HOST_ENV, dps_retry_scale=0.1)
    try:
        before = register_fleet(stack, "before", 10)
        stack.local.stop_storage("queue")
        during = register_fleet(stack, "during", 20)
        stack.local.stop("function-host", kill=True)
        stack.local.start_storage("queue")
        stack.local.start_again("function-host")
        eventually(lambda: stack.approximate_count("audit"), lambda n: n == 0, timeout=120)
        timelines = asyncio.run(decisions(stack, [*before, *during]))
        lost = [d for d in during if not any(a in ALLOCATED for a in timelines[d])]
        kept = [d for d in before if any(a in ALLOCATED for a in timelines[d])]
        by_asset = {a["assetId"]: a["deviceId"] for a in stack.all_assets()}
        assert all(by_asset[asset_id] == d for d, asset_id in {**before, **during}.items())
        assert kept == list(before)
        assert lost == list(during), "the window is the queue outage: entries made in it"
        print(f"audit window: {len(lost)} of {len(during)} entries made during the outage lost")
    finally:
        stack.close()


def register_fleet(stack: OutageStack, prefix: str, count: int) -> dict[str, str]:
    """`count` devices with assets, registered through DPS; device id -> asset id."""
    fleet: dict[str, tuple[str, str]] = {}
    for n in range(count):
        asset_id, serial = stack.create_asset("temperature-sensor", f"us-east/window/{prefix}")
        fleet[f"{prefix}-{uuid.uuid4().hex[:6]}-{n:02d}"] = (asset_id, serial)

    async def register_all() -> list[RegistrationResult]:
        return list(
            await asyncio.gather(*(stack.register(d, serial) for d, (_, serial) in fleet.items()))
        )

    results = asyncio.run(register_all())
    assert [r.status for r in results] == ["assigned"] * count
    return {device_id: asset_id for device_id, (asset_id, _) in fleet.items()}
