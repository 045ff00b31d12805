"""Azurite (npm `azurite`) as the devstack's Azure Storage: queue and table services, no blob.

Two node processes from the repo's node_modules (installed by `make install`, i.e. `npm ci`),
started like every devstack part: they die with their parent and log to run_dir. Azurite writes
no ready file, so a port it should take is resolved up front and we wait until it listens.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import Child, ChildFailed, start_command, stop_children, wait_listening
from devstack.serving import PortInUse

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's well-known development account and key (public, the same for every install)."""

_COMMON_ARGS = ("--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry")


class AzuriteNotInstalled(ChildFailed):
    """node_modules has no Azurite (or node is missing): nothing to start."""


@dataclass(frozen=True)
class AzuriteChild:
    """A running Azurite: where its services listen and the processes to stop."""

    queue: Child
    table: Child
    queue_port: int
    table_port: int
    data_dir: Path

    @property
    def queue_url(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_url(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Explicit endpoints (UseDevelopmentStorage=true would mean the default ports)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint={self.queue_url};TableEndpoint={self.table_url}"
        )

    @property
    def children(self) -> list[Child]:
        """For stop_children()."""
        return [self.queue, self.table]


def start_azurite(
    run_dir: Path,
    data_dir: Path,
    *,
    queue_port: int = 10001,
    table_port: int = 10002,
    name: str = "azurite",
    repo_root: Path = REPO_ROOT,
    timeout: float = 30.0,
) -> AzuriteChild:
    """Start azurite-queue and azurite-table on 127.0.0.1, persisting to data_dir.

    Port 0 picks a free port. Logs go to run_dir/<name>-queue.log and <name>-table.log.
    Returns once both ports accept connections; raises ChildFailed (AzuriteNotInstalled when
    node_modules lacks Azurite, PortInUse when a fixed port is taken) otherwise.
    """
    bin_dir = repo_root / "node_modules" / ".bin"
    programs = {service: bin_dir / f"azurite-{service}" for service in ("queue", "table")}
    missing = [str(path) for path in programs.values() if not path.exists()]
    if missing:
        raise AzuriteNotInstalled(
            f"Azurite is not installed ({', '.join(missing)} missing): "
            "run `make install` (npm ci) in the repository root"
        )
    if shutil.which("node") is None:
        raise AzuriteNotInstalled("Azurite needs Node.js 20+ (`node` is not on PATH)")
    queue_port = _free_port(queue_port)
    table_port = _free_port(table_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    location = ("--location", str(data_dir.resolve()))
    started: list[tuple[Child, int]] = []
    try:
        for service, port in (("queue", queue_port), ("table", table_port)):
            child = start_command(
                f"{name}-{service}",
                [str(programs[service]), *_COMMON_ARGS, *location]
                + [f"--{service}Host", HOST, f"--{service}Port", str(port)],
                run_dir=run_dir,
                cwd=repo_root,
            )
            # Azurite writes its in-memory data to --location only when stopped with SIGINT.
            child.stop_signal = signal.SIGINT
            started.append((child, port))
        wait_listening(started, host=HOST, timeout=timeout)
    except BaseException:
        stop_children([child for child, _ in started])
        raise
    queue, table = (child for child, _ in started)
    return AzuriteChild(
        queue=queue,
        table=table,
        queue_port=queue_port,
        table_port=table_port,
        data_dir=data_dir,
    )


def restart_service(
    azurite: AzuriteChild,
    service: str,
    run_dir: Path,
    *,
    name: str = "azurite",
    repo_root: Path = REPO_ROOT,
    timeout: float = 30.0,
) -> AzuriteChild:
    """Start one service (queue or table) again on its port and data dir, after a stop."""
    port = azurite.queue_port if service == "queue" else azurite.table_port
    program = repo_root / "node_modules" / ".bin" / f"azurite-{service}"
    child = start_command(
        f"{name}-{service}",
        [str(program), *_COMMON_ARGS, "--location", str(azurite.data_dir.resolve())]
        + [f"--{service}Host", HOST, f"--{service}Port", str(port)],
        run_dir=run_dir,
        cwd=repo_root,
    )
    child.stop_signal = signal.SIGINT
    wait_listening([(child, port)], host=HOST, timeout=timeout)
    if service == "queue":
        return dataclasses.replace(azurite, queue=child)
    return dataclasses.replace(azurite, table=child)


def _free_port(port: int) -> int:
    """Port 0 -> a free port now; a fixed port -> itself, if nothing listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As node binds: with SO_REUSEADDR, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{HOST}:{port} is already in use (is another Azurite or stack running?)"
                ) from exc
            raise
        chosen: int = sock.getsockname()[1]
        return chosen
