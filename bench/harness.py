"""Start the parts a benchmark needs as child processes on free ports, and stop them after."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from devstack.azurite import AzuriteChild, start_azurite
from devstack.processes import Child, start_child, stop_children, wait_ready
from devstack.serving import KEEP_ALIVE_SECONDS

REPO = Path(__file__).resolve().parents[1]
ASSET_KEY = "bench-asset-key"


def client_connector(*, limit: int = 100) -> aiohttp.TCPConnector:
    """A benchmark client's pool, which lets go of an idle connection before a devstack server
    closes it: a close that crosses the next request on that connection would reset it.

    aiohttp's pool hands out the connection idle longest, so with N pooled connections each sits
    idle for N answer times between uses: seconds when a busy machine slows the answers.
    """
    return aiohttp.TCPConnector(limit=limit, keepalive_timeout=KEEP_ALIVE_SECONDS / 2)


@dataclass
class Backend:
    """What the app calls: the asset service, and Azurite for its queues and tables."""

    assets: Child
    azurite: AzuriteChild
    run_dir: Path


@dataclass
class WebhookRig:
    assets: Child
    host: Child
    azurite: AzuriteChild
    run_dir: Path

    @property
    def allocate_url(self) -> str:
        return allocate_url(self.host)


def allocate_url(host: Child) -> str:
    return f"{host.url}/api/allocate"


@contextmanager
def backend() -> Iterator[Backend]:
    """Azurite + asset service in a temporary directory, deleted after."""
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    run_dir = base / "run"
    children: list[Child] = []
    try:
        azurite = start_azurite(run_dir, base / "azurite", queue_port=0, table_port=0)
        children += azurite.children
        assets = wait_ready(
            start_child(
                "asset-service",
                "devstack.asset_service",
                ["--port", "0", "--data-dir", str(base / "assets"), "--api-key", ASSET_KEY],
                run_dir=run_dir,
            )
        )
        children.append(assets)
        yield Backend(assets=assets, azurite=azurite, run_dir=run_dir)
    finally:
        stop_children(list(reversed(children)))
        shutil.rmtree(base, ignore_errors=True)


def start_host(backend: Backend, name: str = "function-host", **host_settings: str) -> Child:
    """The dev functions host serving the app against `backend`; the caller stops it."""
    settings_file = backend.run_dir / f"{name}.local.settings.json"
    shutil.copyfile(REPO / "local.settings.sample.json", settings_file)
    env: dict[str, Any] = {
        "ASSET_API_URL": backend.assets.url,
        "ASSET_API_KEY": ASSET_KEY,
        "AzureWebJobsStorage": backend.azurite.connection_string,
        "DEVSTACK_LOG_LEVEL": "WARNING",
        **host_settings,
    }
    return wait_ready(
        start_child(
            name,
            "devstack.function_host",
            ["--script-root", str(REPO), "--port", "0", "--settings-file", str(settings_file)],
            run_dir=backend.run_dir,
            env=env,
            cwd=REPO,
        )
    )


def start_otlp_receiver(run_dir: Path) -> Child:
    """devstack's OTLP/HTTP receiver on a free port; GET {url}/stats counts what it got."""
    return wait_ready(
        start_child("otlp-receiver", "devstack.otlp_receiver", ["--port", "0"], run_dir=run_dir)
    )


@contextmanager
def webhook_rig(**host_settings: str) -> Iterator[WebhookRig]:
    """Asset service + dev functions host (+ Azurite for the app's queues)."""
    with backend() as parts:
        host = start_host(parts, **host_settings)
        try:
            yield WebhookRig(
                assets=parts.assets, host=host, azurite=parts.azurite, run_dir=parts.run_dir
            )
        finally:
            stop_children([host])
