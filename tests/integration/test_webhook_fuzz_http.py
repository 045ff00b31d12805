"""The webhook under property-based fuzzing through the real HTTP path: the dev functions host,
the reference asset service and Azurite. Never a 5xx, never a leak, and the host stays up."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.conftest import FUNCTION_KEY, RunningStack
from tests.webhook_fuzz import (
    APPROVED_SERIAL,
    VICTIM_ASSET,
    VICTIM_DEVICE,
    VICTIM_SERIAL,
    Certificates,
    allocation_bodies,
    leaks,
)

pytestmark = pytest.mark.slow

SUFFIX = uuid.uuid4().hex[:6]
CERTIFICATES = Certificates.make(f"fuzz-{SUFFIX}", f"SN-FUZZ-{SUFFIX}")


@pytest.fixture(scope="module")
def victim(stack: RunningStack) -> RunningStack:
    """A device whose asset has an approved replacement waiting; and the fuzzer's own asset."""
    with stack.asset_client() as assets:
        for asset_id, serial in (
            (VICTIM_ASSET, VICTIM_SERIAL),
            (f"AST-FUZZ-{SUFFIX}", f"SN-FUZZ-{SUFFIX}"),
        ):
            body = {"serialNumber": serial, "assetType": "valve-actuator", "location": "us-east/f"}
            assert assets.put(f"/assets/{asset_id}", json=body).status_code in (200, 201)
        linked = assets.post(
            f"/assets/{VICTIM_ASSET}/devices",
            json={"deviceId": VICTIM_DEVICE, "registrationId": "victim-7"},
        )
        assert linked.status_code in (200, 201), linked.text
        approval = {"oldDeviceId": VICTIM_DEVICE, "reason": "x", "approvedSerial": APPROVED_SERIAL}
        approved = assets.patch(
            f"/assets/{VICTIM_ASSET}",
            json={"status": "pendingReplacement", "replacement": approval},
            headers={
                "if-match": f'"{linked.json()["version"]}"',
                "content-type": "application/merge-patch+json",
            },
        )
        assert approved.status_code == 200, approved.text
    return stack


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(body=allocation_bodies(CERTIFICATES))
def test_no_hostile_request_gets_a_5xx_or_a_leak_over_http(victim: RunningStack, body: bytes):
    response = httpx.post(
        victim.allocate_url,
        content=body,
        params={"code": FUNCTION_KEY},
        headers={"content-type": "application/json"},
        timeout=15,
    )
    assert response.status_code < 500, (response.status_code, response.text)
    assert leaks(response.text) == [], response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert json.loads(response.text)["status"] == response.status_code
    with victim.asset_client() as assets:
        assert assets.get(f"/assets/{VICTIM_ASSET}").json()["deviceId"] == VICTIM_DEVICE
