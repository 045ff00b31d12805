"""The one span of a flow run (an allocation, an asset event, a twin batch, a reconciliation
message, an audit batch), started from the W3C trace context the trigger was given.

Exceptions are never recorded as span events: their messages may quote device data. A flow
sets its outcome as attributes and, on failure, an error status naming the error's type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from observability import trace_attributes as attr

_propagator = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace context as a trigger hands it over: its `traceparent` and `tracestate`."""

    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def of_invocation(cls, trace_context: Any) -> TraceContext:
        """The Functions invocation's (azure.functions.Context.trace_context)."""
        return cls(trace_context.trace_parent, trace_context.trace_state)


@contextmanager
def flow_span(
    tracer: Tracer,
    name: str,
    *,
    kind: trace.SpanKind,
    request_id: str,
    parent: TraceContext | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """`parent`: the W3C context to continue (an invocation's, or an event's distributed
    tracing extension); without a valid one the span starts a trace."""
    parent = parent or TraceContext()
    carrier = {"traceparent": parent.traceparent or "", "tracestate": parent.tracestate or ""}
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
