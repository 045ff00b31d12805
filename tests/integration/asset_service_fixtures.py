"""Run the reference asset service as a real child process, for any integration test.

Import the fixtures into a test module (`from tests.integration.asset_service_fixtures import
asset_service`); each module gets its own service on a free port with its own data dir.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from devstack.processes import Child, start_child, stop_children, wait_ready

ASSET_SERVICE_MODULE = "devstack.asset_service"
WRITE_KEY = "it-asset-write-key"
READ_ONLY_KEY = "it-asset-read-key"
REPO_ROOT = Path(__file__).resolve().parents[2]


def start_asset_service(
    run_dir: Path,
    data_dir: Path,
    *,
    name: str = "asset-service",
    extra_args: Sequence[str] = (),
    approval_ttl_hours: float | None = None,
    unbound_approval_window_seconds: float | None = None,
    token_issuer_key: Path | None = None,
    token_audience: str | None = None,
) -> Child:
    """Start on 127.0.0.1 port 0 with WRITE_KEY and READ_ONLY_KEY; return once it serves.

    The approval options are the service's own defaults unless given. With token_issuer_key
    (an identity service's public key), Entra ID tokens for token_audience are accepted too.
    """
    options: list[str] = []
    if token_issuer_key is not None:
        options += ["--token-issuer-key", str(token_issuer_key)]
    if token_audience is not None:
        options += ["--token-audience", token_audience]
    if approval_ttl_hours is not None:
        options += ["--approval-ttl-hours", repr(approval_ttl_hours)]
    if unbound_approval_window_seconds is not None:
        options += ["--unbound-approval-window-seconds", repr(unbound_approval_window_seconds)]
    child = start_child(
        name,
        ASSET_SERVICE_MODULE,
        [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--api-key",
            WRITE_KEY,
            "--read-only-key",
            READ_ONLY_KEY,
            *options,
            *extra_args,
        ],
        run_dir=run_dir,
        cwd=REPO_ROOT,
    )
    return wait_ready(child)


@pytest.fixture(scope="module")
def asset_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    """A seeded asset service shared by one test module."""
    base = tmp_path_factory.mktemp("asset-service")
    child = start_asset_service(base / "run", base / "data")
    try:
        yield child
    finally:
        stop_children([child])


def event_grid_args(
    urls: Sequence[str],
    *,
    retry_scale: float = 0.001,
    key: str | None = None,
    topic: str | None = None,
    delivery_timeout: float | None = None,
) -> list[str]:
    """Arguments that make the service publish its change events to `urls`, retrying fast."""
    args = [arg for url in urls for arg in ("--event-grid-url", url)]
    args += ["--event-retry-scale", str(retry_scale)]
    if key is not None:
        args += ["--event-grid-key", key]
    if topic is not None:
        args += ["--event-topic", topic]
    if delivery_timeout is not None:
        args += ["--event-delivery-timeout", str(delivery_timeout)]
    return args
