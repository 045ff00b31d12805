"""Traces and metrics over real HTTP: the dev functions host runs the app with
OTEL_EXPORTER_OTLP_ENDPOINT pointed at devstack's OTLP/HTTP receiver, served by this process; the
reference asset service logs the `traceparent` of every request it gets (--request-log)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from devstack.dps_requests import allocation_request
from devstack.otlp_receiver import OtlpReceiver
from devstack.processes import Child, stop_children
from observability import allocation_metrics as metric
from observability import trace_attributes as attr
from tests.integration.asset_service_fixtures import start_asset_service
from tests.integration.conftest import FUNCTION_KEY, start_function_host

EAST = "hub-us-east.azure-devices.net"


@dataclass(frozen=True)
class TracedStack:
    receiver: OtlpReceiver
    assets: Child
    host: Child

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.host.url}/api/allocate",
            content=body,
            params={"code": FUNCTION_KEY},
            headers={"content-type": "application/json", **(headers or {})},
            timeout=10,
        )

    def asset_service_traceparents(self) -> list[str]:
        assert self.assets.log_path is not None
        lines = self.assets.log_path.read_text(errors="replace").splitlines()
        return [line.rpartition("traceparent=")[2] for line in lines if "traceparent=" in line]

    def host_log(self) -> str:
        assert self.host.log_path is not None
        return self.host.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, azurite: Any) -> Iterator[TracedStack]:
    run_dir = tmp_path_factory.mktemp("traced")
    with OtlpReceiver() as receiver:
        assets = start_asset_service(run_dir, run_dir / "assets", extra_args=["--request-log"])
        try:
            host = start_function_host(
                run_dir,
                assets.url,
                storage=azurite.connection_string,
                name="traced-host",
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                # The batch processor's default delay is 5 s, the metric reader's interval 60 s;
                # the test waits for the export.
                OTEL_BSP_SCHEDULE_DELAY="100",
                OTEL_METRIC_EXPORT_INTERVAL="500",
            )
        except Exception:
            stop_children([assets])
            raise
        try:
            yield TracedStack(receiver=receiver, assets=assets, host=host)
        finally:
            stop_children([host, assets])


def _trace_parent() -> tuple[str, str, str]:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def test_an_allocation_is_one_span_whose_asset_calls_are_its_children(traced, ca):
    cert = ca.issue_device("sensor-1001", serial_number="SN-1001")
    body = json.dumps(
        allocation_request("sensor-1001", x509={"clientCertificate": cert.der_base64})
    ).encode()
    trace_parent, trace_id, parent_span_id = _trace_parent()

    response = traced.post(body, {"traceparent": trace_parent})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]

    spans = traced.receiver.wait_for(trace_id, client_spans=3)
    allocations = [s for s in spans if s.name == attr.ALLOCATION_SPAN]
    assert len(allocations) == 1, spans
    allocation = allocations[0]
    assert allocation.parent_span_id == parent_span_id
    assert allocation.service_name == "dps-asset-onboarding"
    assert allocation.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert {
        key: allocation.attributes.get(key)
        for key in (
            attr.REGISTRATION_ID,
            attr.DEVICE_ID,
            attr.ASSET_ID,
            attr.REQUEST_ID,
            attr.HUB,
            attr.ROLE,
            attr.OUTCOME,
        )
    } == {
        attr.REGISTRATION_ID: "sensor-1001",
        attr.DEVICE_ID: "sensor-1001",
        attr.ASSET_ID: "AST-1001",
        attr.REQUEST_ID: request_id,
        attr.HUB: EAST,
        attr.ROLE: "sensor",
        attr.OUTCOME: "allocated",
    }
    assert attr.REASON not in allocation.attributes

    # The asset API calls (two lookups and the link), each a client span under the allocation.
    # (The outbox's queue sends are its children too: the storage SDK also uses aiohttp.)
    calls = [s for s in spans if str(s.attributes.get("http.url")).startswith(traced.assets.url)]
    assert sorted(
        (s.attributes["http.method"], s.attributes["http.url"].removeprefix(traced.assets.url))
        for s in calls
    ) == [
        ("GET", "/assets?deviceId=sensor-1001"),
        ("GET", "/assets?serialNumber=SN-1001"),
        ("POST", "/assets/AST-1001/devices"),
    ], spans
    assert all(s.kind == Span.SpanKind.SPAN_KIND_CLIENT for s in calls), calls
    assert all(s.parent_span_id == allocation.span_id for s in calls), calls

    # Each call reached the asset service with its own span as the parent.
    received = traced.asset_service_traceparents()
    for call in calls:
        assert f"00-{trace_id}-{call.span_id}-01" in received, (call, received[-10:])

    # The app's log lines about this request carry the trace and the allocation span.
    allocated = [
        line
        for line in traced.host_log().splitlines()
        if " allocated " in f"{line} " and f"requestId={request_id}" in line
    ]
    assert allocated, traced.host_log()[-3000:]
    assert f"traceId={trace_id}" in allocated[0]
    assert f"spanId={allocation.span_id}" in allocated[0]


def test_each_allocation_is_a_trace_of_its_own_and_a_refusal_says_why(traced):
    trace_parent, trace_id, _ = _trace_parent()
    response = traced.post(b"{}", {"traceparent": trace_parent})
    assert response.status_code == 400, response.text

    spans = traced.receiver.wait_for(trace_id, client_spans=0)
    assert [s.name for s in spans] == [attr.ALLOCATION_SPAN]
    refused = spans[0].attributes
    assert refused[attr.OUTCOME] == "refused"
    assert response.json()["type"].endswith(":invalid-request")
    assert refused[attr.REASON] == "invalid-request"
    assert refused[attr.REQUEST_ID] == response.headers["x-request-id"]

    # Without a traceparent the host starts a trace per invocation: no two allocations share one.
    before = {s.trace_id for s in traced.receiver.spans}
    assert traced.post(b"{}").status_code == 400
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = [
            s
            for s in list(traced.receiver.spans)
            if s.trace_id not in before and s.name == attr.ALLOCATION_SPAN
        ]
        if new:
            break
        time.sleep(0.1)
    assert len(new) == 1
    assert new[0].trace_id != trace_id


def _allocations_by_outcome(receiver: OtlpReceiver) -> dict[str, float]:
    counts: dict[str, float] = {}
    for attributes, point in receiver.latest(metric.ALLOCATIONS).items():
        outcome = str(dict(attributes).get(attr.OUTCOME))
        counts[outcome] = counts.get(outcome, 0) + point.value
    return counts


def _spans_by_outcome(receiver: OtlpReceiver) -> dict[str, float]:
    counts: dict[str, float] = {}
    for span in list(receiver.spans):
        if span.name == attr.ALLOCATION_SPAN:
            outcome = str(span.attributes.get(attr.OUTCOME))
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_the_metrics_count_each_answered_allocation_by_outcome(traced, ca):
    # The host is the module's: the allocations of the tests above count too. Each of them
    # waited for its span, so the spans received so far are the baseline.
    expected = _spans_by_outcome(traced.receiver)
    cert = ca.issue_device("sensor-1001", serial_number="SN-1001")
    allocated = json.dumps(
        allocation_request("sensor-1001", x509={"clientCertificate": cert.der_base64})
    ).encode()
    for _ in range(3):
        response = traced.post(allocated)
        assert response.status_code == 200, response.text
    response = traced.post(b"{}")
    assert response.status_code == 400, response.text
    expected["allocated"] = expected.get("allocated", 0) + 3
    expected["refused"] = expected.get("refused", 0) + 1

    deadline = time.monotonic() + 20
    while _allocations_by_outcome(traced.receiver) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _allocations_by_outcome(traced.receiver) == expected, traced.receiver.latest(
        metric.ALLOCATIONS
    )

    counters = traced.receiver.latest(metric.ALLOCATIONS)
    assert {p.unit for p in counters.values()} == {"{allocation}"}
    attribute_sets = [dict(a) for a in counters]
    assert {
        attr.OUTCOME: "allocated",
        attr.HUB: EAST,
        attr.ROLE: "sensor",
    } in attribute_sets, attribute_sets
    assert {attr.OUTCOME: "refused", attr.REASON: "invalid-request"} in attribute_sets

    durations = traced.receiver.latest(metric.ALLOCATION_DURATION)
    assert {p.unit for p in durations.values()} == {"s"}
    assert {str(dict(a)[attr.OUTCOME]): p.value for a, p in durations.items()} == expected, (
        durations
    )
