"""Pooled connections a front end closed while idle are no outage; connections it refuses are.

Real HTTP over loopback: the asset adapter (with retries and the real Breaker around it) talks
to a tiny aiohttp.web asset API through IdleFrontEnd, which resets connections idle past its
timeout when they are used again, or every connection when the dependency is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from asset_client import AssetCircuitOpen, AssetRepository, AssetUnavailable, DeviceLink
from asset_client.http_adapter import HttpAssetRepository
from resilience.breaker import Breaker
from resilience.resilient_assets import ResilientAssetRepository, is_outage
from resilience.retry import RetryPolicy
from tests.integration.idle_front_end import IdleFrontEnd

IDLE_TIMEOUT = 0.2
ASSET = {
    "assetId": "AST-1",
    "serialNumber": "SN-1",
    "assetType": "sensor",
    "location": "eu/plant-1",
    "status": "active",
    "version": 3,
}


def _asset_api() -> web.Application:
    async def get_asset(request: web.Request) -> web.Response:
        return web.json_response({**ASSET, "assetId": request.match_info["asset_id"]})

    async def find(_: web.Request) -> web.Response:
        return web.json_response({"items": [ASSET]})

    async def link(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({**ASSET, "deviceId": body["deviceId"]})

    async def patch(request: web.Request) -> web.Response:
        return web.json_response({**ASSET, **(await request.json())})

    app = web.Application()
    app.router.add_get("/assets/{asset_id}", get_asset)
    app.router.add_get("/assets", find)
    app.router.add_post("/assets/{asset_id}/devices", link)
    app.router.add_patch("/assets/{asset_id}", patch)
    return app


@pytest.fixture
async def asset_api() -> AsyncIterator[int]:
    runner = web.AppRunner(_asset_api())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture(params=["reset", "fin"])
async def front_end(asset_api: int, request: pytest.FixtureRequest) -> AsyncIterator[IdleFrontEnd]:
    """Closes with RST (ClientOSError ECONNRESET) or with FIN (ServerDisconnectedError)."""
    async with IdleFrontEnd(
        "127.0.0.1",
        asset_api,
        idle_timeout=IDLE_TIMEOUT,
        close_with_fin=request.param == "fin",
    ) as proxy:
        yield proxy


def resilient(url: str, *, fail_max: int) -> ResilientAssetRepository:
    return ResilientAssetRepository(
        HttpAssetRepository(url, api_key="k", timeout_seconds=5),
        policy=RetryPolicy(max_attempts=3, deadline_seconds=10, attempt_timeout_seconds=5),
        breaker=Breaker("assets", is_failure=is_outage, fail_max=fail_max),
    )


Call = Callable[[AssetRepository], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "GET": lambda repo: repo.get_asset("AST-1"),
    "GET query": lambda repo: repo.find_by_device_id("dev-1"),
    "POST": lambda repo: repo.link_device(
        "AST-1", DeviceLink(device_id="dev-1", registration_id="dev-1")
    ),
    "PATCH": lambda repo: repo.patch_asset("AST-1", {"location": "eu/plant-2"}, if_match=3),
}


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
async def test_a_connection_closed_while_idle_is_sent_again_and_never_counted(
    front_end: IdleFrontEnd, call: Call
) -> None:
    # One counted failure would open the circuit, and the retry after it would fail fast.
    repo = resilient(front_end.url, fail_max=1)
    try:
        for _ in range(3):
            assert await call(repo) is not None
            await asyncio.sleep(IDLE_TIMEOUT * 1.5)
        assert front_end.resets >= 2, "the front end closed the idle connections"
        assert await call(repo) is not None
        assert repo.breaker.fail_counter == 0
        assert repo.breaker.state == "closed"
    finally:
        await repo.aclose()


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
async def test_every_stale_pooled_connection_is_passed_over(
    front_end: IdleFrontEnd, call: Call
) -> None:
    # aiohttp itself sends a GET again once; with several stale connections that is not enough.
    adapter = HttpAssetRepository(front_end.url, api_key="k", timeout_seconds=5)
    try:
        await asyncio.gather(*(adapter.get_asset(f"AST-{i}") for i in range(5)))
        pooled = front_end.accepted
        await asyncio.sleep(IDLE_TIMEOUT * 1.5)
        assert await call(adapter) is not None
        assert front_end.resets == pooled
        assert front_end.accepted == pooled + 1
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
async def test_a_reset_on_a_fresh_connection_is_an_outage(
    front_end: IdleFrontEnd, call: Call
) -> None:
    repo = resilient(front_end.url, fail_max=5)
    try:
        await call(repo)  # a pooled connection, so the next call starts on a reused one
        front_end.reset_every_connection = True
        with pytest.raises(AssetUnavailable) as caught:
            await call(repo)
        assert not isinstance(caught.value, AssetCircuitOpen)
        assert repo.breaker.fail_counter == 3, "each of the 3 attempts failed fresh and counted"
    finally:
        await repo.aclose()
