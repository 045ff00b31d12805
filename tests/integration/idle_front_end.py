"""A TCP front end (a proxy on a free loopback port) that closes connections the way real ones do.

A server or front end closes a connection once it has been idle for its timeout. A client whose
event loop is busy has not read that close yet when it sends its next request on the pooled
connection, and the request is reset. This front end makes that crossing deterministic: a
connection idle for `idle_timeout` seconds is reset when the client next sends on it, as the
kernel answers data arriving on a socket that was closed (or, with `close_with_fin`, closed
without an answer: the FIN the client had not read). With `reset_every_connection`, every
connection is reset on its first request instead: a dependency that is really down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from types import TracebackType


class IdleFrontEnd:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        idle_timeout: float | None = None,
        reset_every_connection: bool = False,
        close_with_fin: bool = False,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.idle_timeout = idle_timeout
        self.reset_every_connection = reset_every_connection
        self.close_with_fin = close_with_fin
        self.accepted = 0
        """Client connections accepted so far."""
        self.resets = 0
        """Client connections reset so far."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> IdleFrontEnd:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        answered_at = time.monotonic()

        async def answers() -> None:
            nonlocal answered_at
            while chunk := await upstream_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                answered_at = time.monotonic()
            writer.close()

        pump = asyncio.create_task(answers())
        try:
            while data := await reader.read(65536):
                idle = time.monotonic() - answered_at
                if self.reset_every_connection or (
                    self.idle_timeout is not None and idle >= self.idle_timeout
                ):
                    self._reset(writer)
                    return
                upstream_writer.write(data)
                await upstream_writer.drain()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pump
            upstream_writer.close()
            writer.close()
            self._tasks.discard(task)

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        """Close without an answer: with RST (SO_LINGER with a zero timeout) unless FIN is asked."""
        self.resets += 1
        if not self.close_with_fin:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
