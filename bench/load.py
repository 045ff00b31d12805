"""DPS-shaped allocation requests for a benchmark: a fleet of devices with assets, and timing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp

from bench.harness import ASSET_KEY
from bench.reporting import percentiles
from devstack.certificates import TestCertificateAuthority
from devstack.dps_requests import allocation_request

TYPES = ("temperature-sensor", "valve-actuator", "edge-gateway")
WARM_UP_DEVICES = 20

Fleet = list[tuple[str, str, str, bytes]]
"""(device id, asset id, serial, webhook body) per device."""
Call = Callable[[], Awaitable[None]]


class Shed(Exception):
    """The webhook answered 503: overloaded, it asked DPS to retry (an answer, not a crash)."""


async def make_fleet(
    session: aiohttp.ClientSession, asset_api: str, n: int, ca: TestCertificateAuthority
) -> Fleet:
    """`n` new devices, each with a certificate and an asset of its own."""
    run = uuid.uuid4().hex[:6]
    fleet = []
    for i in range(n):
        device, asset, serial = f"b-{run}-{i}", f"AST-B-{run}-{i}".upper(), f"SN-B-{run}-{i}"
        cert = ca.issue_device(device, serial_number=serial)
        body = json.dumps(
            allocation_request(device, x509={"clientCertificate": cert.der_base64})
        ).encode()
        fleet.append((device, asset, serial, body))
    gate = asyncio.Semaphore(50)

    async def put(device: str, asset: str, serial: str, i: int) -> None:
        document = {
            "serialNumber": serial,
            "assetType": TYPES[i % 3],
            "location": f"us-east/bench/line-{i % 7}",
        }
        async with gate, session.put(f"{asset_api}/assets/{asset}", json=document) as answer:
            assert answer.status in (200, 201), await answer.text()

    await asyncio.gather(*(put(d, a, s, i) for i, (d, a, s, _) in enumerate(fleet)))
    return fleet


async def timed(calls: list[Call], *, at_once: bool) -> dict[str, float]:
    """Latency percentiles (ms) and calls per second, all at once or one after another; `shed`:
    how many were answered 503 (their latency counts: they were answered)."""
    latencies: list[float] = []
    shed = 0

    async def one(call: Call) -> None:
        nonlocal shed
        started = time.perf_counter()
        try:
            await call()
        except Shed:
            shed += 1
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    if at_once:
        await asyncio.gather(*(one(call) for call in calls))
    else:
        for call in calls:
            await one(call)
    per_second = len(calls) / (time.perf_counter() - started)
    return {**percentiles(latencies), "perSecond": per_second, "shed": shed}


def allocation_calls(session: aiohttp.ClientSession, url: str, fleet: Fleet) -> list[Call]:
    """One webhook POST per device, each expecting 200, or 503 when the app sheds load (Shed)."""

    def allocate(body: bytes) -> Call:
        async def call() -> None:
            async with session.post(
                url, data=body, headers={"content-type": "application/json"}
            ) as answer:
                await answer.read()
                if answer.status == 503:
                    raise Shed
                assert answer.status == 200, answer.status

        return call

    return [allocate(body) for *_, body in fleet]


async def warm_up(asset_api: str, url: str, ca: TestCertificateAuthority) -> None:
    """The first requests pay lazy imports and connection set-up; cold start is measured apart."""
    async with aiohttp.ClientSession(headers={"x-api-key": ASSET_KEY}) as session:
        fleet = await make_fleet(session, asset_api, WARM_UP_DEVICES, ca)
        for call in allocation_calls(session, url, fleet):
            await call()
