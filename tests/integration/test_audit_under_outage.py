"""The audit trail loses nothing while its table is down: a fleet registers through DPS,
Azurite's table service stops and comes back mid-run, and every registration ends up with
exactly one allocation decision on the trail. AUDIT_DEVICES sets the fleet (default 300)."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections import Counter

import pytest

from devstack.dps_device_client import RegistrationResult
from tests.integration.audit_tables import AuditTableSides
from tests.integration.outage_fixtures import OutageStack, eventually

pytestmark = pytest.mark.slow

DEVICES = int(os.environ.get("AUDIT_DEVICES", "300"))
ALLOCATIONS = ("allocation.decided", "allocation.fallback", "allocation.refused")


def test_every_registration_has_exactly_one_decision_despite_a_table_outage(tmp_path):
    stack = OutageStack(tmp_path / "audit")
    try:
        fleet = {}
        for n in range(DEVICES):
            _, serial = stack.create_asset("temperature-sensor", f"us-east/audit/line-{n % 3}")
            fleet[f"aud-{uuid.uuid4().hex[:6]}-{n:03d}"] = serial
        results: dict[str, RegistrationResult] = {}
        started = threading.Event()

        async def register_all() -> None:
            gate = asyncio.Semaphore(100)

            async def one(device_id: str, serial: str) -> None:
                async with gate:
                    started.set()
                    results[device_id] = await stack.register(device_id, serial)

            await asyncio.gather(*(one(d, s) for d, s in fleet.items()))

        worker = threading.Thread(target=lambda: asyncio.run(register_all()))
        worker.start()
        started.wait(30)
        stack.local.stop_storage("table")  # the table endpoint goes down mid-run
        worker.join(timeout=600)
        assert Counter(r.status for r in results.values()) == {"assigned": DEVICES}
        stack.local.start_storage("table")

        eventually(lambda: stack.approximate_count("audit"), lambda n: n == 0, timeout=120)
        assert stack.approximate_count("audit-poison") == 0, "no audit entry was given up"
        requeued = stack.log("function-host").count("audit table unavailable; entry put back")
        assert requeued > 0, "the outage happened while entries were being written"
        counts = asyncio.run(decisions_per_registration(stack, list(fleet)))
        assert counts == dict.fromkeys(fleet, 1)
    finally:
        stack.close()


async def decisions_per_registration(stack: OutageStack, ids: list[str]) -> dict[str, int]:
    store = AuditTableSides(stack.d["storage"]["connectionString"], "audit")
    async with store:
        counts = {}
        for registration_id in ids:
            timeline = await store.timelines.by_registration(registration_id, 50)
            counts[registration_id] = sum(e.action in ALLOCATIONS for e in timeline.entries)
        return counts
