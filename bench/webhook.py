"""Webhook latency and throughput through the dev host, against the floor of its asset calls.

Each case runs on fresh assets, side by side in one run:
- ours: DPS-shaped requests (with a certificate) POSTed to the webhook over loopback;
- floor: the same asset calls a first registration needs (lookup by device id, lookup by
  serial, link), made by a bare loop with no allocation logic. aiohttp is the client the app
  uses and, at high concurrency, by far the faster one, so it is the floor the ratios use.
  The issue words the floor as an httpx loop: that one is measured too, where it completes
  (httpcore's pool polls every connection on each request, and at 300 and more at once its
  idle connections outlive the server's keep-alive and fail).
Cases: one request at a time (what the webhook adds to an unloaded round trip), then N devices
fired at once for N = 100, 300 and 1000.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from bench.harness import ASSET_KEY, REPO, WebhookRig, webhook_rig
from bench.load import Call, Fleet, allocation_calls, make_fleet, timed, warm_up
from bench.reporting import write_result
from devstack.certificates import TestCertificateAuthority

SEQUENTIAL = 200
SIZES = (1, 100, 300, 1000)
"""1 = SEQUENTIAL devices one after another; otherwise that many at once."""
HTTPX_SIZES = (1, 100)
RUNS = 3
SIDES = ("ours", "floor", "floorHttpx")


def _aiohttp_floor(session: aiohttp.ClientSession, asset_api: str, fleet: Fleet) -> list[Call]:
    def floor(device: str, asset: str, serial: str) -> Call:
        async def call() -> None:
            for params in ({"deviceId": device}, {"serialNumber": serial}):
                async with session.get(f"{asset_api}/assets", params=params) as answer:
                    await answer.read()
            link = {"deviceId": device, "registrationId": device}
            async with session.post(f"{asset_api}/assets/{asset}/devices", json=link) as answer:
                await answer.read()
                assert answer.status in (200, 201)

        return call

    return [floor(d, a, s) for d, a, s, _ in fleet]


def _httpx_floor(client: httpx.AsyncClient, fleet: Fleet) -> list[Call]:
    def floor(device: str, asset: str, serial: str) -> Call:
        async def call() -> None:
            for params in ({"deviceId": device}, {"serialNumber": serial}):
                (await client.get("/assets", params=params)).raise_for_status()
            link = {"deviceId": device, "registrationId": device}
            (await client.post(f"/assets/{asset}/devices", json=link)).raise_for_status()

        return call

    return [floor(d, a, s) for d, a, s, _ in fleet]


async def _run(rig: WebhookRig, n: int, ca: TestCertificateAuthority) -> dict[str, Any]:
    asset_api = rig.assets.url
    headers = {"x-api-key": ASSET_KEY}
    devices = SEQUENTIAL if n == 1 else n
    at_once = n > 1
    result: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=devices)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        fleets = [await make_fleet(session, asset_api, devices, ca) for _ in SIDES]
        result["ours"] = await timed(
            allocation_calls(session, rig.allocate_url, fleets[0]), at_once=at_once
        )
        result["floor"] = await timed(
            _aiohttp_floor(session, asset_api, fleets[1]), at_once=at_once
        )
    if n in HTTPX_SIZES:
        limits = httpx.Limits(max_connections=devices, max_keepalive_connections=devices)
        async with httpx.AsyncClient(
            base_url=asset_api, headers=headers, limits=limits, timeout=60
        ) as client:
            result["floorHttpx"] = await timed(_httpx_floor(client, fleets[2]), at_once=at_once)
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for side in SIDES:
        if side in runs[0]:
            summary[side] = {
                k: statistics.median(r[side].get(k, 0) for r in runs)
                for k in ("p50", "p95", "p99", "perSecond", "shed")
            }
    summary["ratioP50"] = summary["ours"]["p50"] / summary["floor"]["p50"]
    summary["ratioP99"] = summary["ours"]["p99"] / summary["floor"]["p99"]
    summary["addedP50Ms"] = summary["ours"]["p50"] - summary["floor"]["p50"]
    summary["runs"] = runs
    return summary


def run() -> dict[str, Any]:
    ca = TestCertificateAuthority()
    results: dict[str, Any] = {}
    with webhook_rig() as rig:
        asyncio.run(warm_up(rig.assets.url, rig.allocate_url, ca))
        for n in SIZES:
            results[str(n)] = _summary([asyncio.run(_run(rig, n, ca)) for _ in range(RUNS)])
    return {
        "sizes": list(SIZES),
        "sequentialDevices": SEQUENTIAL,
        "runsPerSize": RUNS,
        "results": results,
    }


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("webhook", result)
    table = Table(title="webhook vs. floor over loopback (ms; median of runs)")
    columns = ["devices", "ours p50", "ours p99", "floor p50", "floor p99", "httpx floor p50"]
    columns += ["ratio p50", "ratio p99", "allocations/s", "answered 503"]
    for column in columns:
        table.add_column(column, justify="right")
    for n, figures in result["results"].items():
        ours, floor = figures["ours"], figures["floor"]
        httpx_floor = figures.get("floorHttpx")
        table.add_row(
            f"1 at a time ({SEQUENTIAL})" if n == "1" else f"{n} at once",
            f"{ours['p50']:.1f}",
            f"{ours['p99']:.1f}",
            f"{floor['p50']:.1f}",
            f"{floor['p99']:.1f}",
            f"{httpx_floor['p50']:.1f}" if httpx_floor else "-",
            f"{figures['ratioP50']:.2f}",
            f"{figures['ratioP99']:.2f}",
            f"{ours['perSecond']:.0f}",
            f"{ours['shed']:.0f}",
        )
    console.print(table)
    console.print(
        "goals: p99 < 50 ms at 100 at once, ratio <= 1.5, >= 200 allocations/s; a 503 is the"
        " app shedding load (DPS retries), counted, not a failure of the run;"
        f" written to {path.relative_to(REPO)}"
    )
    return result


if __name__ == "__main__":
    main(Console())
