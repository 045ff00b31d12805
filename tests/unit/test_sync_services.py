"""Both sync directions over fakes of our ports: convergence, no echo writes, conflicts."""

import asyncio
import json
import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asset_client import AssetUnavailable
from observability import DeviceLog
from resilience.outbox import Outbox
from sync.asset_sync_service import AssetToTwinSync
from sync.coalescing import Coalescer
from sync.device_sync_service import TwinToAssetSync
from sync.events import AssetEvent, RawTwinEvent
from sync.handlers import handle_twin_batch
from tests.unit.fakes import FakeAssetRepository, FakeIotHubRegistry, make_asset
from tests.unit.outbox_fakes import RecordingOutbox

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
LOG = DeviceLog(logging.getLogger("test"), request_id="r")


class ListQueue:
    def __init__(self, fail: bool = False) -> None:
        self.messages: list[dict[str, object]] = []
        self.fail = fail

    async def send(self, message):
        if self.fail:
            raise RuntimeError("queue down")
        self.messages.append(message)


def asset_sync(assets, hubs, policy):
    return AssetToTwinSync(
        assets=assets,
        hubs=hubs,
        hub_names=[EAST, WEST],
        policy=policy,
        asset_api_public_url="http://assets",
        outbox=RecordingOutbox().outbox,
    )


async def test_an_asset_change_is_written_once_then_nothing(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1", status="active"))
    hubs = FakeIotHubRegistry()
    hubs.add_device(EAST, "dev-1")
    sync = asset_sync(assets, hubs, demo_policy)
    first = await sync.handle(AssetEvent("AST-1001"), LOG)
    again = await sync.handle(AssetEvent("AST-1001"), LOG)
    assert (first.result, again.result) == ("written", "unchanged")
    assert len(hubs.writes) == 1
    assert hubs.twins[(EAST, "dev-1")]["tags"]["sync"]["assetVersion"] == 1


async def test_the_device_is_found_on_whichever_hub_holds_it(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1", location="us-east/p"))
    hubs = FakeIotHubRegistry()
    hubs.add_device(WEST, "dev-1")  # a spread or not-yet-moved device
    outcome = await asset_sync(assets, hubs, demo_policy).handle(AssetEvent("AST-1001"), LOG)
    assert outcome.hub == WEST
    desired = hubs.twins[(WEST, "dev-1")]["desired"]
    assert desired["reprovision"]["targetHub"] == EAST


async def test_unprovisioned_and_vanished_assets_are_not_errors(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id=None))
    hubs = FakeIotHubRegistry()
    sync = asset_sync(assets, hubs, demo_policy)
    assert (await sync.handle(AssetEvent("AST-1001"), LOG)).result == "not provisioned"
    assert (await sync.handle(AssetEvent("AST-GONE"), LOG)).result == "asset gone"
    assert hubs.writes == []


class RacingHub(FakeIotHubRegistry):
    """Someone else writes the twin between our read and our write, a few times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    async def update_twin(self, hub, device_id, patch, *, etag):
        if self.races:
            self.races -= 1
            self.twins[(hub, device_id)]["version"] += 1  # an unrelated writer
        return await super().update_twin(hub, device_id, patch, etag=etag)


async def test_etag_conflicts_are_reread_and_reapplied(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1"))
    hubs = RacingHub(races=2)
    hubs.add_device(EAST, "dev-1")
    outcome = await asset_sync(assets, hubs, demo_policy).handle(AssetEvent("AST-1001"), LOG)
    assert outcome.result == "written"
    assert len(hubs.writes) == 1


async def test_the_coalescer_runs_a_burst_at_most_twice():
    runs = 0
    gate = asyncio.Event()

    async def work():
        nonlocal runs
        runs += 1
        await gate.wait()
        return runs

    coalescer: Coalescer[int] = Coalescer()
    first = asyncio.ensure_future(coalescer.run("k", work))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer.run("k", work)) for _ in range(9)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, *later)
    assert runs == 2
    assert results[0] == 1
    assert set(results[1:]) == {2}  # every later caller saw a run that began after it arrived


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    updates=st.lists(
        st.sampled_from(
            [
                {"location": "us-east/a"},
                {"location": "us-east/b"},
                {"asset_type": "valve-actuator"},
                {"asset_type": "edge-gateway"},
                {"asset_type": "temperature-sensor"},
                {"attributes": {"note": "x"}},
            ]
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_any_interleaving_of_duplicated_reordered_stale_events_converges(
    demo_policy, data, updates
):
    """Two workers (no shared coalescing), events duplicated and reordered, asset changes
    interleaved with deliveries: the twin always ends at the newest asset version's content."""

    async def scenario():
        assets = FakeAssetRepository(make_asset(device_id="dev-1", status="active"))
        hubs = FakeIotHubRegistry()
        hubs.add_device(EAST, "dev-1")
        workers = [asset_sync(assets, hubs, demo_policy), asset_sync(assets, hubs, demo_policy)]
        seed = data.draw(st.integers(0, 2**32), label="seed")
        rng = random.Random(seed)
        pending: list[asyncio.Future[object]] = []
        for change in updates:
            assets.update("AST-1001", **change)
            for _ in range(rng.randint(1, 3)):  # at-least-once: duplicates
                worker = rng.choice(workers)
                pending.append(asyncio.ensure_future(worker.handle(AssetEvent("AST-1001"), LOG)))
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        rng.shuffle(pending)
        await asyncio.gather(*pending)
        # Event Grid delivers the last event at least once after the last change.
        await rng.choice(workers).handle(AssetEvent("AST-1001"), LOG)
        return assets, hubs

    assets, hubs = asyncio.run(scenario())
    asset = assets.assets["AST-1001"]
    twin = hubs.twins[(EAST, "dev-1")]
    assert twin["tags"]["location"] == asset.location
    assert twin["tags"]["assetType"] == asset.asset_type
    expected_role = {"valve-actuator": "actuator", "edge-gateway": "gateway"}.get(
        asset.asset_type, "sensor"
    )
    assert twin["tags"]["deviceRole"] == expected_role
    assert twin["desired"]["rolePermissions"]["role"] == expected_role
    marker = twin["tags"].get("sync")
    assert marker is None or marker["assetVersion"] <= asset.version
    # Never more writes than asset versions: no write without an effective change.
    assert len(hubs.writes) <= asset.version


def twin_event(device_id, reported=None, tags=None, seq=1):
    document = {"version": seq}
    if tags is not None:
        document["tags"] = tags
    if reported is not None:
        document["properties"] = {"reported": reported}
    return RawTwinEvent(
        body=json.dumps(document).encode(),
        properties={
            "hubName": "hub-us-east",
            "deviceId": device_id,
            "opType": "updateTwin",
            "iothub-message-schema": "twinChangeNotification",
        },
        iothub_metadata={
            "message-source": "twinChangeEvents",
            "connection-device-id": device_id,
            "enqueuedtime": "2026-11-26T00:00:00Z",
        },
        sequence_number=seq,
    )


def device_sync(assets, policy, queue, dead_letters=None):
    outbox = Outbox(reconciliation=queue, dead_letters=dead_letters or queue)
    return TwinToAssetSync(assets=assets, policy=policy, outbox=outbox)


async def test_a_reported_firmware_updates_the_asset_once(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1"))
    queue = ListQueue()
    sync = device_sync(assets, demo_policy, queue)
    outcome = await handle_twin_batch(
        sync,
        [
            twin_event("dev-1", {"firmwareVersion": "2.0"}, seq=1),
            twin_event("dev-1", {"firmwareVersion": "2.1"}, seq=2),
            twin_event("dev-1", tags={"location": "x", "sync": {"assetVersion": 1}}, seq=3),
        ],
        "req",
    )
    assert assets.patches == [("AST-1001", {"attributes": {"firmwareVersion": "2.1"}})]
    assert outcome.results == {"echo": 1, "written": 1}
    again = await handle_twin_batch(sync, [twin_event("dev-1", {"firmwareVersion": "2.1"})], "req")
    assert again.results == {"echo": 0, "unchanged": 1}
    assert len(assets.patches) == 1
    assert queue.messages == []


async def test_a_concurrent_asset_change_is_merged_not_lost(demo_policy):
    class Busy(FakeAssetRepository):
        """An operator edits the asset right before each of our first two patches."""

        def __init__(self, *assets):
            super().__init__(*assets)
            self.races = 2

        async def patch_asset(self, asset_id, patch, *, if_match):
            if self.races:
                self.races -= 1
                self.update(asset_id, location=f"us-east/edit-{self.races}")
            return await super().patch_asset(asset_id, patch, if_match=if_match)

    assets = Busy(make_asset(device_id="dev-1"))
    sync = device_sync(assets, demo_policy, ListQueue())
    outcome = await handle_twin_batch(sync, [twin_event("dev-1", {"health": "degraded"})], "req")
    asset = assets.assets["AST-1001"]
    assert outcome.results == {"echo": 0, "written": 1}
    assert asset.attributes == {"health": "degraded"}
    assert asset.location == "us-east/edit-0"  # the operator's edit survived


async def test_one_bad_event_never_fails_the_batch(demo_policy):
    class Flaky(FakeAssetRepository):
        async def find_by_device_id(self, device_id):
            if device_id == "dev-broken":
                raise AssetUnavailable("asset API timed out")
            return await super().find_by_device_id(device_id)

    assets = Flaky(make_asset(device_id="dev-1"))
    queue, dead = ListQueue(), ListQueue()
    bad = twin_event("dev-1", {"health": "ok"})
    bad = RawTwinEvent(b"not json", bad.properties, bad.iothub_metadata, 5)
    outcome = await handle_twin_batch(
        device_sync(assets, demo_policy, queue, dead),
        [
            bad,
            twin_event("dev-broken", {"health": "ok"}),
            twin_event("dev-1", {"health": "ok"}),
            twin_event("dev-unknown", {"health": "ok"}),
        ],
        "req",
    )
    assert outcome.results["written"] == 1
    assert outcome.results["unknown device"] == 1
    assert outcome.recorded == 2
    assert [(m["reason"], m.get("permanent", False)) for m in queue.messages] == [
        ("AssetUnavailable", False)
    ]
    assert [(m["reason"], m["replayable"]) for m in dead.messages] == [("invalid event", False)]
    assert all(m["kind"] == "twinChange" for m in queue.messages + dead.messages)
    assert assets.assets["AST-1001"].attributes == {"health": "ok"}


async def test_if_even_the_reconciliation_queue_fails_the_batch_fails(demo_policy):
    assets = FakeAssetRepository(make_asset(device_id="dev-1"))
    bad = RawTwinEvent(b"not json", {"iothub-message-schema": "twinChangeNotification"}, {}, 1)
    with pytest.raises(RuntimeError, match="queue down"):
        await handle_twin_batch(device_sync(assets, demo_policy, ListQueue(fail=True)), [bad], "r")
