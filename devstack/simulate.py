"""`python -m devstack.simulate --devices N`: onboard N simulated X.509 devices at once.

Issues N device certificates, registers a matching asset for each, then onboards them all
concurrently, and prints what happened: hubs, roles, outcomes and latency percentiles.

- `--via dps` (default): each device registers with the DPS emulator over mutual TLS, with a
  certificate from the stack's enrollment group CA, exactly as a device would; latency is the
  whole registration until the device is assigned (or failed).
- `--via webhook`: DPS-shaped requests go straight to the allocation webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devstack.certificates import IssuedCertificate, TestCertificateAuthority
from devstack.dps_requests import DEMO_HUBS, allocation_request
from devstack.stack import DEFAULT_DATA_DIR

ASSET_TYPES = ("temperature-sensor", "valve-actuator", "edge-gateway")
LOCATIONS = ("us-east/plant-9/line-{n}", "eu-west/site-z/hall-{n}")
Via = Literal["dps", "webhook"]
Tick = Callable[[], None]


@dataclass(frozen=True)
class SimulatedDevice:
    registration_id: str
    serial_number: str
    asset_id: str
    asset_type: str
    location: str
    certificate: IssuedCertificate


@dataclass
class RunResult:
    devices: int
    via: Via
    outcomes: Counter[str] = field(default_factory=Counter)
    hubs: Counter[str] = field(default_factory=Counter)
    roles: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def succeeded(self) -> int:
        return self.outcomes["assigned" if self.via == "dps" else "200"]

    def percentile(self, q: int) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "via": self.via,
            "statuses": dict(sorted(self.outcomes.items())),
            "hubs": dict(self.hubs.most_common()),
            "roles": dict(self.roles.most_common()),
            "latencyMs": {
                "p50": round(self.percentile(50), 2),
                "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2),
                "max": round(max(self.latencies_ms, default=float("nan")), 2),
            },
            "wallSeconds": round(self.wall_seconds, 3),
            "devicesPerSecond": round(self.devices / self.wall_seconds, 1)
            if self.wall_seconds
            else None,
            "failures": self.failures[:20],
        }


def make_devices(
    count: int, run_id: str, ca: TestCertificateAuthority, tick: Tick
) -> list[SimulatedDevice]:
    devices = []
    for n in range(count):
        registration_id = f"sim-{run_id}-{n:05d}"
        serial = f"SIM-{run_id}-{n:05d}".upper()
        devices.append(
            SimulatedDevice(
                registration_id=registration_id,
                serial_number=serial,
                asset_id=f"AST-SIM-{run_id}-{n:05d}".upper(),
                asset_type=ASSET_TYPES[n % len(ASSET_TYPES)],
                location=LOCATIONS[n % len(LOCATIONS)].format(n=n % 7),
                certificate=ca.issue_device(registration_id, serial_number=serial),
            )
        )
        tick()
    return devices


async def register_assets(
    client: aiohttp.ClientSession,
    asset_api: str,
    devices: list[SimulatedDevice],
    concurrency: int,
    tick: Tick,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def put(device: SimulatedDevice) -> None:
        body = {
            "serialNumber": device.serial_number,
            "assetType": device.asset_type,
            "location": device.location,
            "attributes": {"source": "devstack.simulate"},
        }
        async with (
            gate,
            client.put(f"{asset_api}/assets/{device.asset_id}", json=body) as response,
        ):
            if response.status not in (200, 201):
                text = (await response.text())[:200]
                raise RuntimeError(
                    f"asset service refused {device.asset_id}: {response.status} {text}"
                )
        tick()

    await asyncio.gather(*(put(device) for device in devices))


async def allocate_via_webhook(
    client: aiohttp.ClientSession,
    url: str,
    devices: list[SimulatedDevice],
    concurrency: int,
    tick: Tick,
) -> RunResult:
    result = RunResult(devices=len(devices), via="webhook")
    gate = asyncio.Semaphore(concurrency)

    async def allocate(device: SimulatedDevice) -> None:
        body = allocation_request(
            device.registration_id,
            x509={"clientCertificate": device.certificate.der_base64},
            linked_hubs=DEMO_HUBS,
        )
        async with gate:
            started = time.perf_counter()
            try:
                async with client.post(url, json=body) as response:
                    status, content = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.failures.append(f"{device.registration_id}: {type(exc).__name__}")
                result.outcomes["unreachable"] += 1
                tick()
                return
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.outcomes[str(status)] += 1
        if status == 200:
            answer = json.loads(content)
            result.hubs[answer["iotHubHostName"]] += 1
            result.roles[answer["initialTwin"]["tags"]["deviceRole"]] += 1
        else:
            detail = json.loads(content).get("detail", "") if content else ""
            result.failures.append(f"{device.registration_id}: {status} {detail}")
        tick()

    started = time.perf_counter()
    await asyncio.gather(*(allocate(device) for device in devices))
    result.wall_seconds = time.perf_counter() - started
    return result


async def register_via_dps(
    stack: dict[str, Any],
    devices: list[SimulatedDevice],
    concurrency: int,
    cert_dir: Path,
    tick: Tick,
) -> RunResult:
    from devstack.dps_device_client import register_device

    result = RunResult(devices=len(devices), via="dps")
    gate = asyncio.Semaphore(concurrency)
    dps = stack["dps"]
    ca_file = Path(stack["tls"]["caCert"])
    files = {d.registration_id: d.certificate.write(cert_dir, d.registration_id) for d in devices}

    async def register(device: SimulatedDevice) -> None:
        cert_file, key_file = files[device.registration_id]
        async with gate:
            started = time.perf_counter()
            try:
                outcome = await register_device(
                    host=dps["host"],
                    port=dps["port"],
                    id_scope=dps["idScope"],
                    registration_id=device.registration_id,
                    cert_file=cert_file,
                    key_file=key_file,
                    ca_file=ca_file,
                )
            except Exception as exc:  # a device that cannot register is a result, not a crash
                result.outcomes["error"] += 1
                result.failures.append(f"{device.registration_id}: {type(exc).__name__}: {exc}")
                tick()
                return
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
        state = outcome.registration_state or {}
        result.outcomes[outcome.status] += 1
        if outcome.status == "assigned":
            result.hubs[str(state.get("assignedHub"))] += 1
            role = (state.get("payload") or {}).get("deviceRole")
            result.roles[str(role)] += 1
        else:
            result.failures.append(
                f"{device.registration_id}: {state.get('errorCode')} {state.get('errorMessage')}"
            )
        tick()

    started = time.perf_counter()
    await asyncio.gather(*(register(device) for device in devices))
    result.wall_seconds = time.perf_counter() - started
    return result


def read_stack(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"{path} not found: start the stack first with `make run`")
    stack: dict[str, Any] = json.loads(path.read_text())
    return stack


async def simulate(
    stack: dict[str, Any], devices: int, concurrency: int, via: Via, console: Console
) -> RunResult:
    run_id = uuid.uuid4().hex[:6]
    progress = Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        issue_task = progress.add_task("issuing device certificates", total=devices)
        if via == "dps":
            # Devices must chain to the enrollment group's CA, or DPS refuses the TLS handshake.
            group = stack["enrollmentGroups"][0]
            ca = TestCertificateAuthority.from_files(Path(group["caCert"]), Path(group["caKey"]))
        else:
            ca = TestCertificateAuthority(name=f"Simulator CA {run_id}")
        fleet = make_devices(devices, run_id, ca, lambda: progress.advance(issue_task))
        asset_task = progress.add_task("registering assets", total=devices)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            headers={"x-api-key": stack["assetApiKey"]},
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=concurrency),
        ) as assets:
            await register_assets(
                assets, stack["assetApi"], fleet, concurrency, lambda: progress.advance(asset_task)
            )
        onboard_task = progress.add_task(
            "registering through DPS" if via == "dps" else "allocating through the webhook",
            total=devices,
        )
        tick = lambda: progress.advance(onboard_task)  # noqa: E731
        if via == "dps":
            cert_dir = Path(stack["dataDir"]) / "simulator" / run_id
            return await register_via_dps(stack, fleet, concurrency, cert_dir, tick)
        url = stack["allocateUrl"]
        if stack.get("functionKey"):
            url += f"?code={stack['functionKey']}"
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)
        ) as webhook:
            return await allocate_via_webhook(webhook, url, fleet, concurrency, tick)


def print_result(console: Console, result: RunResult) -> None:
    summary = result.summary()
    table = Table(title=f"{result.devices} devices via {result.via}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for outcome, count in summary["statuses"].items():
        table.add_row(outcome if result.via == "dps" else f"HTTP {outcome}", str(count))
    for hub, count in summary["hubs"].items():
        table.add_row(f"hub {hub}", str(count))
    for role, count in summary["roles"].items():
        table.add_row(f"role {role}", str(count))
    for name, value in summary["latencyMs"].items():
        table.add_row(f"latency {name}", f"{value} ms")
    table.add_row("all done after", f"{summary['wallSeconds']} s")
    table.add_row("devices/s", str(summary["devicesPerSecond"]))
    console.print(table)
    for failure in summary["failures"]:
        console.print(f"[red]failed[/red] {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=50, help="how many devices (default 50)")
    parser.add_argument("--concurrency", type=int, default=100, help="devices in flight")
    parser.add_argument("--via", choices=("dps", "webhook"), default="dps")
    parser.add_argument(
        "--stack", type=Path, default=DEFAULT_DATA_DIR / "stack.json", help="stack.json to use"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.concurrency < 1:
        parser.error("--devices and --concurrency must be at least 1")
    stack = read_stack(args.stack)
    if args.via == "dps" and "dps" not in stack:
        parser.error(f"{args.stack} describes no DPS emulator; use --via webhook")
    console = Console(stderr=args.json)
    result = asyncio.run(simulate(stack, args.devices, args.concurrency, args.via, console))
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print_result(console, result)
    return 0 if result.succeeded == result.devices else 1


if __name__ == "__main__":
    sys.exit(main())
