"""Reconciliation over fakes of our ports: finishing fallbacks, refusing, burying poison."""

import json

import pytest

from asset_client import AssetContractViolation, AssetUnavailable
from iothub_client import DeviceNotFound
from messages import ReconciliationMessage
from messages.emission import Emission
from reconciliation.reconciler import Reconciler
from resilience.outbox import Outbox
from sync.asset_sync_service import AssetToTwinSync
from sync.device_sync_service import TwinToAssetSync
from tests.unit.fakes import FakeAssetRepository, FakeIotHubRegistry, make_asset
from tests.unit.outbox_fakes import ListQueue

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


def reconciler(assets, hubs, policy, dead=None):
    dead = dead if dead is not None else ListQueue()
    outbox = Outbox(reconciliation=ListQueue(), dead_letters=dead)
    return Reconciler(
        assets=assets,
        hubs=hubs,
        asset_sync=AssetToTwinSync(
            assets=assets,
            hubs=hubs,
            hub_names=[EAST, WEST],
            policy=policy,
            asset_api_public_url="http://assets",
            outbox=outbox,
        ),
        device_sync=TwinToAssetSync(assets=assets, policy=policy, outbox=outbox),
        outbox=outbox,
    ), dead


def fallback_message(device_id="dev-1", serial="SN-1001", hub=EAST):
    return ReconciliationMessage(
        kind="allocation",
        reason="asset system unavailable",
        detail="timed out",
        device_id=device_id,
        hub=hub,
        request_id="req-1",
        event={
            "registrationId": device_id,
            "deviceId": device_id,
            "subjectSerialNumber": serial,
            "thumbprint": "AB" * 32,
            "assignedHub": hub,
        },
    )


def fallback_twin(hubs, hub=EAST, device_id="dev-1"):
    hubs.add_device(
        hub,
        device_id,
        tags={"deviceRole": "sensor", "provisioningState": "pendingReconciliation"},
        desired={"rolePermissions": {"role": "sensor"}},
    )


async def test_a_fallback_device_gets_its_asset_link_and_real_role(demo_policy):
    assets = FakeAssetRepository(make_asset(asset_type="edge-gateway", location="us-east/p"))
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(assets, hubs, demo_policy)
    message = fallback_message()
    assert await rec.handle(message, dequeue_count=1, request_id="r") == "reconciled"
    [(asset_id, link)] = assets.links
    assert (asset_id, link.device_id, link.thumbprint) == ("AST-1001", "dev-1", "AB" * 32)
    twin = hubs.twins[(EAST, "dev-1")]
    assert twin["tags"]["provisioningState"] == "provisioned"
    assert twin["tags"]["deviceRole"] == "gateway"
    assert twin["tags"]["assetId"] == "AST-1001"
    assert twin["desired"]["rolePermissions"]["role"] == "gateway"
    writes = len(hubs.writes)
    # Delivered again (at-least-once queue): nothing changes twice.
    assert await rec.handle(message, dequeue_count=2, request_id="r") == "reconciled"
    assert len(assets.links) == 1
    assert len(hubs.writes) == writes
    assert dead.messages == []


async def test_a_fallback_hub_other_than_the_locations_flags_reprovisioning(demo_policy):
    assets = FakeAssetRepository(make_asset(location="eu-west/site-a"))
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs, EAST)
    rec, _ = reconciler(assets, hubs, demo_policy)
    await rec.handle(fallback_message(hub=EAST), dequeue_count=1, request_id="r")
    assert hubs.twins[(EAST, "dev-1")]["desired"]["reprovision"]["targetHub"] == WEST


async def test_an_unknown_device_under_reject_is_disabled_and_dead_lettered(demo_policy):
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(FakeAssetRepository(), hubs, demo_policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "refused"
    assert (EAST, "dev-1") in hubs.disabled
    [letter] = dead.messages
    assert letter["source"] == "reconciliation"
    assert letter["kind"] == "allocation"
    assert "no asset" in letter["reason"]
    assert letter["replayable"] is False
    assert letter["request"]["subjectSerialNumber"] == "SN-1001"
    tags = hubs.twins[(EAST, "dev-1")]["tags"]
    assert tags["provisioningState"] == "refused"
    assert "pendingSince" not in tags
    assert tags["refusedAt"].endswith("Z")


async def test_an_unknown_device_under_quarantine_is_tagged(demo_policy):
    policy = demo_policy.model_copy(update={"unknown_device": "quarantine"})
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(FakeAssetRepository(), hubs, policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "quarantined"
    assert hubs.twins[(EAST, "dev-1")]["tags"]["provisioningState"] == "quarantined"
    assert dead.messages == []
    assert hubs.disabled == set()


async def test_an_asset_taken_by_another_device_refuses_the_fallback_device(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="other", status="active"))
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(assets, hubs, demo_policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "refused"
    assert (EAST, "dev-1") in hubs.disabled
    assert "linked to device 'other'" in dead.messages[0]["reason"]
    assert hubs.twins[(EAST, "dev-1")]["tags"]["provisioningState"] == "refused"


async def test_a_retired_asset_refuses_the_fallback_device(demo_policy):
    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(FakeAssetRepository(make_asset(status="retired")), hubs, demo_policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "refused"
    assert (EAST, "dev-1") in hubs.disabled
    assert "retired" in dead.messages[0]["reason"]


async def test_a_broken_asset_record_refuses_the_fallback_device_rather_than_retrying(
    demo_policy,
):
    class Broken(FakeAssetRepository):
        async def find_by_device_id(self, device_id):
            raise AssetContractViolation("GET /assets answered an invalid asset: status")

    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(Broken(), hubs, demo_policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "refused"
    assert (EAST, "dev-1") in hubs.disabled
    assert "breaks its contract" in dead.messages[0]["reason"]


async def test_a_device_disabled_for_being_overdue_is_enabled_when_reconciliation_succeeds(
    demo_policy,
):
    hubs = FakeIotHubRegistry()
    hubs.add_device(
        EAST, "dev-1", tags={"provisioningState": "reconciliationOverdue", "pendingSince": "x"}
    )
    hubs.disabled.add((EAST, "dev-1"))
    rec, dead = reconciler(FakeAssetRepository(make_asset()), hubs, demo_policy)
    result = await rec.handle(fallback_message(), dequeue_count=1, request_id="r")
    assert result == "reconciled late; re-enabled"
    assert (EAST, "dev-1") not in hubs.disabled
    tags = hubs.twins[(EAST, "dev-1")]["tags"]
    assert (tags["provisioningState"], "pendingSince" in tags) == ("provisioned", False)
    assert dead.messages == []


async def test_a_device_disabled_for_another_reason_stays_disabled(demo_policy):
    hubs = FakeIotHubRegistry()
    hubs.add_device(EAST, "dev-1", tags={"provisioningState": "pendingReconciliation"})
    hubs.disabled.add((EAST, "dev-1"))  # e.g. by an operator
    rec, _ = reconciler(FakeAssetRepository(make_asset()), hubs, demo_policy)
    assert await rec.handle(fallback_message(), dequeue_count=1, request_id="r") == "reconciled"
    assert (EAST, "dev-1") in hubs.disabled


async def test_transient_trouble_raises_so_the_queue_retries(demo_policy):
    class Down(FakeAssetRepository):
        async def find_by_device_id(self, device_id):
            raise AssetUnavailable("still down")

    hubs = FakeIotHubRegistry()
    fallback_twin(hubs)
    rec, dead = reconciler(Down(make_asset()), hubs, demo_policy)
    with pytest.raises(AssetUnavailable):
        await rec.handle(fallback_message(), dequeue_count=1, request_id="r")
    assert dead.messages == []


async def test_a_device_dps_has_not_created_yet_raises_too(demo_policy):
    rec, _ = reconciler(FakeAssetRepository(make_asset()), FakeIotHubRegistry(), demo_policy)
    with pytest.raises(DeviceNotFound):
        await rec.handle(fallback_message(), dequeue_count=1, request_id="r")


async def test_poison_is_buried_with_its_context_and_can_be_replayed(demo_policy):
    rec, dead = reconciler(FakeAssetRepository(), FakeIotHubRegistry(), demo_policy)
    body = json.dumps(fallback_message().to_message()).encode()
    await rec.bury_raw(body, dequeue_count=5, request_id="r")
    [letter] = dead.messages
    assert letter["source"] == "poison"
    assert letter["attempts"] == 5
    assert letter["replayable"] is True
    assert "gave up after 5 attempts" in letter["reason"]
    assert letter["deviceId"] == "dev-1"


async def test_an_unreadable_message_is_dead_lettered_not_retried(demo_policy):
    rec, dead = reconciler(FakeAssetRepository(), FakeIotHubRegistry(), demo_policy)
    result = await rec.handle_raw(b'{"kind": "nonsense"}', dequeue_count=1, request_id="r")
    assert result == "dead-lettered"
    assert dead.messages[0]["reason"] == "unreadable reconciliation message"


async def test_a_recorded_twin_change_is_applied_again(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1"))
    rec, _ = reconciler(assets, FakeIotHubRegistry(), demo_policy)
    message = ReconciliationMessage(
        kind="twinChange",
        reason="AssetUnavailable",
        detail="asset API timed out",
        device_id="dev-1",
        event={
            "body": json.dumps({"version": 4, "properties": {"reported": {"health": "ok"}}}),
            "properties": {
                "hubName": "hub-us-east",
                "deviceId": "dev-1",
                "opType": "updateTwin",
                "iothub-message-schema": "twinChangeNotification",
            },
            "systemProperties": {
                "iothub-message-source": "twinChangeEvents",
                "iothub-connection-device-id": "dev-1",
                "iothub-enqueuedtime": "2026-11-26T05:00:00.1234567Z",
            },
            "sequenceNumber": 9,
        },
    )
    assert await rec.handle(message, dequeue_count=1, request_id="r") == "written"
    assert assets.assets["AST-1001"].attributes == {"health": "ok"}


async def test_a_recorded_twin_change_without_system_properties_is_buried_not_applied(
    demo_policy,
):
    assets = FakeAssetRepository(make_asset(device_id="dev-1"))
    rec, dead = reconciler(assets, FakeIotHubRegistry(), demo_policy)
    forged = ReconciliationMessage(
        kind="twinChange",
        reason="AssetUnavailable",
        detail="asset API timed out",
        device_id="dev-1",
        event={
            "body": json.dumps({"version": 4, "properties": {"reported": {"health": "ok"}}}),
            "properties": {
                "hubName": "hub-us-east",
                "deviceId": "dev-1",
                "opType": "updateTwin",
                "iothub-message-schema": "twinChangeNotification",
            },
        },
    )
    assert await rec.handle(forged, dequeue_count=1, request_id="r") == "dead-lettered"
    assert assets.assets["AST-1001"].attributes == {}
    [letter] = dead.messages
    assert letter["replayable"] is False


async def test_permanent_failures_go_to_dead_letters_not_reconciliation():
    reconciliation, dead = ListQueue(), ListQueue()
    outbox = Outbox(reconciliation=reconciliation, dead_letters=dead)
    await outbox.send(
        Emission.deferred(
            ReconciliationMessage(
                kind="twinChange", reason="invalid event", detail="x", permanent=True
            )
        )
    )
    await outbox.send(
        Emission.deferred(ReconciliationMessage(kind="twinChange", reason="down", detail="y"))
    )
    assert [m["reason"] for m in dead.messages] == ["invalid event"]
    assert [m["reason"] for m in reconciliation.messages] == ["down"]
