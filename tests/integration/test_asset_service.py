"""The reference asset service as a real child process, spoken to over real HTTP."""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.asset_service import preconditions, validation
from devstack.processes import Child, stop_children
from tests.integration.asset_service_fixtures import (
    READ_ONLY_KEY,
    REPO_ROOT,
    WRITE_KEY,
    asset_service,
    start_asset_service,
)

__all__ = ["asset_service"]  # re-exported fixture: pytest finds it in this module's namespace

SEED_FILE = REPO_ROOT / "devstack" / "asset_service" / "seed_assets.json"
OPENAPI_FILE = REPO_ROOT / "asset_client" / "openapi.yaml"
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}


@pytest.fixture
async def client(asset_service: Child) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=asset_service.url, headers={"x-api-key": WRITE_KEY}, timeout=10
    ) as http:
        yield http


@pytest.fixture
def sync_client(asset_service: Child) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=asset_service.url, headers={"x-api-key": WRITE_KEY}, timeout=10
    ) as http:
        yield http


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def asset_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serialNumber": unique("SN-T"),
        "assetType": "temperature-sensor",
        "location": f"test/{uuid.uuid4().hex[:8]}/line-1",
        "attributes": {"manufacturer": "Contoso", "model": "T-1"},
    }
    body.update(overrides)
    return body


async def create_asset(http: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    asset_id = unique("T")
    response = await http.put(f"/assets/{asset_id}", json=asset_body(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def link(
    http: httpx.AsyncClient, asset_id: str, device_id: str, **extra: Any
) -> httpx.Response:
    body = {"deviceId": device_id, "registrationId": device_id, "thumbprint": "AB" * 20}
    body.update(extra)
    return await http.post(f"/assets/{asset_id}/devices", json=body)


async def history_types(http: httpx.AsyncClient, asset_id: str) -> list[str]:
    response = await http.get(f"/assets/{asset_id}/history")
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["items"]]


def assert_problem(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    for fragment in fragments:
        assert fragment in problem["detail"], problem
    return problem


def assert_asset(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    asset: dict[str, Any] = response.json()
    assert response.headers["etag"] == f'"{asset["version"]}"'
    return asset


# --- basics and seed -------------------------------------------------------------------------


async def test_healthz_needs_no_key(asset_service: Child) -> None:
    async with httpx.AsyncClient(base_url=asset_service.url) as anonymous:
        response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_seed_fleet_is_present_and_untouched(client: httpx.AsyncClient) -> None:
    seeds = json.loads(SEED_FILE.read_text())
    assert len(seeds) == 10
    responses = await asyncio.gather(*(client.get(f"/assets/{s['assetId']}") for s in seeds))
    for seed, response in zip(seeds, responses, strict=True):
        asset = assert_asset(response, 200)
        expected_status = "retired" if seed["assetId"] == "AST-9001" else "planned"
        assert asset["status"] == expected_status
        assert asset["serialNumber"] == seed["serialNumber"]
        assert asset["assetType"] == seed["assetType"]
        assert asset["location"] == seed["location"]
        assert asset["deviceId"] is None
        assert asset["provisioningStatus"] == "notProvisioned"
        assert asset["replacement"] is None
        assert set(asset["attributes"]) == {"manufacturer", "model"}
        assert asset["version"] == 1
        assert asset["updatedAt"].endswith("Z")
    assert await history_types(client, "AST-1001") == ["created"]


async def test_get_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/assets/AST-0000"), 404, "AST-0000")
    assert_problem(await client.get("/assets/AST-0000/history"), 404, "AST-0000")


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404)
    response = await client.delete("/assets/AST-1001")
    assert_problem(response, 405)
    assert {"GET", "PUT", "PATCH"} <= {m.strip() for m in response.headers["allow"].split(",")}


# --- listing ---------------------------------------------------------------------------------


async def test_list_by_serial_device_and_location(client: httpx.AsyncClient) -> None:
    response = await client.get("/assets", params={"serialNumber": "SN-2001"})
    assert response.status_code == 200
    assert [a["assetId"] for a in response.json()["items"]] == ["AST-2001"]
    assert response.json()["next"] is None

    asset = await create_asset(client)
    device_id = unique("dev")
    assert (await link(client, asset["assetId"], device_id)).status_code == 201
    by_device = await client.get("/assets", params={"deviceId": device_id})
    assert [a["assetId"] for a in by_device.json()["items"]] == [asset["assetId"]]
    both = await client.get(
        "/assets", params={"deviceId": device_id, "serialNumber": asset["serialNumber"]}
    )
    assert [a["assetId"] for a in both.json()["items"]] == [asset["assetId"]]
    mismatch = await client.get(
        "/assets", params={"deviceId": device_id, "serialNumber": "SN-2001"}
    )
    assert mismatch.json()["items"] == []

    plant = await client.get("/assets", params={"location": "us-east/plant-1/"})
    assert [a["assetId"] for a in plant.json()["items"]] == [
        "AST-1001",
        "AST-1002",
        "AST-4001",
        "AST-9001",
    ]


async def test_list_paginates_in_asset_id_order(client: httpx.AsyncClient) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/"
    assets = await asyncio.gather(
        *(create_asset(client, location=f"{prefix}line-{n}") for n in range(5))
    )
    created = sorted(asset["assetId"] for asset in assets)
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"location": prefix, "limit": 2}
        if after is not None:
            params["after"] = after
        response = await client.get("/assets", params=params)
        assert response.status_code == 200, response.text
        pages.append([a["assetId"] for a in response.json()["items"]])
        after = response.json()["next"]
        if after is None:
            break
        assert after == pages[-1][-1]
    assert pages == [created[0:2], created[2:4], created[4:5]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("color=red", "color"),
        ("deviceid=x", "deviceid"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("serialNumber=a&serialNumber=b", "serialNumber"),
        ("after=..%2F..", "after"),
    ],
)
async def test_bad_query_parameters_are_400(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    problem = assert_problem(await client.get(f"/assets?{query}"), 400, field)
    assert problem["field"] == field


# --- PUT -------------------------------------------------------------------------------------


async def test_put_creates_then_replaces_with_version_bump(client: httpx.AsyncClient) -> None:
    asset_id = unique("T")
    body = asset_body()
    created = assert_asset(await client.put(f"/assets/{asset_id}", json=body), 201)
    assert created["version"] == 1
    assert created["status"] == "planned"
    assert created["deviceId"] is None
    assert created["provisioningStatus"] == "notProvisioned"

    changed = dict(body, location="test/elsewhere", version=99, updatedAt="ignored")
    replaced = assert_asset(await client.put(f"/assets/{asset_id}", json=changed), 200)
    assert replaced["version"] == 2
    assert replaced["location"] == "test/elsewhere"

    same = assert_asset(await client.put(f"/assets/{asset_id}", json=changed), 200)
    assert same["version"] == 2, "a replace that changes nothing must not bump the version"
    fetched = assert_asset(await client.get(f"/assets/{asset_id}"), 200)
    assert fetched == replaced
    assert await history_types(client, asset_id) == ["created"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"assetId": "OTHER-1"}, "assetId"),
        ({"serialNumber": None}, "serialNumber"),
        ({"serialNumber": "bad\nserial"}, "serialNumber"),
        ({"assetType": "has space"}, "assetType"),
        ({"location": ""}, "location"),
        ({"location": "a\x00b"}, "location"),
        ({"status": "broken"}, "status"),
        ({"deviceId": "slash/not-allowed"}, "deviceId"),
        ({"attributes": ["not", "an", "object"]}, "attributes"),
        ({"attributes": {"blob": "x" * 17_000}}, "attributes"),
        ({"colour": "red"}, "colour"),
        ({"status": "pendingReplacement"}, "replacement"),
    ],
)
async def test_put_rejects_invalid_fields_by_name(
    client: httpx.AsyncClient, override: dict[str, Any], field: str
) -> None:
    body = asset_body(**override)
    if override.get("serialNumber", "") is None:
        del body["serialNumber"]
    problem = assert_problem(await client.put(f"/assets/{unique('T')}", json=body), 400, field)
    assert problem["field"] == field


async def test_duplicate_serial_is_409(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/assets/{unique('T')}", json=asset_body(serialNumber="SN-1001"))
    assert_problem(response, 409, "SN-1001", "AST-1001")


async def test_put_preconditions(client: httpx.AsyncClient) -> None:
    asset_id = unique("T")
    body = asset_body()
    fresh = await client.put(f"/assets/{asset_id}", json=body, headers={"if-none-match": "*"})
    assert_asset(fresh, 201)
    again = await client.put(f"/assets/{asset_id}", json=body, headers={"if-none-match": "*"})
    assert_problem(again, 412, asset_id)

    stale = await client.put(
        f"/assets/{asset_id}", json=dict(body, location="x/y"), headers={"if-match": '"7"'}
    )
    problem = assert_problem(stale, 412, "version is 1")
    assert problem["currentVersion"] == 1
    current = await client.put(
        f"/assets/{asset_id}", json=dict(body, location="x/y"), headers={"if-match": '"1"'}
    )
    assert assert_asset(current, 200)["version"] == 2
    missing = await client.put(
        f"/assets/{unique('T')}", json=asset_body(), headers={"if-match": '"1"'}
    )
    assert_problem(missing, 412, "does not exist")
    garbage = await client.put(f"/assets/{asset_id}", json=body, headers={"if-match": "2"})
    assert_problem(garbage, 400, "If-Match")


# --- PATCH -----------------------------------------------------------------------------------


async def test_patch_without_if_match_is_428(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    response = await client.patch(
        f"/assets/{asset['assetId']}", json={"location": "x/y"}, headers=MERGE_PATCH
    )
    assert_problem(response, 428, "If-Match")
    assert assert_asset(await client.get(f"/assets/{asset['assetId']}"), 200)["version"] == 1


async def test_patch_with_stale_version_is_412_naming_current(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    response = await client.patch(
        f"/assets/{asset['assetId']}",
        json={"location": "x/y"},
        headers={**MERGE_PATCH, "if-match": '"5"'},
    )
    problem = assert_problem(response, 412, "current version is 1")
    assert problem["currentVersion"] == 1


async def test_patch_bumps_version_and_noop_does_not(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    path = f"/assets/{asset['assetId']}"
    patched = assert_asset(
        await client.patch(
            path,
            json={"location": "test/moved", "provisioningStatus": "deregistered"},
            headers={**MERGE_PATCH, "if-match": '"1"'},
        ),
        200,
    )
    assert patched["version"] == 2
    assert patched["location"] == "test/moved"
    assert patched["provisioningStatus"] == "deregistered"
    assert patched["serialNumber"] == asset["serialNumber"]

    # application/json is accepted too; the same values again change nothing.
    noop = assert_asset(
        await client.patch(path, json={"location": "test/moved"}, headers={"if-match": '"2"'}),
        200,
    )
    assert noop["version"] == 2
    assert noop["updatedAt"] == patched["updatedAt"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"assetId": "OTHER"}, "assetId"),
        ({"version": 9}, "version"),
        ({"updatedAt": "2020-01-01T00:00:00Z"}, "updatedAt"),
        ({"deviceId": "sneaky"}, "deviceId"),
        ({"status": None}, "status"),
        ({"location": "a\x07b"}, "location"),
        ({"status": "pendingReplacement"}, "replacement"),
        ({"replacement": {"oldDeviceId": "x", "reason": "r"}}, "replacement"),
        ({"attributes": {"blob": "x" * 17_000}}, "attributes"),
    ],
)
async def test_patch_rejects_read_only_and_invalid_fields(
    client: httpx.AsyncClient, patch: dict[str, Any], field: str
) -> None:
    asset = await create_asset(client)
    response = await client.patch(
        f"/assets/{asset['assetId']}", json=patch, headers={**MERGE_PATCH, "if-match": '"1"'}
    )
    problem = assert_problem(response, 400, field)
    assert problem["field"] == field
    unchanged = assert_asset(await client.get(f"/assets/{asset['assetId']}"), 200)
    assert unchanged == asset


async def test_merge_patch_null_deletes_attribute_keys(client: httpx.AsyncClient) -> None:
    asset = await create_asset(
        client, attributes={"keep": 1, "drop": 2, "nested": {"a": 1, "b": 2}}
    )
    response = await client.patch(
        f"/assets/{asset['assetId']}",
        json={"attributes": {"drop": None, "nested": {"a": None, "c": 3}, "new": True}},
        headers={**MERGE_PATCH, "if-match": '"1"'},
    )
    patched = assert_asset(response, 200)
    assert patched["attributes"] == {"keep": 1, "nested": {"b": 2, "c": 3}, "new": True}
    assert patched["version"] == 2


async def test_patch_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/assets/AST-0000", json={"location": "x"}, headers={**MERGE_PATCH, "if-match": '"1"'}
    )
    assert_problem(response, 404, "AST-0000")


# --- linking devices -------------------------------------------------------------------------


async def test_link_then_identical_link_changes_nothing(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    asset_id = asset["assetId"]
    device_id = unique("dev")
    linked = assert_asset(await link(client, asset_id, device_id), 201)
    assert linked["deviceId"] == device_id
    assert linked["status"] == "active"
    assert linked["provisioningStatus"] == "provisioned"
    assert linked["version"] == 2

    again = assert_asset(await link(client, asset_id, device_id), 200)
    assert again == linked
    history = (await client.get(f"/assets/{asset_id}/history")).json()["items"]
    assert [e["type"] for e in history] == ["created", "deviceLinked"]
    event = history[1]
    assert event["deviceId"] == device_id
    assert event["registrationId"] == device_id
    assert event["thumbprint"] == "AB" * 20
    assert event["assetVersion"] == 2
    assert event["seq"] == 2
    assert event["at"].endswith("Z")


async def test_concurrent_identical_links_record_one_event(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    asset_id = asset["assetId"]
    device_id = unique("dev")
    responses = await asyncio.gather(*(link(client, asset_id, device_id) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert {r.json()["version"] for r in responses} == {2}
    assert await history_types(client, asset_id) == ["created", "deviceLinked"]


async def test_link_of_another_device_is_409_naming_the_linked_one(
    client: httpx.AsyncClient,
) -> None:
    asset = await create_asset(client)
    first, second = unique("dev"), unique("dev")
    assert (await link(client, asset["assetId"], first)).status_code == 201
    assert_problem(await link(client, asset["assetId"], second), 409, first)
    unapproved = await link(client, asset["assetId"], second, replacementFor=first)
    problem = assert_problem(unapproved, 409, first, "no approved replacement")
    assert problem["type"] == "urn:asset-api:problem:replacement-not-approved"
    assert await history_types(client, asset["assetId"]) == ["created", "deviceLinked"]


async def test_device_linked_elsewhere_is_409(client: httpx.AsyncClient) -> None:
    one, two = await create_asset(client), await create_asset(client)
    device_id = unique("dev")
    assert (await link(client, one["assetId"], device_id)).status_code == 201
    assert_problem(await link(client, two["assetId"], device_id), 409, one["assetId"])


async def test_retired_asset_refuses_links(client: httpx.AsyncClient) -> None:
    assert_problem(await link(client, "AST-9001", unique("dev")), 409, "retired")
    retired = await create_asset(client, status="retired")
    assert_problem(await link(client, retired["assetId"], unique("dev")), 409, "retired")
    assert await history_types(client, retired["assetId"]) == ["created"]


async def test_approved_replacement_swaps_the_device(client: httpx.AsyncClient) -> None:
    asset = await create_asset(client)
    asset_id = asset["assetId"]
    old, new, new_serial = unique("old"), unique("new"), unique("SN-NEW")
    assert (await link(client, asset_id, old)).status_code == 201

    approval = await client.patch(
        f"/assets/{asset_id}",
        json={
            "status": "pendingReplacement",
            "replacement": {
                "oldDeviceId": old,
                "reason": "water damage",
                "approvedSerial": new_serial,
            },
        },
        headers={**MERGE_PATCH, "if-match": '"2"'},
    )
    pending = assert_asset(approval, 200)
    assert pending["status"] == "pendingReplacement"
    assert pending["version"] == 3
    assert pending["replacement"]["oldDeviceId"] == old
    assert pending["replacement"]["reason"] == "water damage"
    assert pending["replacement"]["approvedSerial"] == new_serial
    assert pending["replacement"]["approvedThumbprint"] is None
    assert pending["replacement"]["approvedAt"].endswith("Z")

    wrong_old = await link(
        client, asset_id, new, replacementFor=unique("someone"), serialNumber=new_serial
    )
    assert_problem(wrong_old, 409, old)

    swapped = assert_asset(
        await link(client, asset_id, new, replacementFor=old, serialNumber=new_serial), 201
    )
    assert swapped["deviceId"] == new
    assert swapped["status"] == "active"
    assert swapped["replacement"] is None
    assert swapped["provisioningStatus"] == "provisioned"
    assert swapped["version"] == 4

    history = (await client.get(f"/assets/{asset_id}/history")).json()["items"]
    assert [e["type"] for e in history] == [
        "created",
        "deviceLinked",
        "replacementApproved",
        "deviceReplaced",
    ]
    assert [e["seq"] for e in history] == [1, 2, 3, 4]
    assert [e["assetVersion"] for e in history] == [1, 2, 3, 4]
    replaced = history[-1]
    assert replaced["oldDeviceId"] == old
    assert replaced["newDeviceId"] == new
    assert replaced["reason"] == "water damage"
    assert replaced["registrationId"] == new
    assert replaced["serialNumber"] == new_serial

    # The old device can no longer claim the asset, and the new one re-registers idempotently.
    assert_problem(await link(client, asset_id, old), 409, new)
    assert assert_asset(await link(client, asset_id, new), 200)["version"] == 4


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"registrationId": "r"}, "deviceId"),
        ({"deviceId": "d"}, "registrationId"),
        ({"deviceId": "d/x", "registrationId": "r"}, "deviceId"),
        ({"deviceId": "d", "registrationId": "r", "thumbprint": 5}, "thumbprint"),
        ({"deviceId": "d", "registrationId": "r", "reason": "why"}, "reason"),
        ({"deviceId": "d", "registrationId": "r", "deviceReason": "x" * 257}, "deviceReason"),
        ({"deviceId": "d", "registrationId": "r", "extra": 1}, "extra"),
    ],
)
async def test_link_validates_its_body(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post("/assets/AST-1001/devices", json=body), 400, field)
    assert problem["field"] == field


# --- auth ------------------------------------------------------------------------------------


async def test_missing_or_wrong_key_is_401(asset_service: Child) -> None:
    async with httpx.AsyncClient(base_url=asset_service.url) as anonymous:
        missing = await anonymous.get("/assets/AST-1001")
        wrong = await anonymous.get("/assets/AST-1001", headers={"x-api-key": "guess-the-key-123"})
        wrong_bearer = await anonymous.get(
            "/assets", headers={"authorization": "Bearer guess-the-key-123"}
        )
        bearer = await anonymous.get(
            "/assets/AST-1001", headers={"authorization": f"Bearer {WRITE_KEY}"}
        )
    for response in (missing, wrong, wrong_bearer):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "guess-the-key-123" not in response.text
    assert_asset(bearer, 200)


async def test_read_only_key_reads_but_cannot_write(asset_service: Child) -> None:
    async with httpx.AsyncClient(
        base_url=asset_service.url, headers={"x-api-key": READ_ONLY_KEY}
    ) as reader:
        assert_asset(await reader.get("/assets/AST-1002"), 200)
        assert (await reader.get("/assets/AST-1002/history")).status_code == 200
        writes = await asyncio.gather(
            reader.put(f"/assets/{unique('T')}", json=asset_body()),
            reader.patch("/assets/AST-1002", json={"location": "x"}, headers={"if-match": '"1"'}),
            reader.post("/assets/AST-1002/devices", json={"deviceId": "d", "registrationId": "d"}),
        )
    for response in writes:
        problem = assert_problem(response, 403, "read-only")
        assert READ_ONLY_KEY not in json.dumps(problem)


# --- hostile input ---------------------------------------------------------------------------


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    bodies = (
        b'{"serialNumber": ',
        b"",
        b"\xff\xfe{",
        b'{"a": NaN}',
        b"[" * 100_000,
        b'{"serialNumber": "S", "assetType": "t", "location": "a\\ud800b"}',
    )
    responses = await asyncio.gather(
        *(client.put(f"/assets/{unique('T')}", content=raw, headers=headers) for raw in bodies)
    )
    for response in responses:
        assert_problem(response, 400, "not valid JSON")
    wrong_type = await client.put(
        f"/assets/{unique('T')}", content=b"serialNumber=x", headers={"content-type": "text/plain"}
    )
    assert_problem(wrong_type, 415, "application/json")


async def test_body_over_one_mib_is_413(client: httpx.AsyncClient) -> None:
    big = json.dumps(asset_body(attributes={"pad": "x" * (1024 * 1024)})).encode()
    sized = await client.put(
        f"/assets/{unique('T')}", content=big, headers={"content-type": "application/json"}
    )
    assert_problem(sized, 413, "1048576")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    chunked = await client.put(
        f"/assets/{unique('T')}", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(chunked, 413)


HOSTILE_IDS = [
    "..%2F..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2E%2E",
    ".hidden",
    "-leading-dash",
    "a" * 129,
    "a" * 5000,
    "a%00b",
    "a%0D%0Ab",
    "a%20b",
    "%E2%9C%93",
    "caf%C3%A9",
    "%FF%FE",
    "a%2Fb",
]


@pytest.mark.parametrize("raw_id", HOSTILE_IDS)
async def test_hostile_asset_ids_are_refused_cleanly(
    client: httpx.AsyncClient, raw_id: str
) -> None:
    attempts = (
        ("GET", "", None),
        ("PUT", "", asset_body()),
        ("PATCH", "", {"location": "x"}),
        ("POST", "/devices", {"deviceId": "d", "registrationId": "d"}),
        ("GET", "/history", None),
    )
    responses = await asyncio.gather(
        *(
            client.request(
                method, f"/assets/{raw_id}{suffix}", json=body, headers={"if-match": '"1"'}
            )
            for method, suffix, body in attempts
        )
    )
    for (method, _, _), response in zip(attempts, responses, strict=True):
        assert response.status_code in (400, 404), (method, raw_id, response.text)
        assert_problem(response, response.status_code)


async def raw_request(url: str, request_line: str) -> tuple[int, str]:
    """Send bytes httpx would normalise (dot segments) and return status and body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"{request_line}\r\nHost: {parts.netloc}\r\nx-api-key: {WRITE_KEY}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


@pytest.mark.parametrize(
    "target",
    ["/assets/../../etc/passwd", "/assets/./AST-1001/../x", "/assets/AST-1001/..", "/assets//x"],
)
async def test_raw_dot_segments_never_escape(asset_service: Child, target: str) -> None:
    status, body = await raw_request(asset_service.url, f"GET {target} HTTP/1.1")
    assert status in (400, 404), body
    assert json.loads(body)["status"] == status


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.text(min_size=1, max_size=200))
def test_arbitrary_ids_never_break_the_service(sync_client: httpx.Client, raw: str) -> None:
    response = sync_client.get(f"/assets/{quote(raw, safe='')}/history")
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith(PROBLEM_JSON)


# --- persistence and the contract ------------------------------------------------------------


async def test_restart_keeps_data_and_does_not_reseed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_asset_service(tmp_path / "run", data_dir, name="asset-restart")
    try:
        async with httpx.AsyncClient(base_url=first.url, headers={"x-api-key": WRITE_KEY}) as c:
            asset = await create_asset(c)
            assert (await link(c, asset["assetId"], "dev-restart")).status_code == 201
            before = (await c.get(f"/assets/{asset['assetId']}")).json()
            history_before = (await c.get(f"/assets/{asset['assetId']}/history")).json()
    finally:
        stop_children([first])
    assert (data_dir / "assets.sqlite3").is_file()

    second = start_asset_service(tmp_path / "run", data_dir, name="asset-restart")
    try:
        async with httpx.AsyncClient(base_url=second.url, headers={"x-api-key": WRITE_KEY}) as c:
            after = assert_asset(await c.get(f"/assets/{asset['assetId']}"), 200)
            history_after = (await c.get(f"/assets/{asset['assetId']}/history")).json()
            everything = (await c.get("/assets", params={"limit": 1000})).json()["items"]
    finally:
        stop_children([second])
    assert after == before
    assert history_after == history_before
    assert len(everything) == 11  # ten seeded once, plus ours


async def test_no_seed_starts_empty(tmp_path: Path) -> None:
    child = start_asset_service(tmp_path / "run", tmp_path / "data", extra_args=["--no-seed"])
    try:
        async with httpx.AsyncClient(base_url=child.url, headers={"x-api-key": WRITE_KEY}) as c:
            response = await c.get("/assets")
    finally:
        stop_children([child])
    assert response.json() == {"items": [], "next": None}


def test_openapi_document_matches_the_service(sync_client: httpx.Client) -> None:
    yaml = importlib.import_module("yaml")  # PyYAML, installed with uvicorn[standard]
    document = yaml.safe_load(OPENAPI_FILE.read_text())
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/assets",
        "/assets/{assetId}",
        "/assets/{assetId}/devices",
        "/assets/{assetId}/history",
    }
    schemas = document["components"]["schemas"]
    asset = sync_client.get("/assets/AST-1003").json()
    assert set(schemas["Asset"]["required"]) == set(asset)
    assert set(schemas["Asset"]["properties"]) == set(asset)
    list_params = {p["name"] for p in document["paths"]["/assets"]["get"]["parameters"]}
    assert list_params == set(validation.LIST_PARAMETERS)
    assert set(schemas["DeviceLink"]["properties"]) == set(validation.LINK_FIELDS)
    for name, pattern in (
        ("AssetId", validation.ASSET_ID_PATTERN),
        ("DeviceId", validation.DEVICE_ID_PATTERN),
        ("AssetType", validation.ASSET_TYPE_PATTERN),
    ):
        assert schemas[name]["pattern"] == f"^{pattern.pattern}$", name
    for name, pattern in (
        ("SerialNumber", validation.PRINTABLE_PATTERN),
        ("DeviceReason", validation.PRINTABLE_PATTERN),
        ("Location", validation.TEXT_PATTERN),
        ("Reason", validation.TEXT_PATTERN),
    ):
        assert schemas[name]["pattern"] == f"^{pattern.pattern}$", name
    entity_tags = {alternative.get("const") for alternative in schemas["EntityTags"]["anyOf"]}
    tag_list = schemas["EntityTags"]["anyOf"][1]["pattern"]
    assert (entity_tags, tag_list) == ({"*", None}, f"^{preconditions.ENTITY_TAG_LIST.pattern}$")
    event = sync_client.get("/assets/AST-1003/history").json()["items"][0]
    assert set(schemas["HistoryEvent"]["required"]) <= set(event)
    assert event["type"] in schemas["HistoryEvent"]["properties"]["type"]["enum"]
