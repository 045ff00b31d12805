"""`python -m operator_cli status` against the whole local stack, before, during and after an
outage of the asset system, and the app's GET /api/health behind its function key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.outage_fixtures import OutageStack, eventually, outage_stack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "status-test-function-key"
HOST_ENV = {
    # Two outages in a row open the asset API's breaker: one registration's retries do.
    "ASSET_API_BREAKER_FAILURES": "2",
    "ASSET_API_BREAKER_RESET_SECONDS": "2",
    # A failed reconciliation comes back after 8 s: five tries (then poison) take 40 s, longer
    # than the outage below, and recovery is seen within one more try.
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:08",
}
HUBS = ("hub-eu-west.azure-devices.net", "hub-us-east.azure-devices.net")
_STATUS_SETTINGS = (
    "AzureWebJobsStorage",
    "HEALTH_URL",
    "HEALTH_FUNCTION_KEY",
    "HEALTH_FUNCTION_KEY_FILE",
    "IOT_HUB_CONNECTION_STRINGS",
    "IOT_HUB_MANAGED_IDENTITY_HUBS",
    "IOT_HUB_CA_BUNDLE",
    "IOT_HUB_ENDPOINTS",
    "RECONCILIATION_QUEUE",
    "DEAD_LETTER_QUEUE",
    "AUDIT_QUEUE",
    "QUEUE_MESSAGE_ENCODING",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    yield from outage_stack(tmp_path_factory.mktemp("status"), HOST_ENV, function_key=FUNCTION_KEY)


def settings(stack: OutageStack, **overrides: str) -> dict[str, str]:
    """What an operator sets to reach the app, its storage and its hubs."""
    d = stack.d
    return {
        "AzureWebJobsStorage": d["storage"]["connectionString"],
        "HEALTH_URL": f"{d['functionHost']}/api/health",
        "HEALTH_FUNCTION_KEY": FUNCTION_KEY,
        "IOT_HUB_CONNECTION_STRINGS": json.dumps(
            {name: hub["connectionString"] for name, hub in d["hubs"].items()}
        ),
        "IOT_HUB_CA_BUNDLE": d["tls"]["caCert"],
        **overrides,
    }


def status(env: dict[str, str], *args: str, cwd: Path = REPO) -> tuple[int, dict[str, Any], str]:
    """The command as an operator runs it: its exit code, its JSON and what it said on stderr."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in _STATUS_SETTINGS and not k.startswith("AzureWebJobsStorage")
    }
    done = subprocess.run(
        [sys.executable, "-m", "operator_cli", "status", "--json", *args],
        env={**inherited, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def breaker(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [b for b in document["app"]["breakers"] if b["name"] == name]
    assert len(found) == 1, document["app"]
    return found[0]


def test_the_health_endpoint_needs_the_function_key(stack: OutageStack) -> None:
    url = f"{stack.d['functionHost']}/api/health"
    with httpx.Client(timeout=10) as client:
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"x-functions-key": "wrong"}).status_code == 401
        assert client.get(url, params={"code": FUNCTION_KEY}).status_code == 200
        answer = client.get(url, headers={"x-functions-key": FUNCTION_KEY})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["policy"] == {"version": "demo-2026-11"}
    assert [b["name"] for b in body["breakers"]] == [
        "asset-api",
        *(f"iot-hub:{hub}" for hub in HUBS),
    ]
    text = answer.text
    for secret in (stack.d["assetApiKey"], stack.d["assetApi"], "SharedAccessKey", "AccountKey"):
        assert secret not in text


def test_status_shows_an_outage_then_the_recovery(stack: OutageStack) -> None:
    env = settings(stack)
    # Before: one device onboarded, and one refused (unknown to the asset system).
    _, serial = stack.create_asset("temperature-sensor", "us-east/plant-1/line-1")
    assert stack.register_sync(f"st-ok-{uuid.uuid4().hex[:8]}", serial).status == "assigned"
    refused = stack.register_sync(f"st-unknown-{uuid.uuid4().hex[:8]}", "SN-NOBODY-STATUS")
    assert refused.status == "failed"
    code, before, _ = status(env)
    assert (code, before["verdict"], before["exitCode"]) == (0, "ok", 0), before
    assert before["app"]["status"] == "ok"
    assert before["app"]["policyVersion"] == "demo-2026-11"
    assert {b["state"] for b in before["app"]["breakers"]} == {"closed"}
    reasons = {r["reason"]: r["count"] for r in before["deadLetters"]["byReason"]}
    assert reasons.get("unknown-device") == 1, before["deadLetters"]
    assert before["devices"]["byState"] == {}
    assert [hub["hub"] for hub in before["devices"]["hubs"]] == list(HUBS)

    # During: the asset system is down; a new device gets the fallback.
    asset_id, serial = stack.create_asset("valve-actuator", "us-east/plant-8/line-1")
    device_id = f"st-fb-{uuid.uuid4().hex[:8]}"
    stack.faults(down=True)
    try:
        result = stack.register_sync(device_id, serial)
        assert result.status == "assigned", result.registration_state
        assert result.registration_state["payload"]["provisioningState"] == (
            "pendingReconciliation"
        )
        code, during, _ = status(env)
    finally:
        stack.faults()
    assert (code, during["verdict"]) == (1, "degraded"), during
    assets = breaker(during, "asset-api")
    assert assets["state"] == "open", assets
    assert assets["failures"] >= 2
    assert assets["failMax"] == 2
    assert assets["since"] is not None
    assert 0 <= assets["sinceSeconds"] < 60
    assert {b["state"] for b in during["app"]["breakers"] if b["name"] != "asset-api"} == {"closed"}
    devices = during["devices"]
    assert devices["byState"] == {"pendingReconciliation": 1}, devices
    assert 0 <= devices["oldestPendingAgeSeconds"] < 120
    assert during["reconciliation"]["messages"] >= 1, during["reconciliation"]
    assert during["deadLetters"]["messages"] == before["deadLetters"]["messages"]
    assert isinstance(during["auditBacklog"]["messages"], int)

    # After: reconciliation finishes the fallback and the breaker closes on its trial.
    hub = result.registration_state["assignedHub"]
    eventually(
        lambda: stack.twin(hub, device_id).tags.get("provisioningState"),
        lambda state: state == "provisioned",
        timeout=60,
    )
    code, after, _ = eventually(lambda: status(env), lambda run: run[0] == 0, timeout=60)
    assert after["verdict"] == "ok"
    assert breaker(after, "asset-api")["state"] == "closed"
    assert breaker(after, "asset-api")["failures"] == 0
    assert after["devices"]["byState"] == {}
    assert after["reconciliation"]["messages"] == 0
    assert stack.asset(asset_id)["deviceId"] == device_id


def test_the_queues_still_show_when_the_app_does_not_answer(stack: OutageStack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]
    code, document, _ = status(settings(stack, HEALTH_URL=f"http://127.0.0.1:{nobody}/api/health"))
    assert (code, document["verdict"]) == (3, "incomplete")
    app = document["app"]
    assert (app["answered"], app["status"], app["breakers"]) == (False, None, [])
    assert "did not answer" in app["problem"]
    for queue in ("reconciliation", "deadLetters", "auditBacklog"):
        assert document[queue]["read"], document[queue]
        assert isinstance(document[queue]["messages"], int)
    assert document["devices"]["read"]


def test_a_wrong_key_is_said_and_never_shown(stack: OutageStack) -> None:
    code, document, stderr = status(settings(stack, HEALTH_FUNCTION_KEY="not-the-key-123"))
    assert code == 3
    assert "refused the function key (401)" in document["app"]["problem"]
    assert "not-the-key-123" not in json.dumps(document) + stderr


def test_in_the_repository_it_finds_the_local_stack_by_itself(
    stack: OutageStack, tmp_path: Path
) -> None:
    """No setting at all: stack.json names the app (and its key), storage and the hubs."""
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "stack.json").write_text(json.dumps(stack.d))
    code, document, _ = status({}, cwd=tmp_path)
    assert code == 0, document
    assert document["app"]["url"] == f"{stack.d['functionHost']}/api/health"
    assert document["app"]["policyVersion"] == "demo-2026-11"
    assert [hub["hub"] for hub in document["devices"]["hubs"]] == list(HUBS)


def test_the_screen_is_one_screen_of_tables(stack: OutageStack) -> None:
    env = settings(stack)
    inherited = {k: v for k, v in os.environ.items() if k not in _STATUS_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-m", "operator_cli", "status"],
        env={**inherited, **env, "COLUMNS": "120"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 50, done.stdout
    for expected in (
        "app ok, policy demo-2026-11",
        "asset-api",
        "reconciliation",
        "dead letters by reason",
        "fallbacks waiting for reconciliation",
        "status ok",
    ):
        assert expected in done.stdout, done.stdout
    assert FUNCTION_KEY not in done.stdout
