"""Devstack parts as real child processes on free loopback ports, shared per test session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.azurite import AzuriteChild
from devstack.certificates import TestCertificateAuthority
from devstack.processes import Child, start_child, stop_children, wait_ready
from tests.integration.asset_service_fixtures import WRITE_KEY, start_asset_service
from tests.integration.azurite_fixtures import azurite

REPO = Path(__file__).resolve().parents[2]
__all__ = ["azurite"]
ASSET_KEY = WRITE_KEY
FUNCTION_KEY = "test-function-key"


@dataclass(frozen=True)
class RunningStack:
    assets: Child
    host: Child
    run_dir: Path
    storage: str

    @property
    def allocate_url(self) -> str:
        return f"{self.host.url}/api/allocate"

    def asset_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.assets.url, headers={"x-api-key": ASSET_KEY}, timeout=10)

    def stack_json(self) -> Path:
        """A stack.json as `make run` writes it, for the simulator."""
        path = self.run_dir / "stack.json"
        path.write_text(
            json.dumps(
                {
                    "functionHost": self.host.url,
                    "allocateUrl": self.allocate_url,
                    "functionKey": FUNCTION_KEY,
                    "assetApi": self.assets.url,
                    "assetApiKey": ASSET_KEY,
                }
            )
        )
        return path


def start_function_host(
    run_dir: Path,
    asset_url: str,
    *,
    storage: str,
    name: str = "function-host",
    **settings: str,
) -> Child:
    """The repo's function app on a free port; `storage` is Azurite's connection string (the
    webhook's queue outputs and the queue triggers need a real storage account)."""
    settings_file = run_dir / f"{name}.local.settings.json"
    shutil.copyfile(REPO / "local.settings.sample.json", settings_file)
    env = {
        "ASSET_API_URL": asset_url,
        "ASSET_API_KEY": ASSET_KEY,
        "POLICY_FILE": "policies/demo.toml",
        "ASSET_API_TIMEOUT_SECONDS": "2",
        "AzureWebJobsStorage": storage,
        "RECONCILIATION_QUEUE": "reconciliation",
        "DEAD_LETTER_QUEUE": "dead-letters",
        **settings,
    }
    child = start_child(
        name,
        "devstack.function_host",
        [
            "--script-root",
            str(REPO),
            "--port",
            "0",
            "--settings-file",
            str(settings_file),
            "--function-key",
            FUNCTION_KEY,
        ],
        run_dir=run_dir,
        env=env,
        cwd=REPO,
    )
    return wait_ready(child)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteChild
) -> Iterator[RunningStack]:
    run_dir = tmp_path_factory.mktemp("stack")
    assets = start_asset_service(run_dir, run_dir / "assets")
    try:
        host = start_function_host(run_dir, assets.url, storage=azurite.connection_string)
    except Exception:
        stop_children([assets])
        raise
    yield RunningStack(assets=assets, host=host, run_dir=run_dir, storage=azurite.connection_string)
    stop_children([host, assets])


@pytest.fixture(scope="session")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()
