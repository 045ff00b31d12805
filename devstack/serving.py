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
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    scheme = "https" if ssl_certfile else "http"
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
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
