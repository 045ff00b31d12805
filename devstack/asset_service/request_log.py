"""One line per request with its W3C trace context, for following a caller's trace into the
reference service (`--request-log`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class RequestLog:
    """ASGI middleware: `METHOD path traceparent=<value or ->` per HTTP request, before it runs.

    The path only: a query may carry device identifiers, and the trace context is what this is for.
    """

    def __init__(self, app: Any, *, write: Callable[[str], None]) -> None:
        self._app = app
        self._write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            trace_parent = headers.get(b"traceparent", b"-").decode("latin-1")
            self._write(f"{scope['method']} {scope['path']} traceparent={trace_parent}")
        await self._app(scope, receive, send)
