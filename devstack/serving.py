"""Run an ASGI app on a loopback socket and announce where it listens through a ready file."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn

KEEP_ALIVE_SECONDS = 75
"""How long an idle connection stays open: longer than the stack's clients keep one (the app's
asset and queue clients 4 s, aiohttp's default 15 s, httpx 5 s), so that the client is the one
that closes it. With uvicorn's default, 5 s, the server closed first, and its close could cross
a busy client's next request on that connection: a reset, which looked like an outage."""


class PortInUse(RuntimeError):
    """The requested port is taken, most often by another running stack."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving so that port 0 resolves to a real port we can announce."""
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"{host}:{port} is already in use (is another stack running?)") from exc
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    ready_file: Path | None,
    extra_ready_info: dict[str, Any] | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; write `ready_file` once connections are accepted."""
    _serve(
        app,
        [bind_socket(host, port)],
        host,
        ready_file=ready_file,
        extra_ready_info=extra_ready_info,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def serve_sockets(
    app: Any,
    sockets: list[socket.socket],
    *,
    ready_file: Path | None,
    extra_ready_info: dict[str, Any] | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    graceful_shutdown_seconds: int = 3,
) -> None:
    """Serve one app on several bound sockets (the app tells them apart by scope["server"]).

    The ready file's url and port are those of the first socket. Over TLS, an idle keep-alive
    client holds shutdown for the whole grace period (it never answers close_notify): servers
    with only short requests may pass a shorter one.
    """
    if not sockets:
        raise ValueError("serve_sockets needs at least one bound socket")
    _serve(
        app,
        sockets,
        sockets[0].getsockname()[0],
        ready_file=ready_file,
        extra_ready_info=extra_ready_info,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        graceful_shutdown_seconds=graceful_shutdown_seconds,
    )


def _serve(
    app: Any,
    sockets: list[socket.socket],
    host: str,
    *,
    ready_file: Path | None,
    extra_ready_info: dict[str, Any] | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    graceful_shutdown_seconds: int = 3,
) -> None:
    actual_port = sockets[0].getsockname()[1]
    scheme = "https" if ssl_certfile else "http"
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=graceful_shutdown_seconds,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.01)
        if ready_file is not None:
            info = {
                "url": f"{scheme}://{host}:{actual_port}",
                "port": actual_port,
                "pid": os.getpid(),
            }
            info.update(extra_ready_info or {})
            write_ready_file(ready_file, info)
        await serving

    asyncio.run(main())
