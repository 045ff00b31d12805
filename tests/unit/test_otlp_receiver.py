"""devstack's OTLP receiver counts the spans of each export by name, kept or not."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devstack.otlp_receiver import OtlpReceiver
from devstack.otlp_receiver.receiver import STATS_PATH


def _export(*names: str) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, name in enumerate(names):
        span = spans.add()
        span.name = name
        span.trace_id = bytes(15) + bytes([i + 1])
        span.span_id = bytes(7) + bytes([i + 1])
    body: bytes = request.SerializeToString()
    return body


@pytest.mark.parametrize("keep", [True, False])
def test_the_stats_count_every_span_received_by_name(keep):
    with OtlpReceiver(keep=keep) as receiver:
        for body in (_export("dps.allocate", "GET"), _export("dps.allocate")):
            sent = httpx.post(
                f"{receiver.url}/v1/traces",
                content=body,
                headers={"content-type": "application/x-protobuf"},
            )
            assert sent.status_code == 200
        stats = httpx.get(f"{receiver.url}{STATS_PATH}").json()
    assert stats == {"spans": {"dps.allocate": 2, "GET": 1}, "exports": 2}
    assert len(receiver.spans) == (3 if keep else 0)
