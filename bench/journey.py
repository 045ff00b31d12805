"""The end-to-end device journey: 300 devices at once through the DPS emulator (mTLS).

Microsoft's own Node device client (devstack/node/register_device.js in fleet mode: one Node
process, one ProvisioningDeviceClient per device) registers every device at once. DPS calls the
webhook, which looks each asset up, links the device and answers; DPS then creates the device
on its hub with the initial twin, and the device, polling every Retry-After (1 s here, as the
emulator answers; real DPS says 3 s), sees "assigned".

Reported: the wall time until all are assigned (Node start-up included) and the per-device
time each client measured. Each run uses fresh assets and devices on one running stack; every
device must end assigned and linked to its asset, or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.reporting import percentiles, write_result
from bench.stack_rig import RunningStack, running_stack

DEVICES = 300
RUNS = 3
REPO = Path(__file__).resolve().parents[1]
NODE_CLIENT = REPO / "devstack" / "node" / "register_device.js"
TYPES = ("temperature-sensor", "valve-actuator", "edge-gateway")
REGIONS = ("us-east", "eu-west")


async def _create_assets(stack: RunningStack, fleet: list[tuple[str, str, str]]) -> None:
    gate = asyncio.Semaphore(50)
    async with stack.assets() as client:

        async def put(n: int, asset_id: str, serial: str) -> None:
            document = {
                "serialNumber": serial,
                "assetType": TYPES[n % len(TYPES)],
                "location": f"{REGIONS[n % len(REGIONS)]}/bench/line-{n % 7}",
            }
            async with gate:
                answer = await client.put(f"/assets/{asset_id}", json=document)
            answer.raise_for_status()

        await asyncio.gather(*(put(n, a, s) for n, (_, a, s) in enumerate(fleet)))


async def _linked(stack: RunningStack, fleet: list[tuple[str, str, str]]) -> int:
    gate = asyncio.Semaphore(50)
    async with stack.assets() as client:

        async def linked(device_id: str, asset_id: str) -> bool:
            async with gate:
                answer = await client.get(f"/assets/{asset_id}")
            return bool(answer.json().get("deviceId") == device_id)

        return sum(await asyncio.gather(*(linked(d, a) for d, a, _ in fleet)))


def _write_fleet(stack: RunningStack, fleet: list[tuple[str, str, str]], run: str) -> Path:
    ca = stack.ca
    folder = stack.work_dir / run
    devices = []
    for device_id, _, serial in fleet:
        cert, key = ca.issue_device(device_id, serial_number=serial).write(folder, device_id)
        devices.append({"registrationId": device_id, "cert": str(cert), "key": str(key)})
    path = folder / "fleet.json"
    path.write_text(json.dumps(devices))
    return path


def _one_run(stack: RunningStack) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    fleet = [
        (f"j-{run}-{n:03d}", f"AST-J-{run}-{n:03d}".upper(), f"SN-J-{run}-{n}")
        for n in range(DEVICES)
    ]
    asyncio.run(_create_assets(stack, fleet))
    fleet_file = _write_fleet(stack, fleet, run)
    dps = stack.d["dps"]
    command = ["node", str(NODE_CLIENT), "--host", "127.0.0.1", "--port", str(dps["port"])]
    command += ["--id-scope", dps["idScope"], "--ca", stack.d["tls"]["caCert"]]
    command += ["--fleet", str(fleet_file)]
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=REPO, check=False
    )
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assigned = [line for line in lines if line.get("result", {}).get("status") == "assigned"]
    if done.returncode != 0 or len(assigned) != DEVICES:
        failures = [line for line in lines if line not in assigned][:3]
        raise RuntimeError(
            f"{len(assigned)} of {DEVICES} assigned (exit {done.returncode}): {failures}"
            f" {done.stderr[-2000:]}"
        )
    fallbacks = [
        line
        for line in assigned
        if line["result"].get("payload", {}).get("provisioningState") != "provisioned"
    ]
    linked = asyncio.run(_linked(stack, fleet))
    if linked != DEVICES:
        raise RuntimeError(
            f"only {linked} of {DEVICES} assets are linked to their device;"
            f" {len(fallbacks)} fallbacks, e.g. {fallbacks[:2]}"
        )
    per_device = [float(line["ms"]) for line in lines]
    hubs: dict[str, int] = {}
    for line in assigned:
        hub = line["result"]["assignedHub"]
        hubs[hub] = hubs.get(hub, 0) + 1
    return {"allAssignedSeconds": wall, "perDeviceMs": percentiles(per_device), "hubs": hubs}


def run() -> dict[str, Any]:
    with running_stack() as stack:
        runs = [_one_run(stack) for _ in range(RUNS)]
    return {
        "devices": DEVICES,
        "runs": runs,
        "allAssignedSeconds": statistics.median(r["allAssignedSeconds"] for r in runs),
        "perDeviceMs": {
            name: statistics.median(r["perDeviceMs"][name] for r in runs)
            for name in ("p50", "p95", "p99", "max")
        },
    }


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("journey", result)
    table = Table(
        title=f"device journey, {DEVICES} devices at once via DPS (median of {RUNS} runs)"
    )
    for column in ("all assigned (s)", "per device p50 (ms)", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    per = result["perDeviceMs"]
    table.add_row(
        f"{result['allAssignedSeconds']:.2f}",
        *(f"{per[name]:.0f}" for name in ("p50", "p95", "p99", "max")),
    )
    console.print(table)
    console.print(f"goal: all assigned < 30 s; written to {path.relative_to(REPO)}")
    return result


if __name__ == "__main__":
    main(Console())
