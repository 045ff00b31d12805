"""GET /api/health: the report built from the breakers and the policy, the trigger that answers
it behind the function key, and the composition root that hands it every live breaker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from health.blueprint import health_blueprint
from health.report import HealthReport, health_report
from tests.unit.test_settings_and_startup import SETTING_NAMES

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
KEY = "c2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtdG8tYmUtc2hvd24="


@dataclass
class StubBreaker:
    name: str
    state: str = "closed"
    state_since: datetime | None = None
    fail_counter: int = 0
    fail_max: int = 5
    reset_timeout_seconds: float = 30.0


def test_every_breaker_closed_is_ok_and_the_shape_is_the_documented_one():
    report = health_report(
        policy_version="demo-2026-11",
        breakers=[StubBreaker("asset-api"), StubBreaker(f"iot-hub:{EAST}", fail_counter=2)],
        now=T0,
    )
    assert json.loads(report.to_json()) == {
        "schemaVersion": 1,
        "status": "ok",
        "checkedAt": "2026-05-01T12:00:00Z",
        "policy": {"version": "demo-2026-11"},
        "breakers": [
            {
                "name": "asset-api",
                "state": "closed",
                "since": None,
                "failures": 0,
                "failMax": 5,
                "resetSeconds": 30.0,
            },
            {
                "name": f"iot-hub:{EAST}",
                "state": "closed",
                "since": None,
                "failures": 2,
                "failMax": 5,
                "resetSeconds": 30.0,
            },
        ],
    }


@pytest.mark.parametrize("state", ["open", "half-open", "something-new"])
def test_a_breaker_not_closed_makes_the_app_degraded(state):
    report = health_report(
        policy_version="v1",
        breakers=[StubBreaker("asset-api", state, T0, 5), StubBreaker(f"iot-hub:{EAST}")],
        now=T0,
    )
    assert report.status == "degraded"
    assert report.breakers[0].state == ("half-open" if state == "half-open" else "open")
    assert report.breakers[0].since == T0


def test_the_cli_reads_back_what_the_app_writes():
    written = health_report(
        policy_version="v1", breakers=[StubBreaker("asset-api", "open", T0, 3)], now=T0
    )
    assert HealthReport.model_validate_json(written.to_json()) == written


def registered(services: Any) -> Any:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(health_blueprint(lambda: services))
    [function] = app.get_functions()
    return function


def test_the_endpoint_is_get_health_behind_the_function_key():
    function = registered(None)
    assert function.get_function_name() == "health"
    trigger = json.loads(function.get_function_json())["bindings"][0]
    assert (trigger["type"], trigger["route"], trigger["methods"], trigger["authLevel"]) == (
        "httpTrigger",
        "health",
        ["GET"],
        "FUNCTION",
    )


async def test_the_endpoint_answers_the_report_of_the_live_breakers():
    breakers = [StubBreaker("asset-api", "open", T0, 5)]
    services = SimpleNamespace(policy=SimpleNamespace(version="v7"), breakers=lambda: breakers)
    health = registered(services).get_user_function()
    request = func.HttpRequest("GET", "http://localhost/api/health", body=b"")
    answer = await health(request)
    assert answer.status_code == 200, "degraded is still an app that answers"
    assert answer.mimetype == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    body = json.loads(answer.get_body())
    assert (body["status"], body["policy"]) == ("degraded", {"version": "v7"})
    assert [(b["name"], b["state"], b["failures"]) for b in body["breakers"]] == [
        ("asset-api", "open", 5)
    ]
    breakers[0].state = "closed"
    assert json.loads((await health(request)).get_body())["status"] == "ok", "read per call"


@pytest.fixture
def app_settings(monkeypatch):
    from settings import load_settings

    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    hubs = {
        hub: f"HostName={hub};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        for hub in (EAST, WEST)
    }
    values = {
        "ASSET_API_URL": "http://127.0.0.1:7080",
        "ASSET_API_KEY": KEY,
        "POLICY_FILE": "policies/demo.toml",
        "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}",
        "IOT_HUB_CONNECTION_STRINGS": json.dumps(hubs),
        "ASSET_API_BREAKER_FAILURES": "3",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return load_settings()


async def test_the_composition_root_hands_over_the_asset_apis_and_every_hubs_breaker(
    app_settings, demo_policy
):
    import bootstrap

    services = bootstrap.build_services(app_settings, demo_policy)
    try:
        breakers = services.breakers()
        assert [(b.name, b.state, b.fail_max) for b in breakers] == [
            ("asset-api", "closed", 3),
            (f"iot-hub:{WEST}", "closed", 5),
            (f"iot-hub:{EAST}", "closed", 5),
        ]
        assert services.breakers()[0] is breakers[0], "the live breakers, not copies"
        text = health_report(
            policy_version=services.policy.version, breakers=breakers, now=T0
        ).to_json()
        assert KEY not in text
        assert "127.0.0.1" not in text
        assert "acct" not in text
    finally:
        await services.aclose()
