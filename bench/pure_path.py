"""In-process cost of the pure allocation path: parse, attestation, role, hub, response.

No I/O: the asset is already known. Requests carrying a certificate (base64 DER, parsed with
cryptography) are reported apart from info-only ones. Several runs; the table shows the median
over runs of each percentile, so one noisy run does not decide the figure.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from allocation.attestation import read_identity
from allocation.decision import decide_allocation
from allocation.http_endpoint import parse_request
from asset_client import Asset
from bench.reporting import percentiles, write_result
from devstack.certificates import TestCertificateAuthority
from devstack.dps_requests import allocation_request
from policies import load_policy

REPO = Path(__file__).resolve().parents[1]


def _requests(kind: str, count: int) -> list[bytes]:
    ca = TestCertificateAuthority()
    bodies = []
    for n in range(count):
        registration_id = f"bench-{n:04d}"
        if kind == "certificate":
            cert = ca.issue_device(registration_id, serial_number=f"SN-{n:04d}")
            x509: dict[str, Any] = {"clientCertificate": cert.der_base64}
        else:
            x509 = {
                "subjectName": f"CN={registration_id}, SERIALNUMBER=SN-{n:04d}, O=Contoso",
                "sha1Thumbprint": "AB" * 20,
                "notBeforeUtc": "2026-01-01T00:00:00Z",
                "notAfterUtc": "2036-01-01T00:00:00Z",
            }
        bodies.append(json.dumps(allocation_request(registration_id, x509=x509)).encode())
    return bodies


def run(requests_per_run: int = 2000, runs: int = 5) -> dict[str, Any]:
    policy = load_policy(REPO / "policies" / "demo.toml")
    asset = Asset.model_validate(
        {
            "assetId": "AST-1001",
            "serialNumber": "SN-0001",
            "assetType": "temperature-sensor",
            "location": "us-east/plant-1/line-1",
            "status": "planned",
            "version": 1,
        }
    )
    now = datetime.now(UTC)
    skew = timedelta(seconds=300)

    def pure_path(body: bytes) -> bytes:
        request = parse_request(body)
        identity = read_identity(
            request.device_runtime_context, request.enrollment, now=now, clock_skew=skew
        )
        decision = decide_allocation(
            request=request,
            identity=identity,
            asset=asset,
            policy=policy,
            asset_api_public_url="http://127.0.0.1:7080",
        )
        return decision.response.to_json()

    results: dict[str, Any] = {}
    for kind in ("certificate", "info-only"):
        bodies = _requests(kind, 200)
        for body in bodies[:50]:  # warm-up: imports, caches, pydantic validators
            pure_path(body)
        per_run = []
        for _ in range(runs):
            samples = []
            for n in range(requests_per_run):
                body = bodies[n % len(bodies)]
                started = time.perf_counter_ns()
                pure_path(body)
                samples.append((time.perf_counter_ns() - started) / 1e6)
            per_run.append(percentiles(samples))
        results[kind] = {
            name: statistics.median(run[name] for run in per_run)
            for name in ("p50", "p95", "p99", "max", "mean")
        }
        results[kind]["runs"] = per_run
    return {"requestsPerRun": requests_per_run, "runs": runs, "milliseconds": results}


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("pure_path", result)
    table = Table(title="pure allocation path (ms per request, median of runs)")
    table.add_column("request kind")
    for column in ("p50", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    for kind, figures in result["milliseconds"].items():
        table.add_row(kind, *(f"{figures[c]:.3f}" for c in ("p50", "p95", "p99", "max")))
    console.print(table)
    console.print(f"goal: p99 < 1 ms; written to {path.relative_to(REPO)}")
    return result
