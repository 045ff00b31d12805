"""A logger bound to one device and one request.

The identifiers travel as LogRecord attributes (logging's `extra`), which Application Insights
turns into custom dimensions and the dev host prints as key=value. Values are identifiers only:
callers never pass secrets, bodies or certificates.

The device identifiers bound to a log are set on the current span as well (when it records),
so a flow's span carries the ids its lines do. Each line also carries the trace and span ids of
the current span (traceId, spanId) when there is a valid one, so a line leads to its trace. Only
the OpenTelemetry API is imported: without a configured SDK the ids are those of the incoming
trace context, if the request had one.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from observability import trace_attributes as attr

DEVICE_FIELDS = ("registrationId", "deviceId", "assetId", "requestId")


class DeviceLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        request_id: str,
        registration_id: str | None = None,
        device_id: str | None = None,
        asset_id: str | None = None,
    ) -> None:
        self._logger = logger
        self.fields: dict[str, Any] = {
            "registrationId": registration_id,
            "deviceId": device_id,
            "assetId": asset_id,
            "requestId": request_id,
        }
        _tag_current_span(self.fields)

    def bind(self, **fields: Any) -> DeviceLog:
        """A copy with more (or updated) fields, e.g. the asset id once it is known."""
        bound = DeviceLog(self._logger, request_id=self.fields["requestId"])
        bound.fields = {**self.fields, **fields}
        _tag_current_span(fields)
        return bound

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, message, fields, exc_info=exc_info)

    def _log(
        self, level: int, message: str, fields: dict[str, Any], *, exc_info: bool = False
    ) -> None:
        if self._logger.isEnabledFor(level):
            extra = {**self.fields, **fields, **trace_fields()}
            self._logger.log(level, message, extra=extra, exc_info=exc_info, stacklevel=3)


# The identifiers a flow binds to its log are its span's too: one binding, both places.
_SPAN_ATTRIBUTES = {
    "registrationId": attr.REGISTRATION_ID,
    "deviceId": attr.DEVICE_ID,
    "assetId": attr.ASSET_ID,
    "requestId": attr.REQUEST_ID,
}


def _tag_current_span(fields: dict[str, Any]) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for field, value in fields.items():
        name = _SPAN_ATTRIBUTES.get(field)
        if name is not None and isinstance(value, str) and value:
            span.set_attribute(name, value)


def trace_fields() -> dict[str, str]:
    """traceId and spanId of the current span, in W3C hex; empty outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "traceId": trace.format_trace_id(context.trace_id),
        "spanId": trace.format_span_id(context.span_id),
    }
