"""The whole stack (DPS, IoT Hub, the asset service, Azurite, the functions host) exporting to an
OTLP/HTTP receiver in this test: a device onboarded through DPS, then its asset changed with a
`traceparent`, gives one allocation trace and one trace from the asset change to the twin write,
and the metrics count what happened."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from devstack.otlp_receiver import OtlpReceiver, ReceivedSpan
from observability import allocation_metrics as allocation
from observability import reconciliation_metrics as reconciliation
from observability import resilience_metrics as resilience
from observability import sync_metrics as sync
from observability import trace_attributes as attr
from tests.integration.devstack_fixtures import start_devstack, stop_devstack
from tests.integration.test_sync_journey import EAST, Stack
from tests.integration.test_telemetry import _trace_parent

pytestmark = pytest.mark.slow


class TracedDevstack(Stack):
    def __init__(self, description: dict[str, Any], receiver: OtlpReceiver) -> None:
        super().__init__(description)
        self.receiver = receiver

    def spans(self, where: Callable[[ReceivedSpan], bool]) -> list[ReceivedSpan]:
        return [s for s in list(self.receiver.spans) if where(s)]

    def metric(self, name: str) -> dict[frozenset[tuple[str, Any]], float]:
        return {a: p.value for a, p in self.receiver.latest(name).items()}


def eventually(probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedDevstack]:
    with OtlpReceiver() as receiver:
        process, description = start_devstack(
            tmp_path_factory.mktemp("traced-devstack"),
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
            },
        )
        try:
            yield TracedDevstack(description, receiver)
        finally:
            stop_devstack(process)


@pytest.fixture(scope="module")
def onboarded(stack: TracedDevstack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    asset_id, serial = stack.create_asset("temperature-sensor", "us-east/plant-4/line-1")
    device_id = f"otel-{uuid.uuid4().hex[:8]}"
    hub = stack.provision(device_id, serial, tmp_path_factory.mktemp("device"))
    assert hub == EAST
    stack.settle(hub, device_id, asset_id)
    return {"hub": hub, "device": device_id, "asset": asset_id}


def test_an_onboarding_through_dps_is_one_allocation_trace(stack, onboarded):
    allocations = eventually(
        lambda: stack.spans(
            lambda s: (
                s.name == attr.ALLOCATION_SPAN
                and s.attributes.get(attr.DEVICE_ID) == onboarded["device"]
            )
        )
    )
    assert len(allocations) == 1, allocations
    span = allocations[0]
    assert span.attributes[attr.ASSET_ID] == onboarded["asset"]
    assert span.attributes[attr.REGISTRATION_ID] == onboarded["device"]
    assert span.attributes[attr.HUB] == EAST
    assert span.attributes[attr.ROLE] == "sensor"
    assert span.attributes[attr.OUTCOME] == "allocated"
    children = stack.spans(lambda s: s.parent_span_id == span.span_id)
    asset_calls = [
        s for s in children if str(s.attributes.get("http.url", "")).startswith(stack.d["assetApi"])
    ]
    assert len(asset_calls) >= 3, children  # the two lookups and the link
    assert all(s.kind == Span.SpanKind.SPAN_KIND_CLIENT for s in asset_calls)


def test_an_asset_change_and_the_twin_write_it_causes_are_one_trace(
    stack: TracedDevstack, onboarded: dict[str, str]
) -> None:
    traceparent, trace_id, caller_span_id = _trace_parent()
    stack.patch_asset(
        onboarded["asset"], {"location": "us-east/plant-4/line-7"}, {"traceparent": traceparent}
    )

    def written() -> list[ReceivedSpan]:
        return stack.spans(
            lambda s: (
                s.trace_id == trace_id
                and s.name == attr.ASSET_EVENT_SPAN
                and s.attributes.get(attr.SYNC_RESULT) == "written"
            )
        )

    [event_span] = eventually(written)
    # The function host's span continues the trace the asset write was made in: its parent is
    # the caller's span, named in the CloudEvent's traceparent by the asset service.
    assert event_span.parent_span_id == caller_span_id
    assert event_span.kind == Span.SpanKind.SPAN_KIND_CONSUMER
    assert event_span.attributes[attr.ASSET_ID] == onboarded["asset"]
    assert event_span.attributes[attr.DEVICE_ID] == onboarded["device"]
    assert event_span.attributes[attr.HUB] == EAST
    assert event_span.attributes[attr.EVENT_TYPE] == "AssetManagement.AssetChanged"

    # Its children: the asset read (aiohttp) and the twin read and write, through the IoT Hub
    # SDK (requests), to the hub emulator.
    def calls() -> list[ReceivedSpan]:
        found = stack.spans(
            lambda s: (
                s.trace_id == trace_id
                and s.kind == Span.SpanKind.SPAN_KIND_CLIENT
                and "http.method" in s.attributes
            )
        )
        return found if any(_is_twin_write(s) for s in found) else []

    client_spans = eventually(calls)
    targets = sorted(
        (s.attributes["http.method"], _target(s, stack.d["assetApi"])) for s in client_spans
    )
    assert ("GET", "asset") in targets, targets
    assert ("GET", "twin") in targets, targets
    [twin_write] = [s for s in client_spans if _is_twin_write(s)]
    assert _ancestors(stack, twin_write)[-1] == event_span.span_id, client_spans


def _is_twin_write(span: ReceivedSpan) -> bool:
    return span.attributes.get("http.method") == "PATCH" and "/twins/" in str(
        span.attributes.get("http.url", "")
    )


def _target(span: ReceivedSpan, asset_api: str) -> str:
    url = str(span.attributes.get("http.url", ""))
    if url.startswith(asset_api):
        return "asset"
    if "/twins/" in url:
        return "twin"
    return url


def _ancestors(stack: TracedDevstack, span: ReceivedSpan) -> list[str]:
    """Span ids from `span`'s parent up to the first one of the same trace not received."""
    by_id = {s.span_id: s for s in stack.spans(lambda s: s.trace_id == span.trace_id)}
    chain = []
    parent = span.parent_span_id
    while parent in by_id:
        chain.append(parent)
        parent = by_id[parent].parent_span_id
    return chain


def test_the_metrics_count_the_onboarding_and_the_sync(
    stack: TracedDevstack, onboarded: dict[str, str]
) -> None:
    def by(name: str, **wanted: Any) -> float:
        return sum(
            value
            for attributes, value in stack.metric(name).items()
            if all(dict(attributes).get(k) == v for k, v in wanted.items())
        )

    assert eventually(lambda: by(allocation.ALLOCATIONS, **{attr.OUTCOME: "allocated"}) >= 1), (
        stack.metric(allocation.ALLOCATIONS)
    )
    spans_written = len(
        stack.spans(
            lambda s: (
                s.name == attr.ASSET_EVENT_SPAN and s.attributes.get(attr.SYNC_RESULT) == "written"
            )
        )
    )
    assert spans_written >= 1
    assert eventually(
        lambda: (
            by(sync.CHANGES, **{sync.DIRECTION: sync.ASSET_TO_TWIN, sync.RESULT: "written"})
            == spans_written
        )
    ), stack.metric(sync.CHANGES)
    lag = stack.receiver.latest(sync.LAG)
    assert sum(p.value for p in lag.values()) == spans_written, lag
    assert {p.unit for p in lag.values()} == {"s"}
    # The asset API's breaker is watched from the first call, closed.
    assert eventually(
        lambda: (
            stack.metric(resilience.BREAKER_STATE).get(
                frozenset({(resilience.DEPENDENCY, "asset-api")})
            )
            == 0
        )
    ), stack.metric(resilience.BREAKER_STATE)
    assert reconciliation.DEAD_LETTERS not in {p.metric for p in stack.receiver.points}
