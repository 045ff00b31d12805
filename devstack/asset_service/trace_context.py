"""The W3C trace context of the request being served, for the change events it causes.

The reference service makes no spans of its own. A write that arrives with a valid
`traceparent` passes it on unchanged: its change events name the caller's span as their
parent, so the change, the event and the twin write it leads to are one trace. A write without
one starts a trace: a fresh trace id and parent id, sampled.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
# W3C caps tracestate at 32 members; 512 characters is the length it says to keep at least.
_MAX_TRACESTATE = 512


@dataclass(frozen=True)
class TraceContext:
    traceparent: str
    tracestate: str | None = None


def from_headers(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The request's context if its `traceparent` is valid (version 00), else a new trace."""
    match = _TRACEPARENT.fullmatch(traceparent or "")
    if match and match.group(1) != _INVALID_TRACE_ID and match.group(2) != _INVALID_SPAN_ID:
        state = tracestate if tracestate and len(tracestate) <= _MAX_TRACESTATE else None
        return TraceContext(match.group(0), state)
    return TraceContext(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")


_current: ContextVar[TraceContext | None] = ContextVar("asset_service_trace", default=None)


def current() -> TraceContext:
    """The context of the request being served; a new trace outside a request (seeding)."""
    return _current.get() or from_headers(None, None)


Scope = dict[str, Any]


class TraceContextMiddleware:
    """ASGI middleware: makes each HTTP request's trace context `current()` while it runs."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        context = from_headers(
            headers.get(b"traceparent", b"").decode("latin-1"),
            headers.get(b"tracestate", b"").decode("latin-1") or None,
        )
        token = _current.set(context)
        try:
            await self._app(scope, receive, send)
        finally:
            _current.reset(token)
