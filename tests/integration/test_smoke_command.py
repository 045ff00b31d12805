"""`python -m operator_cli enrollment apply` then `python -m operator_cli smoke` against the
local stack, as azd's postdeploy hook runs them against Azure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iothub_client.registry_manager import registry_manager
from operator_cli.dps_auth import SasAuth, parse_connection_string
from operator_cli.dps_service import DpsService
from tests.integration.devstack_fixtures import REPO, start_devstack, stop_devstack
from tests.integration.policy_files import policy_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The devstack with a policy that trusts the smoke group beside the devstack's."""
    base = tmp_path_factory.mktemp("smoke")
    policy = policy_file(base / "smoke-policy.toml", groups=["devstack-x509", "smoke-x509"])
    process, description = start_devstack(base / "devstack", env={"POLICY_FILE": str(policy)})
    try:
        yield description
    finally:
        stop_devstack(process)


def _environment(stack: dict[str, Any], local_ca: Path, **overrides: str) -> dict[str, str]:
    """What azd's hook would export for Azure, here from the local stack's description."""
    dps = stack["dps"]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DPS_", "ALLOCATION_", "ENROLLMENT_", "SMOKE_", "IOT_HUB_"))
        and not name.startswith(("ASSET_API_", "AzureWebJobsStorage"))
    }
    return (
        env
        | {
            "DPS_CONNECTION_STRING": dps["serviceConnectionString"],
            "DPS_CA_BUNDLE": stack["tls"]["caCert"],
            "DPS_ID_SCOPE": dps["idScope"],
            "DPS_DEVICE_ENDPOINT": f"{dps['host']}:{dps['port']}",
            "ALLOCATION_WEBHOOK_URL": stack["allocateUrl"],
            "ENROLLMENT_LOCAL_CA_DIR": str(local_ca),
            "IOT_HUB_CONNECTION_STRINGS": json.dumps(
                {name: hub["connectionString"] for name, hub in stack["hubs"].items()}
            ),
            "IOT_HUB_CA_BUNDLE": stack["tls"]["caCert"],
            "ASSET_API_URL": stack["assetApi"],
            "ASSET_API_KEY": stack["assetApiKey"],
            "AzureWebJobsStorage": stack["storage"]["connectionString"],
            "SMOKE_TIMEOUT_SECONDS": "60",
            "COLUMNS": "160",
        }
        | overrides
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "operator_cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_smoke_test_onboards_a_device_checks_it_and_leaves_nothing(stack, tmp_path):
    env = _environment(stack, tmp_path / "local-ca")
    applied = _cli(env, "enrollment", "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "smoke-x509" in applied.stdout

    smoke = _cli(env, "smoke")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    for check in ("DPS registration", "assigned hub", "initial twin", "asset link", "audit"):
        assert f"✓ {check}" in smoke.stdout
    assert "smoke test passed" in smoke.stdout
    device_id = smoke.stdout.split("smoke test: device ", 1)[1].split()[0]

    # Nothing left behind: no registration record, no device on any hub, the asset unlinked.
    assert _registration(stack, device_id) is None
    for hub in stack["hubs"].values():
        manager = registry_manager(hub["connectionString"], ca_bundle=stack["tls"]["caCert"])
        assert not [d for d in manager.get_devices() if d.device_id == device_id]
    asset = httpx.get(
        f"{stack['assetApi']}/assets/SMOKE-0001",
        headers={"x-api-key": stack["assetApiKey"]},
        timeout=10,
    ).json()
    assert asset["deviceId"] is None

    again = _cli(env, "smoke")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_failed_check_exits_non_zero_naming_it_and_still_cleans_up(stack, tmp_path):
    """The audit check looks in a table the app never writes: it fails, cleanup still runs."""
    env = _environment(stack, tmp_path / "local-ca")
    assert _cli(env, "enrollment", "apply").returncode == 0
    failed = _cli(env | {"AUDIT_TABLE": "smokeNowhere", "SMOKE_TIMEOUT_SECONDS": "8"}, "smoke")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "smoke test failed: audit trail:" in failed.stderr
    assert "✗ audit trail" in failed.stdout
    for step in ("remove device from hub", "remove DPS registration record", "reset asset"):
        assert f"✓ {step}" in failed.stdout
    device_id = failed.stdout.split("smoke test: device ", 1)[1].split()[0]
    assert _registration(stack, device_id) is None


def test_without_the_smoke_ca_the_smoke_test_says_to_apply_first(stack, tmp_path):
    env = _environment(stack, tmp_path / "empty-ca")
    done = _cli(env, "smoke")
    assert done.returncode == 2
    assert "enrollment apply" in done.stderr


def _registration(stack: dict[str, Any], registration_id: str) -> dict[str, Any] | None:
    import asyncio

    async def read() -> dict[str, Any] | None:
        connection = parse_connection_string(stack["dps"]["serviceConnectionString"], "t")
        async with DpsService(
            connection.host_name, SasAuth(connection), ca_bundle=stack["tls"]["caCert"]
        ) as dps:
            return await dps.get_registration(registration_id)

    return asyncio.run(read())
