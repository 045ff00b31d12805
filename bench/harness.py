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
class WebhookRig:
    assets: Child
    host: Child
    azurite: AzuriteChild
    run_dir: Path

    @property
    def allocate_url(self) -> str:
        return f"{self.host.url}/api/allocate"


@contextmanager
def webhook_rig(**host_settings: str) -> Iterator[WebhookRig]:
    """Asset service + dev functions host (+ Azurite for the app's queues)."""
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
        settings_file = run_dir / "local.settings.json"
        shutil.copyfile(REPO / "local.settings.sample.json", settings_file)
        env: dict[str, Any] = {
            "ASSET_API_URL": assets.url,
            "ASSET_API_KEY": ASSET_KEY,
            "AzureWebJobsStorage": azurite.connection_string,
            "DEVSTACK_LOG_LEVEL": "WARNING",
            **host_settings,
        }
        host = wait_ready(
            start_child(
                "function-host",
                "devstack.function_host",
                ["--script-root", str(REPO), "--port", "0", "--settings-file", str(settings_file)],
                run_dir=run_dir,
                env=env,
                cwd=REPO,
            )
        )
        children.append(host)
        yield WebhookRig(assets=assets, host=host, azurite=azurite, run_dir=run_dir)
    finally:
        stop_children(list(reversed(children)))
        shutil.rmtree(base, ignore_errors=True)
