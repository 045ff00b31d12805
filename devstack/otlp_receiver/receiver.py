"""An OTLP/HTTP receiver on a loopback port: decodes the protobuf exports it is sent."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from observability import trace_attributes as attr

STATS_PATH = "/stats"


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    service_name: str


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a sum (value), a gauge (value) or a histogram (count), as exported."""

    metric: str
    unit: str
    attributes: frozenset[tuple[str, Any]]
    time_unix_nano: int
    value: float


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    """OTLP/HTTP traces and metrics (protobuf) on a loopback port (0: a free one).

    It counts the spans it is sent by name; with `keep` it also keeps every span and data point.
    `GET /stats` answers the counts as JSON: {"spans": {name: count}, "exports": n}.
    """

    def __init__(self, *, port: int = 0, keep: bool = True) -> None:
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        self.paths: list[str] = []
        self._keep = keep
        self._span_counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/metrics":
                    metrics_request = ExportMetricsServiceRequest()
                    metrics_request.ParseFromString(body)
                    receiver._keep_points(metrics_request)
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._keep_spans(self.path, request)
                    answer = ExportTraceServiceResponse().SerializeToString()
                self._answer("application/x-protobuf", answer)

            def do_GET(self) -> None:
                if self.path != STATS_PATH:
                    self.send_error(404)
                    return
                self._answer("application/json", json.dumps(receiver.stats()).encode())

            def _answer(self, content_type: str, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "spans": dict(self._span_counts),
                "exports": sum(1 for p in self.paths if p != "/v1/metrics"),
            }

    def _keep_spans(self, path: str, request: ExportTraceServiceRequest) -> None:
        names: list[str] = []
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.append(span.name)
                    if not self._keep:
                        continue
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            service_name=str(resource.get("service.name")),
                        )
                    )
        with self._lock:
            self.paths.append(path)
            self._span_counts.update(names)
            self.spans.extend(received)

    def _keep_points(self, request: ExportMetricsServiceRequest) -> None:
        received = []
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for m in scope_metrics.metrics:
                    kind = m.WhichOneof("data")
                    if kind == "sum":
                        points = [(p, p.as_double or p.as_int) for p in m.sum.data_points]
                    elif kind == "gauge":
                        points = [(p, p.as_double or p.as_int) for p in m.gauge.data_points]
                    elif kind == "histogram":
                        points = [(p, p.count) for p in m.histogram.data_points]
                    else:
                        continue
                    for point, value in points:
                        received.append(
                            ReceivedPoint(
                                metric=m.name,
                                unit=m.unit,
                                attributes=frozenset(
                                    (a.key, _value(a.value)) for a in point.attributes
                                ),
                                time_unix_nano=point.time_unix_nano,
                                value=value,
                            )
                        )
        with self._lock:
            self.paths.append("/v1/metrics")
            if self._keep:
                self.points.extend(received)

    def latest(self, metric_name: str) -> dict[frozenset[tuple[str, Any]], ReceivedPoint]:
        """Each attribute set's latest cumulative point of `metric_name`."""
        latest: dict[frozenset[tuple[str, Any]], ReceivedPoint] = {}
        with self._lock:
            points = [p for p in self.points if p.metric == metric_name]
        for point in points:
            known = latest.get(point.attributes)
            if known is None or point.time_unix_nano >= known.time_unix_nano:
                latest[point.attributes] = point
        return latest

    def wait_for(
        self, trace_id: str, *, client_spans: int, timeout: float = 20
    ) -> list[ReceivedSpan]:
        """The spans of one trace, once its allocation span and `client_spans` others arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = [s for s in self.spans if s.trace_id == trace_id]
            allocations = [s for s in spans if s.name == attr.ALLOCATION_SPAN]
            if (allocations and len(spans) - len(allocations) >= client_spans) or (
                time.monotonic() > deadline
            ):
                return spans
            time.sleep(0.1)

    def serve_forever(self) -> None:
        """Serve on the calling thread until a signal ends the process."""
        self._server.serve_forever()

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
