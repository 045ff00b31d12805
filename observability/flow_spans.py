"""The one span of a flow run (an allocation, an asset event, a twin batch, a reconciliation
message, an audit batch), started from the W3C trace context the trigger was given.

Exceptions are never recorded as span events: their messages may quote device data. A flow
sets its outcome as attributes and, on failure, an error status naming the error's type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from observability import trace_attributes as attr

_propagator = TraceContextTextMapPropagator()


@contextmanager
def flow_span(
    tracer: Tracer,
    name: str,
    *,
    kind: trace.SpanKind,
    request_id: str,
    trace_parent: str | None = None,
    trace_state: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """`trace_parent`/`trace_state`: the parent's W3C context (an invocation's, or an event's
    distributed tracing extension); without a valid one the span starts a trace."""
    carrier = {"traceparent": trace_parent or "", "tracestate": trace_state or ""}
    with tracer.start_as_current_span(
        name,
        context=_propagator.extract(carrier),
        kind=kind,
        attributes={attr.REQUEST_ID: request_id, **(attributes or {})},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            mark_failed(span, error)
            raise


def mark_failed(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
