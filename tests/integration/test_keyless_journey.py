"""The whole journey with the stack in keyless mode (`make run KEYLESS=1`), as a production app
with a managed identity runs: no key in the app's settings, storage over HTTPS with OAuth, IoT
Hub and the asset API with bearer tokens from the identity stand-in.

Azurite, the hubs and the asset service still take keys (the tests inspect them with keys), so
every assertion that the app got through is also proof that it used its tokens: it has no key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.azurite import ACCOUNT_KEY
from devstack.dps_requests import allocation_request
from devstack.function_host.settings_file import load_local_settings
from devstack.processes import Child, stop_children
from tests.integration.conftest import FUNCTION_KEY, start_function_host
from tests.integration.iothub_fixtures import hub_http
from tests.integration.outage_fixtures import OutageStack, eventually, outage_stack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EAST = "hub-us-east.azure-devices.net"
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    yield from outage_stack(tmp_path_factory.mktemp("keyless"), keyless=True)


def secrets_of(stack: OutageStack) -> dict[str, str]:
    """Every key the stack's parts hold, by what it is."""
    found = {"Azurite's account key": ACCOUNT_KEY, "the asset API key": stack.d["assetApiKey"]}
    for name, hub in stack.d["hubs"].items():
        key = re.search(r"SharedAccessKey=([^;]+)", hub["connectionString"])
        assert key is not None
        found[f"{name}'s key"] = key[1]
    found["the identity header"] = stack.local.app_settings["IDENTITY_HEADER"]
    return found


def effective_app_settings(stack: OutageStack) -> dict[str, str]:
    """The function host's settings as it sees them: its environment, then local.settings.json
    for whatever the environment lacks (the dev host applies it so, as Core Tools does)."""
    pid = stack.d["pids"]["function-host"]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    environ = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    local = load_local_settings(REPO / "local.settings.json").values
    return local | environ


def test_the_app_holds_no_key_and_names_its_identity(keyless: OutageStack) -> None:
    settings = effective_app_settings(keyless)
    secrets = secrets_of(keyless)
    leaks = [
        f"{name} holds {what}"
        for name, value in settings.items()
        for what, secret in secrets.items()
        if secret in value and what != "the identity header"
    ]
    assert leaks == []
    assert not [name for name, value in settings.items() if "AccountKey=" in value]
    assert not [name for name, value in settings.items() if "SharedAccessKey=" in value]
    for keyed in ("AzureWebJobsStorage", "ASSET_API_KEY", "IOT_HUB_CONNECTION_STRINGS"):
        assert settings.get(keyed, "") == "", keyed
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__queueServiceUri"].startswith("https://")
    assert settings["AzureWebJobsStorage__tableServiceUri"].startswith("https://")
    assert settings["AzureWebJobsStorage__blobServiceUri"].startswith("https://")
    assert settings["ASSET_API_AUDIENCE"] == keyless.d["assetApiAudience"]
    assert set(settings["IOT_HUB_MANAGED_IDENTITY_HUBS"].split(",")) == set(keyless.d["hubs"])
    assert settings["IOT_HUB_EVENTS_CONNECTION__fullyQualifiedNamespace"]


def test_a_device_onboards_through_dps_and_its_trail_is_read_keyless(
    keyless: OutageStack,
) -> None:
    asset_id, serial = keyless.create_asset("temperature-sensor", "us-east/plant-1/line-1")
    device_id = f"kl-{uuid.uuid4().hex[:8]}"
    result = keyless.register_sync(device_id, serial)
    assert result.status == "assigned", result.registration_state
    assert result.registration_state["assignedHub"] == EAST
    assert result.registration_state["payload"]["deviceRole"] == "sensor"
    twin = keyless.twin(EAST, device_id)
    assert twin.tags["assetId"] == asset_id
    assert keyless.asset(asset_id)["deviceId"] == device_id
    # The operator CLI reads the trail as the app writes it: identity-based, over HTTPS.
    entries = eventually(
        lambda: keyless.trail("device", device_id),
        lambda items: any(e["action"] == "allocation.decided" for e in items),
    )
    assert entries[0]["assetId"] == asset_id


def test_assets_and_twins_stay_in_sync_both_ways(keyless: OutageStack) -> None:
    asset_id, serial = keyless.create_asset("temperature-sensor", "us-east/plant-2/line-1")
    device_id = f"kl-{uuid.uuid4().hex[:8]}"
    assert keyless.register_sync(device_id, serial).status == "assigned"

    patch_asset(keyless, asset_id, {"location": "us-east/plant-2/line-7"})
    eventually(
        lambda: keyless.twin(EAST, device_id).tags.get("location"),
        lambda location: location == "us-east/plant-2/line-7",
    )

    with hub_http(keyless.d["hubs"][EAST]["connectionString"], keyless.d["tls"]["caCert"]) as hub:
        response = hub.patch(
            f"/devstack/twins/{device_id}/reported", json={"firmwareVersion": "7.0.1"}
        )
        assert response.status_code < 300, response.text
    eventually(
        lambda: keyless.asset(asset_id)["attributes"].get("firmwareVersion"),
        lambda version: version == "7.0.1",
    )
    actions = {
        entry["action"]
        for entry in eventually(
            lambda: keyless.trail("device", device_id),
            lambda items: {"sync.twinWritten", "sync.assetWritten"} <= {e["action"] for e in items},
        )
    }
    assert "allocation.decided" in actions


def test_a_fallback_device_is_reconciled_through_the_queue(keyless: OutageStack) -> None:
    asset_id, serial = keyless.create_asset("valve-actuator", "us-east/plant-3/line-1")
    device_id = f"kl-{uuid.uuid4().hex[:8]}"
    keyless.faults(down=True)
    try:
        result = keyless.register_sync(device_id, serial)
        assert result.status == "assigned", result.registration_state
        assert result.registration_state["payload"]["provisioningState"] == (
            "pendingReconciliation"
        )
        # Without the asset's location the fallback spreads devices over the linked hubs.
        hub = result.registration_state["assignedHub"]
    finally:
        keyless.faults()
    twin = eventually(
        lambda: keyless.twin(hub, device_id),
        lambda t: t.tags.get("provisioningState") == "provisioned",
    )
    assert twin.tags["deviceRole"] == "actuator"
    assert keyless.asset(asset_id)["deviceId"] == device_id
    actions = [e["action"] for e in keyless.trail("device", device_id)]
    assert "allocation.fallback" in actions
    assert "reconciliation.completed" in actions


def test_a_token_for_the_wrong_audience_names_the_setting_and_the_service(
    keyless: OutageStack,
) -> None:
    asset_id, serial = keyless.create_asset("temperature-sensor", "us-east/plant-5/line-1")
    host = extra_host(keyless, "wrong-audience", ASSET_API_AUDIENCE="api://not-the-assets")
    try:
        answer = allocate(host, f"kl-{uuid.uuid4().hex[:8]}", serial)
    finally:
        stop_children([host])
    assert answer.status_code == 502, answer.text
    assert answer.json()["type"].endswith("asset-system-error")
    log = log_of(host)
    assert "asset API answered 401" in log
    assert "ASSET_API_AUDIENCE 'api://not-the-assets'" in log
    assert keyless.asset(asset_id).get("deviceId") is None, "nothing was linked"


def test_no_token_for_the_asset_api_names_its_setting_and_never_the_header(
    keyless: OutageStack,
) -> None:
    _, serial = keyless.create_asset("temperature-sensor", "us-east/plant-6/line-1")
    host = extra_host(keyless, "no-identity", IDENTITY_HEADER="not-the-header")
    try:
        answer = allocate(host, f"kl-{uuid.uuid4().hex[:8]}", serial)
    finally:
        stop_children([host])
    assert answer.status_code == 502, answer.text
    assert "not-the-header" not in answer.text
    log = log_of(host)
    assert "no Entra ID token for ASSET_API_AUDIENCE 'api://devstack-assets'" in log
    assert "not-the-header" not in log


def test_no_token_for_storage_names_its_setting_and_keeps_the_entry(keyless: OutageStack) -> None:
    asset_id, serial = keyless.create_asset("temperature-sensor", "us-east/plant-7/line-1")
    device_id = f"kl-{uuid.uuid4().hex[:8]}"
    # The asset API by key, so that the allocation gets as far as storage (its audit entry).
    host = extra_host(
        keyless,
        "no-storage-token",
        IDENTITY_HEADER="not-the-header",
        ASSET_API_AUDIENCE="",
        ASSET_API_KEY=keyless.d["assetApiKey"],
    )
    try:
        answer = allocate(host, device_id, serial)
        log = eventually(
            lambda: log_of(host),
            lambda text: "no Entra ID token for AzureWebJobsStorage" in text,
        )
    finally:
        stop_children([host])
    # The device is onboarded; its audit entry waits in the host's backlog for storage.
    assert answer.status_code == 200, answer.text
    assert keyless.asset(asset_id)["deviceId"] == device_id
    assert "audit queue unavailable: keeping entries in memory" in log
    assert "not-the-header" not in log + answer.text


def test_no_log_of_the_stack_holds_a_key_or_a_token(keyless: OutageStack) -> None:
    secrets = secrets_of(keyless)
    logs = sorted(Path(keyless.d["dataDir"], "run").glob("*.log"))
    assert any(log.name == "function-host.log" for log in logs)
    for log in logs:
        text = log.read_text(errors="replace")
        assert [what for what, secret in secrets.items() if secret in text] == [], log.name
        assert JWT.search(text) is None, f"{log.name} holds a bearer token"


def patch_asset(stack: OutageStack, asset_id: str, patch: dict[str, Any]) -> None:
    version = stack.asset(asset_id)["version"]
    with stack.assets() as client:
        response = client.patch(
            f"/assets/{asset_id}",
            json=patch,
            headers={"if-match": f'"{version}"', "content-type": "application/merge-patch+json"},
        )
    assert response.status_code == 200, response.text


def extra_host(stack: OutageStack, name: str, **overrides: str) -> Child:
    """A second function host on the stack's settings with some changed, and queues of its
    own, so that it cannot take the stack's messages."""
    settings = stack.local.app_settings | {
        "RECONCILIATION_QUEUE": f"{name}-reconciliation",
        "DEAD_LETTER_QUEUE": f"{name}-dead-letters",
        "AUDIT_QUEUE": f"{name}-audit",
        **overrides,
    }
    run_dir = Path(stack.d["dataDir"]) / "run"
    return start_function_host(
        run_dir,
        stack.d["assetApi"],
        storage="",
        name=f"function-host-{name}",
        **settings,
    )


def log_of(host: Child) -> str:
    assert host.log_path is not None
    return host.log_path.read_text(errors="replace")


def allocate(host: Child, registration_id: str, serial: str) -> httpx.Response:
    body = allocation_request(
        registration_id, x509={"subjectName": f"CN={registration_id}, SERIALNUMBER={serial}"}
    )
    return httpx.post(
        f"{host.url}/api/allocate", params={"code": FUNCTION_KEY}, json=body, timeout=30
    )
