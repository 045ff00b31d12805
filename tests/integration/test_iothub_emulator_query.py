"""POST /devices/query on the IoT Hub emulator, over real HTTPS, with the SDK's own query call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.iot.hub.models import QuerySpecification, Twin
from msrest.exceptions import HttpOperationError

from devstack.processes import stop_children
from iothub_client import string_literal
from tests.integration.iothub_fixtures import (
    HUB_US,
    RunningIotHubEmulator,
    iothub_emulator,
    start_iothub_emulator,
)

__all__ = ["iothub_emulator"]

API = {"api-version": "2021-04-12"}


@pytest.fixture(scope="module")
def rm(iothub_emulator: RunningIotHubEmulator) -> Any:
    return iothub_emulator.registry_manager()


@pytest.fixture(scope="module")
def http(iothub_emulator: RunningIotHubEmulator) -> Iterator[httpx.Client]:
    with iothub_emulator.http() as client:
        yield client


def tagged_devices(rm: Any, count: int, **tags: Any) -> tuple[str, list[str]]:
    """`count` devices tagged with a fresh `run` value (so queries see only them), in id order."""
    run = uuid.uuid4().hex[:10]
    ids = [f"q-{run}-{n:02d}" for n in range(count)]
    for device_id in ids:
        rm.create_device_with_certificate_authority(device_id, "enabled")
        rm.update_twin(device_id, Twin(tags={"run": run, **tags}))
    return run, ids


def of_run(run: str, *conditions: str) -> str:
    """The query selecting one run's devices, and the further conditions given."""
    where = " AND ".join([f"tags.run = {string_literal(run)}", *conditions])
    return f"SELECT * FROM devices WHERE {where}"  # noqa: S608 (an IoT Hub query, quoted)


def post_query(
    http: httpx.Client, query: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return http.post("/devices/query", params=API, json={"query": query}, headers=headers)


def error_code(response: httpx.Response) -> str:
    message = response.json()["Message"]
    assert message.startswith("ErrorCode:"), message
    return str(message.removeprefix("ErrorCode:").split(";", 1)[0])


def test_the_sdk_pages_through_matching_twins_with_continuation_tokens(rm: Any):
    run, ids = tagged_devices(rm, 7, state="pending")
    rm.update_twin(ids[3], Twin(tags={"state": "done"}))
    spec = QuerySpecification(query=of_run(run))
    pages: list[list[str]] = []
    token = None
    while True:
        result = rm.query_iot_hub(spec, token, "3")
        assert result.type == "twin"
        assert all(isinstance(item, Twin) for item in result.items)
        pages.append([item.device_id for item in result.items])
        token = result.continuation_token
        if token is None:
            break
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]

    pending = QuerySpecification(query=of_run(run, "tags.state = 'pending'"))
    result = rm.query_iot_hub(pending, None, "10")
    assert [item.device_id for item in result.items] == ids[:3] + ids[4:]
    assert result.continuation_token is None


def test_items_are_twins_shaped_as_get_twin_returns_them(http: httpx.Client, rm: Any):
    run, [device_id] = tagged_devices(rm, 1, pendingSince="2025-12-01T00:00:00Z")
    response = post_query(http, of_run(run))
    assert response.status_code == 200, response.text
    assert response.headers["x-ms-item-type"] == "twin"
    assert "x-ms-continuation" not in response.headers
    assert response.headers["content-type"].startswith("application/json")
    twin = http.get(f"/twins/{device_id}", params=API).json()
    assert response.json() == [twin]


def test_a_page_that_ends_early_says_so_only_when_more_match(http: httpx.Client, rm: Any):
    run, ids = tagged_devices(rm, 4)
    query = of_run(run)
    first = post_query(http, query, {"x-ms-max-item-count": "2"})
    token = first.headers["x-ms-continuation"]
    second = post_query(http, query, {"x-ms-max-item-count": "2", "x-ms-continuation": token})
    assert [t["deviceId"] for t in first.json() + second.json()] == ids
    assert "x-ms-continuation" not in second.headers, "exactly two pages of two"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT deviceId FROM devices",
        "SELECT * FROM devices.modules",
        "SELECT * FROM devices WHERE tags.a IN ['x', 'y']",
        "SELECT * FROM devices WHERE tags.a = ",
        "DELETE FROM devices",
    ],
)
def test_a_query_outside_the_subset_is_400_with_iot_hubs_error_body(http: httpx.Client, query: str):
    response = post_query(http, query)
    assert response.status_code == 400
    assert error_code(response) == "BadRequest"
    assert response.headers["iothub-errorcode"] == "BadRequest"
    assert "ExceptionMessage" in response.json()


def test_the_sdk_sees_a_bad_query_as_a_400(rm: Any):
    with pytest.raises(HttpOperationError) as caught:
        rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE"), None, "5")
    assert caught.value.response.status_code == 400


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"sql": "SELECT * FROM devices"}, {}),
        (["SELECT * FROM devices"], {}),
        ({"query": "SELECT * FROM devices"}, {"x-ms-max-item-count": "many"}),
        ({"query": "SELECT * FROM devices"}, {"x-ms-max-item-count": "0"}),
        ({"query": "SELECT * FROM devices"}, {"x-ms-continuation": "bm90LWEtdG9rZW4="}),
    ],
)
def test_bad_bodies_page_sizes_and_tokens_are_400_argument_invalid(
    http: httpx.Client, body: Any, headers: dict[str, str]
):
    response = http.post("/devices/query", params=API, json=body, headers=headers)
    assert response.status_code == 400
    assert error_code(response) == "ArgumentInvalid"


def test_a_token_continues_only_the_query_that_issued_it(http: httpx.Client, rm: Any):
    run, _ = tagged_devices(rm, 2)
    query = of_run(run)
    token = post_query(http, query, {"x-ms-max-item-count": "1"}).headers["x-ms-continuation"]
    other = post_query(http, "SELECT * FROM devices", {"x-ms-continuation": token})
    assert other.status_code == 400
    assert error_code(other) == "ArgumentInvalid"


def test_queries_need_authentication_and_a_right_to_read_twins(
    iothub_emulator: RunningIotHubEmulator,
):
    hub = iothub_emulator.hub(HUB_US)
    with httpx.Client(verify=iothub_emulator.ssl_context()) as anonymous:
        response = anonymous.post(
            f"{hub.url}/devices/query", params=API, json={"query": "SELECT * FROM devices"}
        )
    assert response.status_code == 401
    for policy in ("registryRead", "service"):
        reader = iothub_emulator.registry_manager(policy=policy)
        result = reader.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"), None, "1")
        assert result.type == "twin"


def test_get_on_the_query_path_is_405_allowing_post(http: httpx.Client):
    response = http.get("/devices/query", params=API)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_queries_and_page_sizes_follow_the_hubs_limits(tmp_path: Path):
    emulator = start_iothub_emulator(
        tmp_path / "run",
        tmp_path / "data" / "iothub",
        hubs=[(HUB_US, 0)],
        extra_args=["--queries-per-minute", "2", "--query-page-size-max", "2"],
    )
    try:
        _, ids = tagged_devices(emulator.registry_manager(), 3)
        with emulator.http() as client:
            first = post_query(client, "SELECT * FROM devices", {"x-ms-max-item-count": "50"})
            assert [t["deviceId"] for t in first.json()] == ids[:2]
            assert "x-ms-continuation" in first.headers
            assert post_query(client, "SELECT * FROM devices").status_code == 200
            throttled = post_query(client, "SELECT * FROM devices")
        assert throttled.status_code == 429
        assert error_code(throttled) == "ThrottlingException"
        assert int(throttled.headers["Retry-After"]) >= 1
    finally:
        stop_children([emulator.child])
