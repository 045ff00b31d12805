"""`python -m devstack.twin <device-id>`: show a device and its twin as the local hubs hold it.

Looks the device up on every hub in stack.json (or only --hub) through the app's own IoT Hub
client, so what you see is what the app would read.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from devstack.stack import DEFAULT_DATA_DIR
from iothub_client import DeviceNotFound, HubConnections
from iothub_client.sdk_adapter import SdkIotHubRegistry


async def find(stack: dict[str, Any], device_id: str, hub: str | None) -> list[dict[str, Any]]:
    connections = HubConnections.from_connection_strings(
        {name: info["connectionString"] for name, info in stack["hubs"].items()}
    )
    registry = SdkIotHubRegistry(connections, timeout_seconds=10, ca_bundle=stack["tls"]["caCert"])
    found = []
    for name in [hub] if hub else list(stack["hubs"]):
        try:
            device = await registry.get_device(name, device_id)
            twin = await registry.get_twin(name, device_id)
        except DeviceNotFound:
            continue
        found.append({"device": dataclasses.asdict(device), "twin": dataclasses.asdict(twin)})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.twin", description=__doc__)
    parser.add_argument("device_id")
    parser.add_argument("--hub", help="only this hub host name")
    parser.add_argument("--stack", type=Path, default=DEFAULT_DATA_DIR / "stack.json")
    args = parser.parse_args(argv)
    if not args.stack.exists():
        parser.error(f"{args.stack} not found: start the stack first with `make run`")
    stack = json.loads(args.stack.read_text())
    if args.hub and args.hub not in stack["hubs"]:
        parser.error(f"unknown hub {args.hub}; the stack has {', '.join(stack['hubs'])}")
    found = asyncio.run(find(stack, args.device_id, args.hub))
    if not found:
        print(f"device {args.device_id} is on no hub of this stack", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
