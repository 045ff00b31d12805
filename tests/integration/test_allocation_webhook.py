"""The allocation webhook over real HTTP: dev functions host -> app -> reference asset service."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from devstack.dps_requests import allocation_request
from tests.integration.conftest import FUNCTION_KEY, REPO, RunningStack, start_function_host

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"


def post(stack: RunningStack, body, *, key: str | None = FUNCTION_KEY) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    params = {"code": key} if key else {}
    return httpx.post(
        stack.allocate_url,
        content=raw,
        params=params,
        headers={"content-type": "application/json"},
        timeout=10,
    )


def new_asset(stack: RunningStack, asset_type="temperature-sensor", location="us-east/p/l", **kw):
    suffix = uuid.uuid4().hex[:8]
    asset_id, serial = f"AST-T-{suffix}", f"SN-T-{suffix}"
    with stack.asset_client() as client:
        response = client.put(
            f"/assets/{asset_id}",
            json={"serialNumber": serial, "assetType": asset_type, "location": location, **kw},
        )
        assert response.status_code == 201, response.text
    return asset_id, serial


def cert_body(ca, registration_id, serial, **kwargs):
    cert = ca.issue_device(registration_id, serial_number=serial)
    return allocation_request(
        registration_id, x509={"clientCertificate": cert.der_base64}, **kwargs
    )


def asset(stack: RunningStack, asset_id: str) -> dict[str, Any]:
    with stack.asset_client() as client:
        response = client.get(f"/assets/{asset_id}")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body


def history(stack: RunningStack, asset_id: str) -> list[dict[str, Any]]:
    with stack.asset_client() as client:
        items: list[dict[str, Any]] = client.get(f"/assets/{asset_id}/history").json()["items"]
        return items


def test_a_seeded_device_is_allocated_by_location_and_linked_once(stack, ca):
    body = cert_body(ca, "sensor-1001", "SN-1001")
    first = post(stack, body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["iotHubHostName"] == EAST
    tags = answer["initialTwin"]["tags"]
    assert tags["assetId"] == "AST-1001"
    assert tags["location"] == "us-east/plant-1/line-1"
    assert tags["deviceRole"] == "sensor"
    assert tags["provisioningState"] == "provisioned"
    permissions = answer["initialTwin"]["properties"]["desired"]["rolePermissions"]
    assert permissions == {
        "role": "sensor",
        "telemetry": {"send": True, "aggregate": False},
        "commands": {"receive": False, "relay": False},
        "configuration": "none",
        "deviceManagement": False,
    }
    linked = asset(stack, "AST-1001")
    assert linked["deviceId"] == "sensor-1001"
    assert linked["provisioningStatus"] == "provisioned"

    again = post(stack, body)
    assert again.status_code == 200
    assert again.json() == answer
    assert asset(stack, "AST-1001")["version"] == linked["version"]
    links = [e for e in history(stack, "AST-1001") if e["type"] == "deviceLinked"]
    assert len(links) == 1
    assert links[0]["deviceId"] == "sensor-1001"


@pytest.mark.parametrize(
    ("asset_type", "location", "hub", "role", "selection"),
    [
        ("valve-actuator", "us-east/plant-2/line-1", EAST, "actuator", "location"),
        ("field-gateway", "eu-west/site-b", WEST, "gateway", "location"),
        ("air-quality-sensor", "ap-south/site-x", None, "sensor", "spread"),
        ("label-printer", "eu-west/site-a/packing", WEST, "sensor", "location"),
    ],
)
def test_hub_and_role_follow_the_asset(stack, ca, asset_type, location, hub, role, selection):
    _, serial = new_asset(stack, asset_type, location)
    registration_id = f"dev-{uuid.uuid4().hex[:8]}"
    response = post(stack, cert_body(ca, registration_id, serial))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["iotHubHostName"] == (hub or answer["iotHubHostName"])
    assert answer["iotHubHostName"] in (EAST, WEST)
    assert answer["initialTwin"]["tags"]["deviceRole"] == role
    assert answer["initialTwin"]["tags"]["hubSelection"] == selection
    assert answer["initialTwin"]["properties"]["desired"]["rolePermissions"]["role"] == role


def test_a_reregistration_gets_the_same_answer_and_creates_nothing(stack, ca):
    asset_id, serial = new_asset(stack, "edge-gateway", "eu-west/site-c")
    body = cert_body(ca, "gw-rereg-1", serial)
    first = post(stack, body).json()
    version = asset(stack, asset_id)["version"]
    rereg = cert_body(ca, "gw-rereg-1", serial, current_hub=WEST)
    second = post(stack, rereg)
    assert second.status_code == 200
    assert second.json() == first
    assert asset(stack, asset_id)["version"] == version


async def test_concurrent_duplicate_registrations_link_exactly_once(stack, ca):
    asset_id, serial = new_asset(stack)
    body = json.dumps(cert_body(ca, "dup-device-1", serial)).encode()
    async with httpx.AsyncClient(timeout=10, params={"code": FUNCTION_KEY}) as client:
        responses = await asyncio.gather(
            *(client.post(stack.allocate_url, content=body) for _ in range(20))
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert len([e for e in history(stack, asset_id) if e["type"] == "deviceLinked"]) == 1


def test_an_unknown_device_is_refused_with_problem_json(stack, ca):
    response = post(stack, cert_body(ca, "ghost-device", "SN-DOES-NOT-EXIST"))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith(":unknown-device")
    assert "SN-DOES-NOT-EXIST" not in problem["detail"]
    assert "unknown_device" in problem["detail"]
    assert problem["requestId"]


def test_a_cn_that_differs_from_the_registration_id_is_400(stack, ca):
    _, serial = new_asset(stack)
    cert = ca.issue_device("the-real-device", serial_number=serial)
    body = allocation_request("an-impostor", x509={"clientCertificate": cert.der_base64})
    response = post(stack, body)
    assert response.status_code == 400
    assert response.json()["type"].endswith(":common-name-mismatch")


def test_an_expired_certificate_is_400(stack, ca):
    _, serial = new_asset(stack)
    past = datetime.now(UTC) - timedelta(days=30)
    cert = ca.issue_device(
        "expired-device", serial_number=serial, not_before=past - timedelta(days=60), not_after=past
    )
    body = allocation_request("expired-device", x509={"clientCertificate": cert.der_base64})
    response = post(stack, body)
    assert response.status_code == 400
    assert response.json()["type"].endswith(":certificate-expired")


def test_a_retired_asset_is_refused(stack, ca):
    response = post(stack, cert_body(ca, "sensor-9001", "SN-9001"))
    assert response.status_code == 409
    assert "retired" in response.json()["detail"]


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_the_webhook_needs_the_function_key(stack, ca, key):
    response = post(stack, cert_body(ca, "sensor-1002", "SN-1002"), key=key)
    assert response.status_code == 401


def test_the_function_key_may_come_as_a_header(stack, ca):
    _, serial = new_asset(stack)
    response = httpx.post(
        stack.allocate_url,
        json=cert_body(ca, "header-key-device", serial),
        headers={"x-functions-key": FUNCTION_KEY},
        timeout=10,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"this is not json", 400),
        (b'{"deviceRuntimeContext": {}}', 400),
        (b"{" + b" " * (100 * 1024) + b"}", 413),
    ],
)
def test_bad_bodies_get_clear_errors(stack, raw, status):
    response = post(stack, raw)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]


def test_get_is_not_allowed(stack):
    response = httpx.get(stack.allocate_url, params={"code": FUNCTION_KEY}, timeout=10)
    assert response.status_code == 405


@pytest.fixture(scope="module")
def host_without_assets(stack):
    """A second host whose asset API is a closed port: the asset system is down."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    reconciliation = f"reconciliation-{uuid.uuid4().hex[:8]}"
    defer_policy = stack.run_dir / "defer-policy.toml"
    defer_policy.write_text(
        (REPO / "policies" / "demo.toml")
        .read_text()
        .replace('policy = "fallback"', 'policy = "defer"')
    )
    hosts = {
        "fallback": start_function_host(
            stack.run_dir,
            f"http://127.0.0.1:{dead_port}",
            storage=stack.storage,
            name="host-no-assets",
            RECONCILIATION_QUEUE=reconciliation,
            ASSET_API_TIMEOUT_SECONDS="0.5",
            # Keep the message on the queue for the test to read: no reconciler on this host.
            **{"AzureWebJobs.reconcile.Disabled": "true"},
        ),
        "defer": start_function_host(
            stack.run_dir,
            f"http://127.0.0.1:{dead_port}",
            storage=stack.storage,
            name="host-no-assets-defer",
            POLICY_FILE=str(defer_policy),
        ),
    }
    yield hosts, reconciliation
    from devstack.processes import stop_children

    stop_children(list(hosts.values()))


def test_an_unreachable_asset_system_under_fallback_onboards_and_queues_reconciliation(
    host_without_assets, ca, stack
):
    hosts, queue_name = host_without_assets
    body = cert_body(ca, "sensor-1003", "SN-1003")
    response = httpx.post(
        f"{hosts['fallback'].url}/api/allocate",
        json=body,
        params={"code": FUNCTION_KEY},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tags = response.json()["initialTwin"]["tags"]
    assert tags["provisioningState"] == "pendingReconciliation"
    assert tags["deviceRole"] == "sensor"
    queue = QueueClient.from_connection_string(stack.storage, queue_name)
    [message] = queue.peek_messages(max_messages=32)
    content = json.loads(base64.b64decode(message.content))
    assert content["kind"] == "allocation"
    assert content["deviceId"] == "sensor-1003"
    assert content["hub"] == response.json()["iotHubHostName"]


def test_an_unreachable_asset_system_under_defer_is_503_with_retry_after(host_without_assets, ca):
    hosts, _ = host_without_assets
    body = cert_body(ca, "sensor-1003", "SN-1003")
    response = httpx.post(
        f"{hosts['defer'].url}/api/allocate",
        json=body,
        params={"code": FUNCTION_KEY},
        timeout=10,
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"
    assert response.json()["type"].endswith(":asset-system-unavailable")


@pytest.fixture(scope="module")
def host_with_wrong_asset_key(stack):
    host = start_function_host(
        stack.run_dir,
        stack.assets.url,
        storage=stack.storage,
        name="host-wrong-key",
        ASSET_API_KEY="not-the-key",
    )
    yield host
    from devstack.processes import stop_children

    stop_children([host])


def test_rejected_asset_credentials_are_502_and_never_echoed(host_with_wrong_asset_key, ca):
    response = httpx.post(
        f"{host_with_wrong_asset_key.url}/api/allocate",
        json=cert_body(ca, "sensor-1003", "SN-1003"),
        params={"code": FUNCTION_KEY},
        timeout=10,
    )
    assert response.status_code == 502
    assert b"not-the-key" not in response.content
    log = host_with_wrong_asset_key.log_tail(200)
    assert "not-the-key" not in log
    assert "registrationId=sensor-1003" in log
