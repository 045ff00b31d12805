"""The aiohttp asset adapter against the real reference service, and against a scripted server
for the failures the reference service does not produce on demand (slow, 5xx, bad bodies)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from asset_client import (
    AssetAccessDenied,
    AssetConflict,
    AssetContractViolation,
    AssetError,
    AssetNotFound,
    AssetRequestRejected,
    AssetUnavailable,
    DeviceLink,
)
from asset_client.http_adapter import HttpAssetRepository
from tests.integration.asset_service_fixtures import READ_ONLY_KEY, WRITE_KEY, asset_service

__all__ = ["asset_service"]

PROBLEM_TYPE = "urn:asset-api:problem:device-conflict"


@pytest.fixture
async def repo(asset_service):
    adapter = HttpAssetRepository(asset_service.url, api_key=WRITE_KEY, timeout_seconds=5)
    yield adapter
    await adapter.aclose()


async def test_lookups_return_typed_assets(repo):
    asset = await repo.get_asset("AST-1004")
    assert (asset.asset_type, asset.location, asset.status.value) == (
        "edge-gateway",
        "us-east/plant-2",
        "planned",
    )
    [by_serial] = await repo.find_by_serial_number("SN-2002")
    assert by_serial.asset_id == "AST-2002"
    assert await repo.find_by_device_id("nobody-has-this") == []
    assert await repo.find_by_serial_number("SN-NONE") == []


async def test_ids_with_reserved_url_characters_stay_in_their_segment(repo):
    # '?' and '=' are legal in IoT Hub device ids: they must not become query syntax.
    assert await repo.find_by_device_id("x?serialNumber=SN-1001") == []
    for hostile in ("AST-1001/history", "../assets/AST-1001", "AST-1001?x=1", ""):
        with pytest.raises(AssetRequestRejected, match="not a valid asset id"):
            await repo.get_asset(hostile)


async def test_link_is_idempotent_and_conflicts_are_typed(repo):
    link = DeviceLink(device_id=f"dev-{uuid.uuid4().hex[:6]}", registration_id="r-1")
    first = await repo.link_device("AST-2001", link)
    assert first.device_id == link.device_id
    again = await repo.link_device("AST-2001", link)
    assert again.version == first.version
    [found] = await repo.find_by_device_id(link.device_id)
    assert found.asset_id == "AST-2001"
    other = DeviceLink(device_id="someone-else", registration_id="someone-else")
    with pytest.raises(AssetConflict, match="409"):
        await repo.link_device("AST-2001", other)
    with pytest.raises(AssetNotFound):
        await repo.link_device("AST-NOPE", link)


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_bad_credentials_are_access_denied_and_not_echoed(asset_service, key):
    adapter = HttpAssetRepository(asset_service.url, api_key=key, timeout_seconds=5)
    try:
        with pytest.raises(AssetAccessDenied, match="401") as caught:
            await adapter.get_asset("AST-1001")
        assert "wrong" not in str(caught.value)
    finally:
        await adapter.aclose()


async def test_a_read_only_key_cannot_link(asset_service):
    adapter = HttpAssetRepository(asset_service.url, api_key=READ_ONLY_KEY, timeout_seconds=5)
    try:
        assert (await adapter.get_asset("AST-1001")).asset_id == "AST-1001"
        with pytest.raises(AssetAccessDenied, match="403"):
            await adapter.link_device("AST-3001", DeviceLink(device_id="d", registration_id="d"))
    finally:
        await adapter.aclose()


class _Scripted(BaseHTTPRequestHandler):
    script: ClassVar[dict[str, tuple[int, dict[str, str], bytes, float]]] = {}

    def do_GET(self) -> None:
        status, headers, body, delay = self.script[self.path.split("?")[0]]
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up (the timeout test)
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


HOSTILE_STATUSES = [400, 401, 403, 404, 409, 412, 422, 429, 500, 503]
LEAKS = ("SharedAccessKey=abc", "other-device-42")


def _problem(status: int, type_: str) -> bytes:
    """An error body whose free text echoes a secret and another device's id."""
    return json.dumps(
        {
            "type": type_,
            "title": f"Conflict with other-device-42 (status {status})",
            "status": status,
            "detail": "HostName=hub.example;DeviceId=other-device-42;SharedAccessKey=abc",
        }
    ).encode()


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    good = {"assetId": "A", "serialNumber": "S", "assetType": "t", "location": "l"}
    off_contract = json.dumps({**good, "status": "lost", "version": 1}).encode()
    problem_json = {"content-type": "application/problem+json"}
    hostile = {
        f"/assets/hostile-{status}": (status, problem_json, _problem(status, PROBLEM_TYPE), 0)
        for status in HOSTILE_STATUSES
    }
    _Scripted.script = {
        **hostile,
        "/assets/type-with-text": (
            409,
            problem_json,
            _problem(409, "urn:x SharedAccessKey=abc other-device-42"),
            0,
        ),
        "/assets/type-not-ascii": (409, problem_json, _problem(409, "urn:x:\u00e9v\u202e"), 0),
        "/assets/type-too-long": (409, problem_json, _problem(409, "urn:x:" + "a" * 5000), 0),
        "/assets/slow": (200, {}, b"{}", 1.5),
        "/assets/busy": (503, {"retry-after": "7"}, b"", 0),
        "/assets/throttled": (429, {"retry-after": "2"}, b"", 0),
        "/assets/broken": (500, {"content-type": "text/plain"}, b"boom", 0),
        "/assets/html": (200, {"content-type": "text/html"}, b"<html>login</html>", 0),
        "/assets/shape": (200, {}, off_contract, 0),
        "/assets/teapot": (418, {}, json.dumps({"detail": "short and stout"}).encode(), 0),
        "/assets": (200, {}, b'{"elements": []}', 0),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def scripted_repo(scripted):
    adapter = HttpAssetRepository(scripted, api_key="k", timeout_seconds=0.5)
    yield adapter
    await adapter.aclose()


async def test_a_slow_answer_times_out_as_unavailable(scripted_repo):
    started = time.perf_counter()
    with pytest.raises(AssetUnavailable, match="timed out"):
        await scripted_repo.get_asset("slow")
    assert time.perf_counter() - started < 1.4


@pytest.mark.parametrize(("asset_id", "retry_after"), [("busy", 7.0), ("throttled", 2.0)])
async def test_503_and_429_are_unavailable_with_retry_after(scripted_repo, asset_id, retry_after):
    with pytest.raises(AssetUnavailable) as caught:
        await scripted_repo.get_asset(asset_id)
    assert caught.value.retry_after == retry_after


async def test_500_is_unavailable_without_retry_after(scripted_repo):
    with pytest.raises(AssetUnavailable, match="500") as caught:
        await scripted_repo.get_asset("broken")
    assert caught.value.retry_after is None


async def test_other_4xx_is_rejected_with_its_status(scripted_repo):
    with pytest.raises(AssetRequestRejected, match="418") as caught:
        await scripted_repo.get_asset("teapot")
    assert caught.value.status == 418
    assert "short and stout" not in str(caught.value)


@pytest.mark.parametrize("status", HOSTILE_STATUSES)
async def test_error_text_from_the_asset_system_is_never_repeated(scripted_repo, status):
    with pytest.raises(AssetError) as caught:
        await scripted_repo.get_asset(f"hostile-{status}")
    message = str(caught.value)
    assert f"answered {status} to GET /assets/hostile-{status}" in message
    assert f"(problem type {PROBLEM_TYPE})" in message
    for leak in LEAKS:
        assert leak not in message
        assert leak not in repr(caught.value)


@pytest.mark.parametrize("asset_id", ["type-with-text", "type-not-ascii"])
async def test_a_problem_type_that_is_not_a_uri_is_left_out(scripted_repo, asset_id):
    with pytest.raises(AssetConflict) as caught:
        await scripted_repo.get_asset(asset_id)
    assert str(caught.value) == f"asset API answered 409 to GET /assets/{asset_id}"


async def test_a_long_problem_type_is_capped(scripted_repo):
    with pytest.raises(AssetConflict) as caught:
        await scripted_repo.get_asset("type-too-long")
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.get_asset("html"), "not JSON"),
        (lambda r: r.get_asset("shape"), "status"),
        (lambda r: r.find_by_device_id("x"), "items"),
    ],
)
async def test_off_contract_answers_are_contract_violations(scripted_repo, call, message):
    with pytest.raises(AssetContractViolation, match=message):
        await call(scripted_repo)


async def test_a_closed_port_is_unavailable():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = HttpAssetRepository(f"http://127.0.0.1:{port}", api_key=None, timeout_seconds=1)
    try:
        with pytest.raises(AssetUnavailable, match="unreachable"):
            await adapter.find_by_device_id("d")
    finally:
        await adapter.aclose()
