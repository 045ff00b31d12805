"""A pooled connection the server closed while idle is no outage: the request is sent again.

Servers and front ends close connections idle past their keep-alive (Node and uvicorn: 5 s by
default). When that close crosses our next request on the pooled connection (a busy event loop
has not read it yet), the request is reset before any answer. That says nothing about the
server, so an aiohttp session built here sends such a request again at once, and only when the
connection was a reused one: each such failure drops that connection from the pool, so within
the pool's size the request gets a connection of its own, and a failure there is raised as the
outage it is. Our requests are safe to resend: reads, idempotent links, If-Match patches and
queue sends whose consumers are idempotent.
"""

from __future__ import annotations

import errno
import logging
from contextvars import ContextVar
from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

KEEPALIVE_SECONDS = 4.0
"""How long an idle pooled connection is kept: under the 5 s after which Node and uvicorn
close idle connections by default, the shortest idle timeout a front end is likely to have."""
_DISCONNECT_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_logger = logging.getLogger("resilience.idle_connections")


class _ConnectionUse:
    """Where the current request's connection came from, as aiohttp's trace signals report it."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


_connection_use: ContextVar[_ConnectionUse | None] = ContextVar("connection_use", default=None)


def resending_session(
    *,
    pool_size: int,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    **options: object,
) -> aiohttp.ClientSession:
    """An aiohttp session that resends a request a reused connection's close turned away.

    `options` go to ClientSession. Create it inside the event loop that will use it.
    """
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(_reused)
    trace.on_connection_create_start.append(_opening)
    trace.freeze()

    async def resend_if_closed_while_idle(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        use = _ConnectionUse()
        token = _connection_use.set(use)
        try:
            for _ in range(pool_size):
                try:
                    return await handler(request)
                except aiohttp.ClientConnectionError as exc:
                    if not (use.reused and is_disconnect(exc)):
                        raise
                    _logger.debug(
                        "pooled connection was closed by the server; sending again",
                        extra={"host": request.url.host, "error": type(exc).__name__},
                    )
            return await handler(request)
        finally:
            _connection_use.reset(token)

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=keepalive_seconds),
        trace_configs=[trace],
        middlewares=(resend_if_closed_while_idle,),
        **options,  # type: ignore[arg-type]
    )


async def _reused(_: aiohttp.ClientSession, __: SimpleNamespace, ___: object) -> None:
    if (use := _connection_use.get()) is not None:
        use.reused = True


async def _opening(_: aiohttp.ClientSession, __: SimpleNamespace, ___: object) -> None:
    # aiohttp may itself resend a GET on another connection: the last one is what counts.
    if (use := _connection_use.get()) is not None:
        use.reused = False


def is_disconnect(error: aiohttp.ClientConnectionError) -> bool:
    """Closed or reset before an answer; not a refused connect, a timeout or a TLS failure."""
    import aiohttp

    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return True
    return (
        isinstance(error, aiohttp.ClientOSError)
        and not isinstance(error, aiohttp.ClientConnectorError)
        and error.errno in _DISCONNECT_ERRNOS
    )
