"""The outage fast path: the asset system is down and the circuit is open.

Through the dev host over loopback, with the asset service answering 503 to everything: a few
registrations trip the breaker (each spends its retry budget), then every answer should come
without touching the asset system. Measured for both outage policies:
- fallback: 200 with the least-privilege role, and the work queued for reconciliation;
- defer: 503 with Retry-After, so that DPS retries later.
Reported: p50/p99 one request at a time (the answer time itself) and with 100 at once (what
queueing in one worker adds).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.harness import ASSET_KEY, REPO, WebhookRig, client_connector, webhook_rig
from bench.reporting import percentiles, write_result
from devstack.certificates import TestCertificateAuthority
from devstack.dps_requests import allocation_request

RUNS = 3
SEQUENTIAL = 300
CONCURRENT = 100
EXPECTED = {"fallback": 200, "defer": 503}


def _policy_file(policy: str, folder: Path) -> Path:
    """The demo policy with the outage policy set."""
    text = (REPO / "policies" / "demo.toml").read_text()
    path = folder / f"{policy}.toml"
    path.write_text(text.replace('policy = "fallback"', f'policy = "{policy}"'))
    return path


def _bodies(n: int, ca: TestCertificateAuthority) -> list[bytes]:
    bodies = []
    for i in range(n):
        cert = ca.issue_device(f"o-{i}", serial_number=f"SN-O-{i}")
        request = allocation_request(f"o-{i}", x509={"clientCertificate": cert.der_base64})
        bodies.append(json.dumps(request).encode())
    return bodies


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
        await answer.read()
        return answer.status, (time.perf_counter() - started) * 1000


async def _measure(rig: WebhookRig, policy: str, bodies: list[bytes]) -> dict[str, Any]:
    url = rig.allocate_url
    async with aiohttp.ClientSession(connector=client_connector(limit=0)) as session:
        async with session.post(
            f"{rig.assets.url}/devstack/faults",
            json={"down": True},
            headers={"x-api-key": ASSET_KEY},
        ) as answer:
            assert answer.status == 200, await answer.text()
        # Trip the breaker: these spend their budgets on retries against the 503s.
        await asyncio.gather(*(_post(session, url, body) for body in bodies[:4]))

        runs = []
        for _ in range(RUNS):
            one_at_a_time = []
            for body in bodies[:SEQUENTIAL]:
                status, ms = await _post(session, url, body)
                _expect(policy, status)
                one_at_a_time.append(ms)
            at_once = await asyncio.gather(
                *(_post(session, url, body) for body in bodies[:CONCURRENT])
            )
            for status, _ in at_once:
                _expect(policy, status)
            runs.append(
                {
                    "oneAtATime": percentiles(one_at_a_time),
                    "atOnce": percentiles([ms for _, ms in at_once]),
                }
            )
    return {
        mode: {
            name: statistics.median(run[mode][name] for run in runs)
            for name in ("p50", "p95", "p99", "max")
        }
        for mode in ("oneAtATime", "atOnce")
    } | {"runs": runs}


def _expect(policy: str, status: int) -> None:
    if status != EXPECTED[policy]:
        raise RuntimeError(f"{policy}: expected {EXPECTED[policy]}, got {status}")


def run() -> dict[str, Any]:
    ca = TestCertificateAuthority()
    bodies = _bodies(max(SEQUENTIAL, CONCURRENT), ca)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as folder:
        for policy in EXPECTED:
            settings = {
                "POLICY_FILE": str(_policy_file(policy, Path(folder))),
                # Stays open for the whole measurement.
                "ASSET_API_BREAKER_RESET_SECONDS": "3600",
            }
            with webhook_rig(**settings) as rig:
                results[policy] = asyncio.run(_measure(rig, policy, bodies))
    return {"sequential": SEQUENTIAL, "concurrent": CONCURRENT, "runs": RUNS, "results": results}


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("outage", result)
    table = Table(title="breaker open: answer time through the dev host (ms, median of runs)")
    table.add_column("outage policy")
    table.add_column("answer")
    for column in ("1 at a time p50", "p99", f"{CONCURRENT} at once p50", "p99"):
        table.add_column(column, justify="right")
    for policy, figures in result["results"].items():
        table.add_row(
            policy,
            str(EXPECTED[policy]),
            f"{figures['oneAtATime']['p50']:.2f}",
            f"{figures['oneAtATime']['p99']:.2f}",
            f"{figures['atOnce']['p50']:.1f}",
            f"{figures['atOnce']['p99']:.1f}",
        )
    console.print(table)
    console.print(f"goal: p99 < 5 ms; written to {path.relative_to(REPO)}")
    return result


if __name__ == "__main__":
    main(Console())
