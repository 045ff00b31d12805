"""The sweep disables fallback devices whose reconciliation is overdue (fakes of our ports)."""

from datetime import UTC, datetime, timedelta

from device_twin import format_twin_timestamp
from iothub_client import HubUnavailable, TwinPreconditionFailed
from reconciliation.pending_sweep import PendingSweep, overdue_query
from tests.unit.fakes import FakeIotHubRegistry
from tests.unit.outbox_fakes import RecordingOutbox

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pending(hubs, hub, device_id, hours_ago, state="pendingReconciliation"):
    since = format_twin_timestamp(NOW - timedelta(hours=hours_ago))
    hubs.add_device(hub, device_id, tags={"provisioningState": state, "pendingSince": since})


def sweep(hubs, policy, recorded):
    return PendingSweep(
        hubs=hubs, hub_names=[EAST, WEST], policy=policy, outbox=recorded.outbox, clock=lambda: NOW
    )


async def test_only_devices_pending_past_the_deadline_are_disabled(demo_policy):
    hubs = FakeIotHubRegistry()
    pending(hubs, EAST, "old-east", hours_ago=25)
    pending(hubs, WEST, "old-west", hours_ago=48)
    pending(hubs, EAST, "young", hours_ago=23)
    pending(hubs, EAST, "done", hours_ago=30, state="provisioned")
    recorded = RecordingOutbox()
    result = await sweep(hubs, demo_policy, recorded).run(request_id="t1")
    assert sorted(result.disabled) == ["old-east", "old-west"]
    assert hubs.disabled == {(EAST, "old-east"), (WEST, "old-west")}
    assert hubs.twins[(EAST, "old-east")]["tags"]["provisioningState"] == "reconciliationOverdue"
    assert hubs.twins[(EAST, "young")]["tags"]["provisioningState"] == "pendingReconciliation"
    letters = recorded.dead_letters.messages
    assert sorted(letter["deviceId"] for letter in letters) == ["old-east", "old-west"]
    assert {letter["reason"] for letter in letters} == {"reconciliation overdue"}
    assert [e.action for e in recorded.audit.entries] == ["device.disabled"] * 2
    assert {e.actor for e in recorded.audit.entries} == {"pending-sweep"}


async def test_a_second_run_changes_nothing(demo_policy):
    hubs = FakeIotHubRegistry()
    pending(hubs, EAST, "old", hours_ago=25)
    recorded = RecordingOutbox()
    await sweep(hubs, demo_policy, recorded).run(request_id="t1")
    again = await sweep(hubs, demo_policy, recorded).run(request_id="t2")
    assert again.disabled == []
    assert len(recorded.dead_letters.messages) == 1


async def test_the_deadline_comes_from_the_policy(demo_policy):
    policy = demo_policy.model_copy(
        update={
            "outage": demo_policy.outage.model_copy(update={"reconciliation_deadline_hours": 2})
        }
    )
    hubs = FakeIotHubRegistry()
    pending(hubs, EAST, "three-hours", hours_ago=3)
    result = await sweep(hubs, policy, RecordingOutbox()).run(request_id="t")
    assert result.disabled == ["three-hours"]


async def test_a_device_reconciled_between_query_and_mark_is_enabled_again(demo_policy):
    class Racing(FakeIotHubRegistry):
        raced = False

        async def update_twin(self, hub, device_id, patch, *, etag):
            if not self.raced:
                self.raced = True
                self.twins[(hub, device_id)]["tags"]["provisioningState"] = "provisioned"
                self.twins[(hub, device_id)]["version"] += 1
                raise TwinPreconditionFailed("stale etag")
            return await super().update_twin(hub, device_id, patch, etag=etag)

    hubs = Racing()
    pending(hubs, EAST, "raced", hours_ago=30)
    recorded = RecordingOutbox()
    result = await sweep(hubs, demo_policy, recorded).run(request_id="t")
    assert result.disabled == []
    assert result.reconciled_meanwhile == ["raced"]
    assert hubs.disabled == set()
    assert recorded.dead_letters.messages == []


async def test_one_failing_hub_does_not_stop_the_others(demo_policy):
    class EastDown(FakeIotHubRegistry):
        async def query_twins(self, hub, query, *, limit=1000):
            if hub == EAST:
                raise HubUnavailable("east is down")
            return await super().query_twins(hub, query, limit=limit)

    hubs = EastDown()
    pending(hubs, EAST, "east-device", hours_ago=30)
    pending(hubs, WEST, "west-device", hours_ago=30)
    result = await sweep(hubs, demo_policy, RecordingOutbox()).run(request_id="t")
    assert result.disabled == ["west-device"]
    assert result.failed_hubs == [EAST]


def test_the_query_compares_timestamps_as_iot_hub_strings():
    query = overdue_query(NOW)
    assert query == (
        "SELECT * FROM devices WHERE tags.provisioningState = 'pendingReconciliation' "
        "AND tags.pendingSince < '2026-12-07T12:00:00Z'"
    )
