"""The outage journey as the metrics tell it: the asset system goes down while a device
registers through DPS, then comes back. The breaker gauge, the fallback count, the retries and
the reconciliation backlog move, and settle again, as an operator watching them would expect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.otlp_receiver import OtlpReceiver, ReceivedPoint
from observability import allocation_metrics as allocation
from observability import reconciliation_metrics as reconciliation
from observability import resilience_metrics as resilience
from observability import trace_attributes as attr
from tests.integration.outage_fixtures import OutageStack, eventually, outage_stack

pytestmark = pytest.mark.slow

ASSET_API = frozenset({(resilience.DEPENDENCY, "asset-api")})


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OutageStack, OtlpReceiver]]:
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            # One try while the asset system is down, then the message waits (invisible) for
            # the next: long enough not to be poisoned during the outage, short for the test.
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:05",
        }
        for stack in outage_stack(tmp_path_factory.mktemp("watched"), env):
            yield stack, receiver


def points_since(receiver: OtlpReceiver, name: str, since_ns: int) -> list[ReceivedPoint]:
    return [p for p in list(receiver.points) if p.metric == name and p.time_unix_nano >= since_ns]


def latest(receiver: OtlpReceiver, name: str, attributes: frozenset[tuple[str, Any]]) -> float:
    point = receiver.latest(name).get(attributes)
    return point.value if point is not None else -1


def fallbacks(receiver: OtlpReceiver) -> float:
    return sum(
        point.value
        for attributes, point in receiver.latest(allocation.ALLOCATIONS).items()
        if dict(attributes).get(attr.OUTCOME) == "fallback"
    )


def backlog(receiver: OtlpReceiver, queue: str) -> float:
    return latest(
        receiver, reconciliation.BACKLOG_MESSAGES, frozenset({(reconciliation.QUEUE, queue)})
    )


def test_an_outage_opens_the_breaker_counts_the_fallback_and_fills_then_drains_the_backlog(
    watched: tuple[OutageStack, OtlpReceiver],
) -> None:
    stack, receiver = watched
    queue = "reconciliation"  # the RECONCILIATION_QUEUE of local.settings.sample.json
    asset_id, serial = stack.create_asset("valve-actuator", "us-east/plant-8/line-1")
    device_id = f"watch-{uuid.uuid4().hex[:8]}"
    before_ns = time.time_ns()
    assert fallbacks(receiver) <= 0

    stack.faults(down=True)
    try:
        result = stack.register_sync(device_id, serial)
        assert result.registration_state["payload"]["provisioningState"] == "pendingReconciliation"
        # The breaker opened on the asset API's failures, and the gauge says so.
        eventually(
            lambda: [
                p.value
                for p in points_since(receiver, resilience.BREAKER_STATE, before_ns)
                if p.attributes == ASSET_API
            ],
            lambda values: 2 in values,
        )
        eventually(lambda: fallbacks(receiver), lambda n: n == 1)
        [fallback] = [
            dict(a)
            for a, p in receiver.latest(allocation.ALLOCATIONS).items()
            if dict(a).get(attr.OUTCOME) == "fallback" and p.value
        ]
        assert fallback[attr.ROLE] == "sensor"  # the least-privilege fallback role
        assert attr.REASON not in fallback  # the outage's text stays on the span
        eventually(
            lambda: receiver.latest(resilience.RETRIES),
            lambda retries: any(dict(a).get(resilience.DEPENDENCY) == "asset-api" for a in retries),
        )

        # The fallback's reconciliation message waits on the queue while the outage lasts.
        stack.run_function("backlog_probe")
        eventually(lambda: backlog(receiver, queue), lambda n: n >= 1)
    finally:
        stack.faults()

    # Recovery: reconciliation gives the device its real role, the breaker closes, and the
    # next measurement finds the queue empty. Nothing was dead-lettered on the way.
    eventually(
        lambda: stack.twin(result.registration_state["assignedHub"], device_id),
        lambda twin: twin.tags.get("provisioningState") == "provisioned",
        timeout=60,
    )
    eventually(lambda: latest(receiver, resilience.BREAKER_STATE, ASSET_API), lambda v: v == 0)
    eventually(lambda: stack.approximate_count(queue), lambda n: n == 0)
    stack.run_function("backlog_probe")
    eventually(lambda: backlog(receiver, queue), lambda n: n == 0)
    queue_attributes = frozenset({(reconciliation.QUEUE, queue)})
    eventually(
        lambda: latest(receiver, reconciliation.BACKLOG_AGE, queue_attributes), lambda a: a == 0
    )
    eventually(
        lambda: receiver.latest(reconciliation.MESSAGES),
        lambda done: any(
            dict(a).get(reconciliation.KIND) == "allocation" and p.value >= 1
            for a, p in done.items()
            if dict(a).get(reconciliation.RESULT) != "retry"
        ),
    )
    assert reconciliation.DEAD_LETTERS not in {p.metric for p in list(receiver.points)}
    assert asset_id == stack.asset(asset_id)["assetId"]
