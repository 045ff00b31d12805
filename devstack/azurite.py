"""Azurite (npm `azurite`) as the devstack's Azure Storage: queue and table, blob on request.

One node process per service from the repo's node_modules (installed by `make install`, i.e.
`npm ci`), started like every devstack part: they die with their parent and log to run_dir.
Azurite writes no ready file, so a port it should take is resolved up front and we wait until
it listens.

By default the services speak HTTP and take the account key (the connection string). With
AzuriteHttps they speak HTTPS with the devstack's server certificate, and with its `oauth` on
they also take Entra ID bearer tokens (`--oauth basic`), as a keyless app on Azure sends them.
Azurite's basic OAuth checks a token's issuer, audience and lifetime but not its signature.
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
from devstack.serving import PortInUse, write_ready_file
from devstack.tls import DevstackTls

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's well-known development account and key (public, the same for every install)."""
STORAGE_AUDIENCE = "https://storage.azure.com"
"""The audience of a token for any storage service (scope https://storage.azure.com/.default)."""
SERVICES = ("blob", "queue", "table")
_ENDPOINT_NAMES = {"blob": "BlobEndpoint", "queue": "QueueEndpoint", "table": "TableEndpoint"}

_COMMON_ARGS = ("--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry")


class AzuriteNotInstalled(ChildFailed):
    """node_modules has no Azurite (or node is missing): nothing to start."""


@dataclass(frozen=True)
class AzuriteHttps:
    """Serve HTTPS with this certificate; clients trust ca_cert. `oauth` accepts bearer tokens."""

    cert: Path
    key: Path
    ca_cert: Path
    oauth: bool = True

    @classmethod
    def from_tls(cls, tls: DevstackTls, *, oauth: bool = True) -> AzuriteHttps:
        """The devstack's own server certificate (it names 127.0.0.1, as clients connect)."""
        return cls(cert=tls.server_cert, key=tls.server_key, ca_cert=tls.ca_cert, oauth=oauth)

    def arguments(self) -> list[str]:
        args = ["--cert", str(self.cert), "--key", str(self.key)]
        return args + (["--oauth", "basic"] if self.oauth else [])


@dataclass(frozen=True)
class AzuriteChild:
    """A running Azurite: where its services listen and the processes to stop."""

    queue: Child
    table: Child
    queue_port: int
    table_port: int
    data_dir: Path
    blob: Child | None = None
    blob_port: int | None = None
    https: AzuriteHttps | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def ca_cert(self) -> Path | None:
        """What a client must trust over HTTPS (None over HTTP)."""
        return self.https.ca_cert if self.https else None

    @property
    def oauth(self) -> bool:
        return self.https is not None and self.https.oauth

    def _url(self, port: int) -> str:
        return f"{self.scheme}://{HOST}:{port}/{ACCOUNT_NAME}"

    @property
    def queue_url(self) -> str:
        return self._url(self.queue_port)

    @property
    def table_url(self) -> str:
        return self._url(self.table_port)

    @property
    def blob_url(self) -> str:
        if self.blob_port is None:
            raise ValueError("this Azurite runs no blob service (start it with blob_port)")
        return self._url(self.blob_port)

    @property
    def service_uris(self) -> dict[str, str]:
        """Each running service's account URI: what a keyless client takes as account_url."""
        uris = {"queue": self.queue_url, "table": self.table_url}
        if self.blob_port is not None:
            uris["blob"] = self.blob_url
        return dict(sorted(uris.items()))

    @property
    def connection_string(self) -> str:
        """Explicit endpoints (UseDevelopmentStorage=true would mean the default ports)."""
        endpoints = "".join(
            f"{_ENDPOINT_NAMES[service]}={uri};" for service, uri in self.service_uris.items()
        )
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};{endpoints.rstrip(';')}"
        )

    @property
    def children(self) -> list[Child]:
        """For stop_children()."""
        return [self.queue, self.table] + ([self.blob] if self.blob else [])


def start_azurite(
    run_dir: Path,
    data_dir: Path,
    *,
    queue_port: int = 10001,
    table_port: int = 10002,
    blob_port: int | None = None,
    https: AzuriteHttps | None = None,
    name: str = "azurite",
    repo_root: Path = REPO_ROOT,
    timeout: float = 30.0,
) -> AzuriteChild:
    """Start azurite-queue and azurite-table (and azurite-blob when blob_port is given) on
    127.0.0.1, persisting to data_dir; over HTTPS (and OAuth) with `https`.

    Port 0 picks a free port. Logs go to run_dir/<name>-<service>.log. Returns once every port
    accepts connections; raises ChildFailed (AzuriteNotInstalled when node_modules lacks
    Azurite, PortInUse when a fixed port is taken) otherwise.
    """
    wanted = {"queue": queue_port, "table": table_port}
    if blob_port is not None:
        wanted["blob"] = blob_port
    programs = {service: _program(repo_root, service) for service in wanted}
    missing = [str(path) for path in programs.values() if not path.exists()]
    if missing:
        raise AzuriteNotInstalled(
            f"Azurite is not installed ({', '.join(missing)} missing): "
            "run `make install` (npm ci) in the repository root"
        )
    if shutil.which("node") is None:
        raise AzuriteNotInstalled("Azurite needs Node.js 20+ (`node` is not on PATH)")
    ports = {service: _free_port(port) for service, port in wanted.items()}
    data_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, Child] = {}
    try:
        for service, port in ports.items():
            started[service] = _start_service(
                service, port, data_dir, https, run_dir=run_dir, name=name, repo_root=repo_root
            )
        _wait(started, ports, https, timeout)
    except BaseException:
        stop_children(list(started.values()))
        raise
    return AzuriteChild(
        queue=started["queue"],
        table=started["table"],
        queue_port=ports["queue"],
        table_port=ports["table"],
        data_dir=data_dir,
        blob=started.get("blob"),
        blob_port=ports.get("blob"),
        https=https,
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
    """Start one service (queue, table or blob) again on its port and data dir, after a stop."""
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
    port = getattr(azurite, f"{service}_port")
    if port is None:
        raise ValueError(f"this Azurite runs no {service} service")
    child = _start_service(
        service,
        port,
        azurite.data_dir,
        azurite.https,
        run_dir=run_dir,
        name=name,
        repo_root=repo_root,
    )
    _wait({service: child}, {service: port}, azurite.https, timeout)
    if service == "queue":
        return dataclasses.replace(azurite, queue=child)
    if service == "table":
        return dataclasses.replace(azurite, table=child)
    return dataclasses.replace(azurite, blob=child)


def _program(repo_root: Path, service: str) -> Path:
    return repo_root / "node_modules" / ".bin" / f"azurite-{service}"


def _start_service(
    service: str,
    port: int,
    data_dir: Path,
    https: AzuriteHttps | None,
    *,
    run_dir: Path,
    name: str,
    repo_root: Path,
) -> Child:
    child = start_command(
        f"{name}-{service}",
        [str(_program(repo_root, service)), *_COMMON_ARGS, "--location", str(data_dir.resolve())]
        + [f"--{service}Host", HOST, f"--{service}Port", str(port)]
        + (https.arguments() if https else []),
        run_dir=run_dir,
        cwd=repo_root,
    )
    # Azurite writes its in-memory data to --location only when stopped with SIGINT.
    child.stop_signal = signal.SIGINT
    return child


def _wait(
    children: dict[str, Child], ports: dict[str, int], https: AzuriteHttps | None, timeout: float
) -> None:
    wait_listening(
        [(children[service], ports[service]) for service in children], host=HOST, timeout=timeout
    )
    if https is None:
        return
    # wait_listening announces http://; the ready file must say how to reach the service.
    for child in children.values():
        child.info["url"] = str(child.info["url"]).replace("http://", "https://", 1)
        write_ready_file(child.ready_file, child.info)


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
