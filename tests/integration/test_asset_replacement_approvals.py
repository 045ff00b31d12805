"""Replacement approvals against the reference asset service, over real HTTP.

An approval lets one new device take an asset over from its linked device: only the hardware
it names, only until it expires, only once, decided in the link's own transaction.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.asset_service import fields, problems, validation
from devstack.processes import Child, stop_children
from tests.integration.asset_service_fixtures import (
    REPO_ROOT,
    WRITE_KEY,
    asset_service,
    start_asset_service,
)

__all__ = ["asset_service"]  # re-exported fixture: pytest finds it in this module's namespace

OPENAPI_FILE = REPO_ROOT / "asset_client" / "openapi.yaml"
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}
UNBOUND_WINDOW_SECONDS = 300.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def sha256_print() -> str:
    return secrets.token_hex(32).upper()


def sha1_print() -> str:
    return secrets.token_hex(20).upper()


def colon_lower(thumbprint: str) -> str:
    """The spelling certificate tools print: lowercase pairs split by colons."""
    return ":".join(thumbprint[i : i + 2] for i in range(0, len(thumbprint), 2)).lower()


@pytest.fixture
async def client(asset_service: Child) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=asset_service.url, headers={"x-api-key": WRITE_KEY}, timeout=10
    ) as http:
        yield http


@pytest.fixture(scope="module")
def windowed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    """A service that accepts approvals naming no hardware for a while after approvedAt."""
    base = tmp_path_factory.mktemp("asset-service-windowed")
    child = start_asset_service(
        base / "run",
        base / "data",
        name="asset-windowed",
        unbound_approval_window_seconds=UNBOUND_WINDOW_SECONDS,
    )
    try:
        yield child
    finally:
        stop_children([child])


@pytest.fixture
async def windowed(windowed_service: Child) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=windowed_service.url, headers={"x-api-key": WRITE_KEY}, timeout=10
    ) as http:
        yield http


async def linked_asset(http: httpx.AsyncClient) -> tuple[str, str]:
    """A fresh asset (version 2) linked to a fresh device: (assetId, deviceId)."""
    asset_id, device_id = unique("T"), unique("old")
    body = {
        "serialNumber": unique("SN-T"),
        "assetType": "temperature-sensor",
        "location": f"test/{uuid.uuid4().hex[:8]}/line-1",
    }
    created = await http.put(f"/assets/{asset_id}", json=body)
    assert created.status_code == 201, created.text
    linked = await http.post(
        f"/assets/{asset_id}/devices", json={"deviceId": device_id, "registrationId": device_id}
    )
    assert linked.status_code == 201, linked.text
    assert linked.json()["version"] == 2
    return asset_id, device_id


async def approve(
    http: httpx.AsyncClient, asset_id: str, old: str, *, version: int = 2, **terms: Any
) -> dict[str, Any]:
    replacement = {"oldDeviceId": old, "reason": "water damage", **terms}
    response = await http.patch(
        f"/assets/{asset_id}",
        json={"status": "pendingReplacement", "replacement": replacement},
        headers={**MERGE_PATCH, "if-match": f'"{version}"'},
    )
    assert response.status_code == 200, response.text
    asset: dict[str, Any] = response.json()
    assert asset["status"] == "pendingReplacement"
    return asset


def claim_body(new: str, old: str, **extra: Any) -> dict[str, Any]:
    return {"deviceId": new, "registrationId": new, "replacementFor": old, **extra}


async def claim(
    http: httpx.AsyncClient, asset_id: str, new: str, old: str, **extra: Any
) -> httpx.Response:
    return await http.post(f"/assets/{asset_id}/devices", json=claim_body(new, old, **extra))


def assert_refused(response: httpx.Response, type_: str, rule: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert problem["type"] == type_, problem
    assert problem["status"] == 409
    assert problem["rule"] == rule, problem
    return problem


async def get_asset(http: httpx.AsyncClient, asset_id: str) -> dict[str, Any]:
    response = await http.get(f"/assets/{asset_id}")
    assert response.status_code == 200, response.text
    asset: dict[str, Any] = response.json()
    return asset


async def history(http: httpx.AsyncClient, asset_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/assets/{asset_id}/history")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def assert_still_pending(http: httpx.AsyncClient, asset_id: str, old: str) -> None:
    asset = await get_asset(http, asset_id)
    assert (asset["deviceId"], asset["status"]) == (old, "pendingReplacement")
    assert asset["replacement"]["oldDeviceId"] == old
    assert "deviceReplaced" not in [e["type"] for e in await history(http, asset_id)]


# --- storing approvals -----------------------------------------------------------------------


async def test_approved_thumbprint_is_stored_normalized_and_restamps(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    thumbprint = sha256_print()
    pending = await approve(client, asset_id, old, approvedThumbprint=colon_lower(thumbprint))
    assert pending["replacement"]["approvedThumbprint"] == thumbprint
    assert pending["replacement"]["approvedSerial"] is None

    # The same thumbprint spelt another way is the same approval: nothing changes.
    spaced = " ".join(thumbprint[i : i + 2] for i in range(0, 64, 2))
    same = await client.patch(
        f"/assets/{asset_id}",
        json={"status": "pendingReplacement", "replacement": {"approvedThumbprint": spaced}},
        headers={"if-match": f'"{pending["version"]}"'},
    )
    assert same.status_code == 200, same.text
    assert same.json() == pending

    other = sha1_print()
    changed = await client.patch(
        f"/assets/{asset_id}",
        json={"status": "pendingReplacement", "replacement": {"approvedThumbprint": other.lower()}},
        headers={"if-match": f'"{pending["version"]}"'},
    )
    assert changed.status_code == 200, changed.text
    terms = changed.json()["replacement"]
    assert terms["approvedThumbprint"] == other
    approvals = [e for e in await history(client, asset_id) if e["type"] == "replacementApproved"]
    assert [e["approvedThumbprint"] for e in approvals] == [thumbprint, other]
    assert terms["approvedAt"] == approvals[-1]["at"]


@pytest.mark.parametrize(
    "value",
    ["AB" * 19, "AB" * 21, "AB" * 31 + "XY", "-".join(["AB"] * 20), 40, "AB" * 200],
)
async def test_malformed_approved_thumbprint_is_400(client: httpx.AsyncClient, value: Any) -> None:
    asset_id, old = await linked_asset(client)
    response = await client.patch(
        f"/assets/{asset_id}",
        json={
            "status": "pendingReplacement",
            "replacement": {"oldDeviceId": old, "reason": "r", "approvedThumbprint": value},
        },
        headers={"if-match": '"2"'},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "replacement.approvedThumbprint"


# --- bound approvals -------------------------------------------------------------------------


async def test_serial_bound_approval_admits_only_that_serial(client: httpx.AsyncClient) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)

    wrong = await claim(client, asset_id, unique("new"), old, serialNumber=unique("SN-OTHER"))
    problem = assert_refused(wrong, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedSerial")
    assert "serialNumber" in problem["detail"]
    assert serial not in wrong.text
    missing = await claim(client, asset_id, unique("new"), old)
    assert_refused(missing, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedSerial")
    await assert_still_pending(client, asset_id, old)

    new = unique("new")
    swapped = await claim(client, asset_id, new, old, serialNumber=serial)
    assert swapped.status_code == 201, swapped.text
    asset = swapped.json()
    assert (asset["deviceId"], asset["status"], asset["replacement"]) == (new, "active", None)
    replaced = (await history(client, asset_id))[-1]
    assert (replaced["type"], replaced["newDeviceId"], replaced["serialNumber"]) == (
        "deviceReplaced",
        new,
        serial,
    )


@pytest.mark.parametrize("kind", ["sha256", "sha1"])
async def test_thumbprint_bound_approval_admits_only_that_certificate(
    client: httpx.AsyncClient, kind: str
) -> None:
    asset_id, old = await linked_asset(client)
    sha256, sha1 = sha256_print(), sha1_print()
    approved = sha256 if kind == "sha256" else sha1
    await approve(client, asset_id, old, approvedThumbprint=colon_lower(approved))

    strangers = (
        {"thumbprint": sha256_print(), "sha1Thumbprint": sha1_print()},
        {"thumbprint": sha1_print()},
        {"serialNumber": unique("SN")},
    )
    for presented in strangers:
        refused = await claim(client, asset_id, unique("new"), old, **presented)
        assert_refused(refused, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedThumbprint")
        for spelling in (approved, approved.lower(), colon_lower(approved)):
            assert spelling not in refused.text
    await assert_still_pending(client, asset_id, old)

    new = unique("new")
    swapped = await claim(client, asset_id, new, old, thumbprint=sha256, sha1Thumbprint=sha1)
    assert swapped.status_code == 201, swapped.text
    assert swapped.json()["deviceId"] == new
    replaced = (await history(client, asset_id))[-1]
    assert (replaced["type"], replaced["thumbprint"], replaced["sha1Thumbprint"]) == (
        "deviceReplaced",
        sha256,
        sha1,
    )


async def test_sha1_approval_matches_a_sha1_sent_as_the_thumbprint(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    sha1 = sha1_print()
    await approve(client, asset_id, old, approvedThumbprint=sha1)
    swapped = await claim(client, asset_id, unique("new"), old, thumbprint=colon_lower(sha1))
    assert swapped.status_code == 201, swapped.text


async def test_approval_naming_serial_and_thumbprint_needs_both(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    serial, thumbprint = unique("SN-NEW"), sha256_print()
    await approve(client, asset_id, old, approvedSerial=serial, approvedThumbprint=thumbprint)

    serial_only = await claim(client, asset_id, unique("new"), old, serialNumber=serial)
    assert_refused(serial_only, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedThumbprint")
    print_only = await claim(client, asset_id, unique("new"), old, thumbprint=thumbprint)
    assert_refused(print_only, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedSerial")
    both = await claim(
        client, asset_id, unique("new"), old, serialNumber=serial, thumbprint=thumbprint
    )
    assert both.status_code == 201, both.text


# --- unbound, expired, used ------------------------------------------------------------------


async def test_unbound_approval_is_stored_but_refused_by_default(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    pending = await approve(client, asset_id, old)
    assert pending["replacement"]["approvedSerial"] is None
    assert pending["replacement"]["approvedThumbprint"] is None

    refused = await claim(
        client, asset_id, unique("new"), old, serialNumber="SN-ANY", thumbprint=sha256_print()
    )
    problem = assert_refused(
        refused, problems.REPLACEMENT_APPROVAL_UNBOUND, "unboundApprovalWindow"
    )
    assert "approvedSerial" in problem["detail"]
    assert "approvedThumbprint" in problem["detail"]
    await assert_still_pending(client, asset_id, old)


async def test_unbound_approval_is_accepted_within_the_window(
    windowed: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(windowed)
    await approve(windowed, asset_id, old)
    new = unique("new")
    swapped = await claim(windowed, asset_id, new, old)
    assert swapped.status_code == 201, swapped.text
    assert swapped.json()["deviceId"] == new


async def test_the_window_does_not_loosen_a_bound_approval(windowed: httpx.AsyncClient) -> None:
    asset_id, old = await linked_asset(windowed)
    await approve(windowed, asset_id, old, approvedSerial=unique("SN-NEW"))
    refused = await claim(windowed, asset_id, unique("new"), old, serialNumber="SN-WRONG")
    assert_refused(refused, problems.REPLACEMENT_HARDWARE_MISMATCH, "approvedSerial")


async def test_expired_approval_is_refused(tmp_path: Path) -> None:
    # 0.000001 hours is 3.6 ms; the pause below outlasts it whatever the machine's speed.
    child = start_asset_service(
        tmp_path / "run", tmp_path / "data", name="asset-short-ttl", approval_ttl_hours=0.000001
    )
    try:
        async with httpx.AsyncClient(
            base_url=child.url, headers={"x-api-key": WRITE_KEY}, timeout=10
        ) as http:
            asset_id, old = await linked_asset(http)
            serial = unique("SN-NEW")
            await approve(http, asset_id, old, approvedSerial=serial)
            await asyncio.sleep(0.05)
            refused = await claim(http, asset_id, unique("new"), old, serialNumber=serial)
            problem = assert_refused(refused, problems.REPLACEMENT_APPROVAL_EXPIRED, "approvalTtl")
            assert "expired" in problem["detail"]
            assert serial not in refused.text
            await assert_still_pending(http, asset_id, old)
    finally:
        stop_children([child])


async def test_an_approval_is_used_once(client: httpx.AsyncClient) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)
    first = unique("new")
    assert (await claim(client, asset_id, first, old, serialNumber=serial)).status_code == 201

    # The same hardware again, claiming either the old device or the winner, finds no approval.
    again = await claim(client, asset_id, unique("new"), first, serialNumber=serial)
    assert_refused(again, problems.REPLACEMENT_NOT_APPROVED, "approval")
    stale = await claim(client, asset_id, unique("new"), old, serialNumber=serial)
    assert stale.status_code == 409, stale.text
    assert stale.json()["type"] == problems.DEVICE_CONFLICT
    asset = await get_asset(client, asset_id)
    assert (asset["deviceId"], asset["status"]) == (first, "active")
    types = [e["type"] for e in await history(client, asset_id)]
    assert types.count("deviceReplaced") == 1


def send_at_once(url: str, path: str, bodies: list[dict[str, Any]]) -> list[int]:
    """POST each body from its own thread and connection, released together by a barrier."""
    statuses = [0] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        with httpx.Client(base_url=url, headers={"x-api-key": WRITE_KEY}, timeout=10) as own:
            start.wait()
            statuses[index] = own.post(path, json=bodies[index]).status_code

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


async def test_concurrent_claims_for_one_approval_have_one_winner(
    asset_service: Child, client: httpx.AsyncClient
) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)
    claims = [
        claim_body(unique("new"), old, serialNumber=serial if n % 2 else unique("SN-X"))
        for n in range(20)
    ]
    statuses = await asyncio.to_thread(
        send_at_once, asset_service.url, f"/assets/{asset_id}/devices", claims
    )

    winners = [body for body, status in zip(claims, statuses, strict=True) if status == 201]
    assert len(winners) == 1, statuses
    assert statuses.count(409) == len(claims) - 1, statuses
    assert winners[0]["serialNumber"] == serial
    asset = await get_asset(client, asset_id)
    assert (asset["deviceId"], asset["replacement"]) == (winners[0]["deviceId"], None)
    replaced = [e for e in await history(client, asset_id) if e["type"] == "deviceReplaced"]
    assert [e["newDeviceId"] for e in replaced] == [winners[0]["deviceId"]]


# --- what the device says about itself -------------------------------------------------------


async def test_device_reason_is_recorded_apart_from_the_technicians(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)
    new = unique("new")
    swapped = await claim(
        client, asset_id, new, old, serialNumber=serial, deviceReason="approved by the CEO"
    )
    assert swapped.status_code == 201, swapped.text
    replaced = (await history(client, asset_id))[-1]
    assert replaced["type"] == "deviceReplaced"
    assert replaced["reason"] == "water damage"
    assert replaced["deviceReason"] == "approved by the CEO"
    assert (replaced["oldDeviceId"], replaced["newDeviceId"]) == (old, new)


async def test_device_reason_is_optional_and_recorded_as_null(client: httpx.AsyncClient) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)
    swapped = await claim(client, asset_id, unique("new"), old, serialNumber=serial)
    assert swapped.status_code == 201, swapped.text
    replaced = (await history(client, asset_id))[-1]
    assert (replaced["reason"], replaced["deviceReason"]) == ("water damage", None)


async def test_a_device_reason_of_256_printable_characters_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    asset_id, old = await linked_asset(client)
    serial = unique("SN-NEW")
    await approve(client, asset_id, old, approvedSerial=serial)
    text = ("écran cassé, " * 20)[:256]
    swapped = await claim(
        client, asset_id, unique("new"), old, serialNumber=serial, deviceReason=text
    )
    assert swapped.status_code == 201, swapped.text
    assert (await history(client, asset_id))[-1]["deviceReason"] == text


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"deviceReason": "x" * 257}, "deviceReason"),
        ({"deviceReason": ""}, "deviceReason"),
        ({"deviceReason": "line\nbreak"}, "deviceReason"),
        ({"deviceReason": "nul\x00"}, "deviceReason"),
        ({"deviceReason": "esc\x1b[2J"}, "deviceReason"),
        ({"deviceReason": "bidi \u202eevil"}, "deviceReason"),
        ({"deviceReason": 7}, "deviceReason"),
        ({"reason": "the old member"}, "reason"),
        ({"serialNumber": "tab\there"}, "serialNumber"),
        ({"serialNumber": "s" * 129}, "serialNumber"),
        ({"thumbprint": "not-hex"}, "thumbprint"),
        ({"thumbprint": "AB" * 21}, "thumbprint"),
        ({"sha1Thumbprint": "AB" * 32}, "sha1Thumbprint"),
        ({"thumbprint": "AB" * 20, "sha1Thumbprint": "CD" * 20}, "sha1Thumbprint"),
    ],
)
async def test_link_body_members_are_validated(
    client: httpx.AsyncClient, extra: dict[str, Any], field: str
) -> None:
    asset_id, old = await linked_asset(client)
    response = await claim(client, asset_id, unique("new"), old, **extra)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == problems.VALIDATION
    assert problem["field"] == field


# --- the contract ----------------------------------------------------------------------------


async def test_openapi_documents_approvals_as_served(client: httpx.AsyncClient) -> None:
    yaml = importlib.import_module("yaml")
    document = yaml.safe_load(OPENAPI_FILE.read_text())
    schemas = document["components"]["schemas"]
    asset_id, old = await linked_asset(client)
    thumbprint = sha256_print()
    pending = await approve(client, asset_id, old, approvedThumbprint=thumbprint)
    served = set(pending["replacement"])
    assert (
        set(schemas["Replacement"]["required"])
        == served
        == set(schemas["Replacement"]["properties"])
    )
    assert set(schemas["ReplacementWrite"]["properties"]) == set(fields.REPLACEMENT_FIELDS)
    assert set(schemas["DeviceLink"]["properties"]) == set(validation.LINK_FIELDS)
    for name, pattern in (
        ("ThumbprintInput", validation.THUMBPRINT_PATTERN),
        ("Sha1ThumbprintInput", validation.SHA1_THUMBPRINT_PATTERN),
    ):
        assert schemas[name]["pattern"] == f"^{pattern.pattern}$", name
    assert schemas["DeviceReason"]["maxLength"] == validation.MAX_DEVICE_REASON_CHARS

    swapped = await claim(client, asset_id, unique("new"), old, thumbprint=thumbprint)
    assert swapped.status_code == 201, swapped.text
    replaced = (await history(client, asset_id))[-1]
    assert set(replaced) <= set(schemas["HistoryEvent"]["properties"])

    documented = set(schemas["Problem"]["properties"]["type"]["enum"])
    link = document["paths"]["/assets/{assetId}/devices"]["post"]
    for type_ in (
        problems.REPLACEMENT_NOT_APPROVED,
        problems.REPLACEMENT_APPROVAL_EXPIRED,
        problems.REPLACEMENT_APPROVAL_UNBOUND,
        problems.REPLACEMENT_HARDWARE_MISMATCH,
    ):
        assert type_ in documented
        assert type_.rsplit(":", 1)[1] in link["description"], type_
