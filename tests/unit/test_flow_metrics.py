"""The metrics beyond the allocation's, read back from an in-memory SDK reader: breaker state,
retries, sync changes and lag, dead letters, reconciliation results and the queue backlog."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from asset_client import AssetUnavailable
from messages import ReconciliationMessage
from observability import reconciliation_metrics as rm
from observability import resilience_metrics as res
from observability import sync_metrics as sm
from reconciliation.backlog_probe import BacklogProbe
from reconciliation.reconciler import Reconciler
from resilience.breaker import Breaker
from resilience.outbox import Outbox
from resilience.queue_port import QueueBacklog, QueueUnavailable
from resilience.retry import RetryPolicy, call_with_retries
from sync.events import RawTwinEvent
from sync.handlers import handle_asset_event, handle_twin_batch
from tests.unit.fakes import FakeAssetRepository, FakeIotHubRegistry, make_asset
from tests.unit.outbox_fakes import ListQueue, RecordingOutbox
from tests.unit.test_sync_services import EAST, asset_sync, device_sync, twin_event

Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]


class Meters:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def meter(self) -> Any:
        return self.provider.get_meter("test")

    def points(self) -> Points:
        """(metric, attributes) -> the sum's or gauge's value, or the histogram's count."""
        found: Points = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = point.value if isinstance(point, NumberDataPoint) else point.count
                        attributes = frozenset((point.attributes or {}).items())
                        found[(metric.name, attributes)] = value
        return found


@pytest.fixture
def meters() -> Meters:
    return Meters()


def of(points: Points, name: str) -> dict[frozenset[tuple[str, Any]], float]:
    return {attributes: value for (metric, attributes), value in points.items() if metric == name}


def dependency(name: str) -> frozenset[tuple[str, Any]]:
    return frozenset({(res.DEPENDENCY, name)})


async def test_the_breaker_gauge_follows_each_live_breaker(meters):
    telemetry = res.ResilienceMetrics(meters.meter())
    assets = Breaker("asset-api", is_failure=lambda e: True, fail_max=2, telemetry=telemetry)
    hub = Breaker("iot-hub:h1", is_failure=lambda e: True, fail_max=2, telemetry=telemetry)
    assert of(meters.points(), res.BREAKER_STATE) == {
        dependency("asset-api"): 0,
        dependency("iot-hub:h1"): 0,
    }

    async def failing() -> None:
        raise AssetUnavailable("down")

    for _ in range(2):
        with pytest.raises(AssetUnavailable):
            await assets.call(failing)
    # Reported open at every collection while it stays open, not only when it opened.
    for _ in range(2):
        assert of(meters.points(), res.BREAKER_STATE)[dependency("asset-api")] == 2
    assert of(meters.points(), res.BREAKER_STATE)[dependency("iot-hub:h1")] == 0

    del hub
    gc.collect()
    assert set(of(meters.points(), res.BREAKER_STATE)) == {dependency("asset-api")}


async def test_each_retry_is_counted_with_its_dependency_and_error_type(meters):
    telemetry = res.ResilienceMetrics(meters.meter())
    attempts = 0

    async def flaky(limit: float) -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise AssetUnavailable("try again")
        return "ok"

    result = await call_with_retries(
        flaky,
        policy=RetryPolicy(initial_backoff_seconds=0.001, max_backoff_seconds=0.001),
        is_transient=lambda e: isinstance(e, AssetUnavailable),
        dependency="asset-api",
        metrics=telemetry,
    )
    assert result == "ok"
    assert of(meters.points(), res.RETRIES) == {
        frozenset({(res.DEPENDENCY, "asset-api"), (res.ERROR_TYPE, "AssetUnavailable")}): 2
    }


def changes(points: Points) -> dict[tuple[str, str], float]:
    return {
        (dict(a)[sm.DIRECTION], dict(a)[sm.RESULT]): v for a, v in of(points, sm.CHANGES).items()
    }


async def test_asset_events_count_by_result_and_a_written_twin_records_the_lag(meters, demo_policy):
    metrics = sm.SyncMetrics(meters.meter())
    assets = FakeAssetRepository(make_asset(device_id="dev-1", status="active"))
    hubs = FakeIotHubRegistry()
    hubs.add_device(EAST, "dev-1")
    service = asset_sync(assets, hubs, demo_policy)
    changed_at = datetime.now(UTC) - timedelta(seconds=30)
    for _ in range(2):  # written, then unchanged (the twin is up to date)
        await handle_asset_event(
            service=service,
            outbox=RecordingOutbox().outbox,
            event_id="e1",
            subject="/assets/AST-1001",
            event_type="AssetManagement.AssetChanged",
            data={"assetId": "AST-1001"},
            request_id="r",
            event_time=changed_at,
            metrics=metrics,
        )
    await handle_asset_event(
        service=service,
        outbox=RecordingOutbox().outbox,
        event_id="e2",
        subject="/nothing",
        event_type="AssetManagement.AssetChanged",
        data={},
        request_id="r",
        metrics=metrics,
    )
    points = meters.points()
    assert changes(points) == {
        (sm.ASSET_TO_TWIN, "written"): 1,
        (sm.ASSET_TO_TWIN, "unchanged"): 1,
        (sm.ASSET_TO_TWIN, "invalid"): 1,
    }
    [lag] = [
        metric
        for metric in meters.reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if metric.name == sm.LAG
    ]
    assert lag.unit == "s"
    [point] = lag.data.data_points
    assert point.count == 1
    assert 30 <= point.sum < 60


def test_lag_from_a_clock_ahead_of_ours_counts_as_none(meters):
    metrics = sm.SyncMetrics(meters.meter())
    now = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.twin_written(now + timedelta(seconds=5), now=now)
    metrics.twin_written(None, now=now)  # an event without a time: nothing to measure
    [point] = (of(meters.points(), sm.LAG).values(),)
    assert list(point) == [1]


async def test_twin_batches_count_echoes_writes_and_deferrals(meters, demo_policy):
    metrics = sm.SyncMetrics(meters.meter())

    class Flaky(FakeAssetRepository):
        async def find_by_device_id(self, device_id: str) -> Any:
            if device_id == "dev-broken":
                raise AssetUnavailable("asset API timed out")
            return await super().find_by_device_id(device_id)

    queue = ListQueue()
    bad = twin_event("dev-1", {"health": "ok"})
    await handle_twin_batch(
        device_sync(Flaky(make_asset(device_id="dev-1")), demo_policy, queue),
        [
            RawTwinEvent(b"not json", bad.properties, bad.iothub_metadata, 5),
            twin_event("dev-broken", {"health": "ok"}),
            twin_event("dev-1", {"health": "ok"}),
        ],
        "req",
        metrics=metrics,
    )
    assert changes(meters.points()) == {
        (sm.TWIN_TO_ASSET, "written"): 1,
        (sm.TWIN_TO_ASSET, "deferred"): 2,  # the unreadable event and the asset outage
    }


async def test_every_dead_letter_sent_is_counted_by_kind(meters):
    metrics = rm.ReconciliationMetrics(meters.meter())
    dead = ListQueue()
    outbox = Outbox(reconciliation=ListQueue(), dead_letters=dead, metrics=metrics)
    reconciler = Reconciler(
        assets=FakeAssetRepository(),
        hubs=FakeIotHubRegistry(),
        asset_sync=asset_sync(FakeAssetRepository(), FakeIotHubRegistry(), _policy()),
        device_sync=device_sync(FakeAssetRepository(), _policy(), ListQueue()),
        outbox=outbox,
        metrics=metrics,
    )
    assert await reconciler.handle_raw(b"not json", dequeue_count=1, request_id="r") == (
        "dead-lettered"
    )
    permanent = ReconciliationMessage(
        kind="assetChange", reason="invalid event", detail="x", permanent=True, request_id="r"
    )
    await reconciler.handle_raw(
        permanent.model_dump_json(by_alias=True).encode(), dequeue_count=1, request_id="r"
    )
    assert len(dead.messages) == 2
    points = meters.points()
    assert of(points, rm.DEAD_LETTERS) == {
        frozenset({(rm.KIND, "allocation"), (rm.REPLAYABLE, False)}): 1,
        frozenset({(rm.KIND, "assetChange"), (rm.REPLAYABLE, False)}): 1,
    }
    assert of(points, rm.MESSAGES) == {
        frozenset({(rm.KIND, "unreadable"), (rm.RESULT, "dead-lettered")}): 1,
        frozenset({(rm.KIND, "assetChange"), (rm.RESULT, "dead-lettered")}): 1,
    }


def _policy() -> Any:
    from pathlib import Path

    from policies import load_policy

    return load_policy(Path(__file__).resolve().parents[2] / "policies" / "demo.toml")


class Backlogs:
    def __init__(self, name: str, *answers: QueueBacklog | Exception) -> None:
        self.name = name
        self.answers = list(answers)

    async def backlog(self) -> QueueBacklog:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_backlog_gauges_report_the_latest_reading_per_queue(meters):
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    metrics = rm.ReconciliationMetrics(meters.meter())
    reconciliation = Backlogs(
        "reconciliation",
        QueueBacklog("reconciliation", 3, now - timedelta(minutes=10)),
        QueueUnavailable("down", queue_name="reconciliation"),
    )
    dead = Backlogs(
        "dead-letters", QueueBacklog("dead-letters", 0, None), QueueBacklog("dead-letters", 1, now)
    )
    probe = BacklogProbe([reconciliation, dead], metrics=metrics, clock=lambda: now)

    await probe.run(request_id="r")
    expected = {
        (rm.BACKLOG_MESSAGES, "reconciliation"): 3,
        (rm.BACKLOG_AGE, "reconciliation"): 600,
        (rm.BACKLOG_MESSAGES, "dead-letters"): 0,
        (rm.BACKLOG_AGE, "dead-letters"): 0,
    }
    assert _backlog(meters.points()) == expected

    # A queue that cannot be read keeps its last reading; the other moves on.
    await probe.run(request_id="r")
    expected[(rm.BACKLOG_MESSAGES, "dead-letters")] = 1
    assert _backlog(meters.points()) == expected


def _backlog(points: Points) -> dict[tuple[str, str], float]:
    return {
        (metric, dict(attributes)[rm.QUEUE]): value
        for (metric, attributes), value in points.items()
        if metric in (rm.BACKLOG_MESSAGES, rm.BACKLOG_AGE)
    }
