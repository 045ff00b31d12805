"""Cold start: a fresh interpreter imports function_app, then answers its first allocation.

The import is what the Functions host pays before the first invocation; the first answer adds
the lazy imports (aiohttp, the SDKs) and connection set-up. Median of several fresh processes.

Both ways, interleaved: with no exporter (the OpenTelemetry API's no-op tracer and meter, no SDK
imported) and with the OTLP exporter set (pointed at devstack's receiver, which must get the
first answers' spans). Two parts of the import are timed on their own: the OpenTelemetry API
(imported first, which the app's modules need either way), and bootstrap.start_telemetry, the
one place that configures OpenTelemetry: with no exporter, all that tracing adds to the API.
With the exporter, start_telemetry imports aiohttp for its instrumentation, which the first
answer then no longer pays for: import + first answer is the figure to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.harness import ASSET_KEY, REPO, backend, start_otlp_receiver
from bench.reporting import write_result
from bench.side_by_side import Round, side_order, summarise
from devstack.processes import stop_children
from observability.trace_attributes import ALLOCATION_SPAN

RUNS = 7
EXPORTERS = ("none", "otlp")
FIGURES = ("importMs", "apiImportMs", "startTelemetryMs", "firstAnswerMs", "totalMs")
_PROBE = r"""
import asyncio, json, sys, time
started = time.perf_counter()
import opentelemetry.metrics, opentelemetry.trace
api_imported = time.perf_counter()
import bootstrap
spent = []
_start_telemetry = bootstrap.start_telemetry
def timed_start_telemetry():
    began = time.perf_counter()
    try:
        return _start_telemetry()
    finally:
        spent.append(time.perf_counter() - began)
bootstrap.start_telemetry = timed_start_telemetry
import function_app
imported = time.perf_counter()
sdk_loaded = "opentelemetry.sdk" in sys.modules
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
                  "apiImportMs": (api_imported - started) * 1000,
                  "startTelemetryMs": sum(spent) * 1000,
                  "firstAnswerMs": (answered - imported) * 1000,
                  "totalMs": (answered - started) * 1000,
                  "status": status, "sdkLoaded": sdk_loaded}))
"""


class ExporterMismatch(RuntimeError):
    """A probe loaded the SDK with no exporter, or not with one: the figures would mislead."""


def probe_env(exporter: str, *, receiver_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without any telemetry setting, then the probe's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "APPLICATIONINSIGHTS_CONNECTION_STRING"
    }
    env.update(settings)
    if exporter == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver_url
        env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    return env


def check_sample(exporter: str, sample: dict[str, Any]) -> None:
    if sample["status"] != 200:
        raise AssertionError(f"the first allocation answered {sample}")
    if sample["sdkLoaded"] != (exporter == "otlp"):
        raise ExporterMismatch(f"exporter {exporter}, yet sdkLoaded={sample['sdkLoaded']}")


def run(runs: int = RUNS) -> dict[str, Any]:
    from devstack.dps_requests import allocation_request

    rounds: list[Round] = []
    with backend() as parts:
        receiver = start_otlp_receiver(parts.run_dir)
        try:
            body = json.dumps(
                allocation_request(
                    "sensor-1002", x509={"subjectName": "CN=sensor-1002, SERIALNUMBER=SN-1002"}
                )
            ).encode()
            settings = {
                "ASSET_API_URL": parts.assets.url,
                "ASSET_API_KEY": ASSET_KEY,
                "POLICY_FILE": "policies/demo.toml",
                "AzureWebJobsStorage": parts.azurite.connection_string,
            }
            for index in range(runs):
                one_round: Round = {}
                for exporter in side_order(index, EXPORTERS):
                    probe = subprocess.run(
                        [sys.executable, "-c", _PROBE],
                        input=body,
                        capture_output=True,
                        cwd=REPO,
                        env=probe_env(exporter, receiver_url=receiver.url, **settings),
                        timeout=60,
                        check=True,
                    )
                    sample = json.loads(probe.stdout)
                    check_sample(exporter, sample)
                    one_round[exporter] = sample
                rounds.append(one_round)
            # Each probe flushes its spans as it exits, so they are all in by now.
            stats = httpx.get(f"{receiver.url}/stats", timeout=10).json()
        finally:
            stop_children([receiver])
    spans = int(stats["spans"].get(ALLOCATION_SPAN, 0))
    if spans == 0:
        raise ExporterMismatch(f"{runs} first answers with the OTLP exporter, and no span received")
    exporters = summarise(rounds, FIGURES, base="none", other="otlp")
    return {
        "runs": runs,
        "importMs": exporters["none"]["importMs"],
        "firstAnswerMs": exporters["none"]["firstAnswerMs"],
        "exporters": exporters,
        "allocationSpansReceived": spans,
    }


def table(result: dict[str, Any]) -> Table:
    exporters = result["exporters"]
    rendered = Table(
        title=f"cold start (median of {result['runs']} fresh processes each way, interleaved)"
    )
    rendered.add_column("exporter", justify="left")
    columns = ["import function_app", "of which the OpenTelemetry API", "of which start_telemetry"]
    columns += ["then the first answer", "import + first answer"]
    for column in columns:
        rendered.add_column(column, justify="right")
    for name, label in (("none", "none (no-op API)"), ("otlp", "OTLP/HTTP")):
        row = exporters[name]
        rendered.add_row(label, *(f"{row[f]:.1f} ms" for f in FIGURES))
    difference = exporters["difference"]
    rendered.add_row("OTLP - none", *(f"{difference[f]:+.1f} ms" for f in FIGURES))
    return rendered


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("cold_start", result)
    console.print(table(result))
    console.print(
        f"goal: import < 300 ms with no exporter; {result['allocationSpansReceived']} allocation"
        f" spans received from the OTLP probes; written to {path.relative_to(REPO)}"
    )
    return result


if __name__ == "__main__":
    main(Console())
