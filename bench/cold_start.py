"""Cold start: a fresh interpreter imports function_app, then answers its first allocation.

The import is what the Functions host pays before the first invocation; the first answer adds
the lazy imports (aiohttp, the SDKs) and connection set-up. Median of several fresh processes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import ASSET_KEY, REPO, webhook_rig
from bench.reporting import write_result

RUNS = 7
_PROBE = r"""
import asyncio, json, sys, time
started = time.perf_counter()
import function_app
imported = time.perf_counter()
import bootstrap
from allocation.http_endpoint import answer_allocation
body = sys.stdin.buffer.read()
async def first():
    services = bootstrap.services()
    answer = await answer_allocation(body, request_id="cold", service=services.allocation)
    await services.aclose()
    return answer.status
status = asyncio.run(first())
answered = time.perf_counter()
print(json.dumps({"importMs": (imported - started) * 1000,
                  "firstAnswerMs": (answered - imported) * 1000, "status": status}))
"""


def run() -> dict[str, Any]:
    from devstack.dps_requests import allocation_request

    samples: list[dict[str, float]] = []
    with webhook_rig() as rig:
        body = json.dumps(
            allocation_request(
                "sensor-1002", x509={"subjectName": "CN=sensor-1002, SERIALNUMBER=SN-1002"}
            )
        ).encode()
        env = {
            **os.environ,
            "ASSET_API_URL": rig.assets.url,
            "ASSET_API_KEY": ASSET_KEY,
            "POLICY_FILE": "policies/demo.toml",
            "AzureWebJobsStorage": rig.azurite.connection_string,
        }
        for _ in range(RUNS):
            probe = subprocess.run(
                [sys.executable, "-c", _PROBE],
                input=body,
                capture_output=True,
                cwd=REPO,
                env=env,
                timeout=60,
                check=True,
            )
            sample = json.loads(probe.stdout)
            assert sample["status"] == 200, sample
            samples.append(sample)
    return {
        "runs": RUNS,
        "importMs": statistics.median(s["importMs"] for s in samples),
        "firstAnswerMs": statistics.median(s["firstAnswerMs"] for s in samples),
        "samples": samples,
    }


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("cold_start", result)
    table = Table(title=f"cold start (median of {RUNS} fresh processes)")
    table.add_column("import function_app", justify="right")
    table.add_column("then the first answer", justify="right")
    table.add_row(f"{result['importMs']:.0f} ms", f"{result['firstAnswerMs']:.0f} ms")
    console.print(table)
    console.print(f"goal: import < 300 ms; written to {path}")
    return result


if __name__ == "__main__":
    main(Console())
