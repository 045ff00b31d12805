"""The webhook with tracing off and on, side by side: what exporting spans costs an allocation.

Two dev hosts serve the app against one asset service and one Azurite, each with queues and an
audit table of its own:
- off: no exporter, so the app runs on the OpenTelemetry API's no-op tracer and meter;
- on: OTEL_EXPORTER_OTLP_ENDPOINT points at devstack's OTLP/HTTP receiver, a child process of
  this benchmark (the batch processor's delay is cut from 5 s to 100 ms, so spans are exported
  while the requests run, not after).
The same workload (fresh devices each run, one at a time, then 100 at once) goes to each host in
interleaved rounds, the first side alternating. After each run the benchmark waits until the
host's queues are empty (the audit writer, which polls with back-off, has written every entry)
and the stack is quiet again (the spans exported), so that neither host's after-work falls into
the other's run; the host's CPU time per allocation counts that after-work.
Every "on" run must have its allocation spans received, or the benchmark fails.

The dev host polls its queues and deletes their messages with the Storage SDK, over the aiohttp
the app instruments, so some of the "on" host's spans (about one in eight, one at a time) are
the host's own, which Azure's host (not Python) would not make.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from bench.harness import (
    ASSET_KEY,
    REPO,
    Backend,
    allocate_url,
    backend,
    start_host,
    start_otlp_receiver,
)
from bench.load import WARM_UP_DEVICES, allocation_calls, make_fleet, timed, warm_up
from bench.process_cpu import cpu_seconds, wait_quiet
from bench.queues import wait_drained
from bench.reporting import write_result
from bench.side_by_side import Round, side_order, summarise
from devstack.certificates import TestCertificateAuthority
from devstack.processes import Child, stop_children
from observability.trace_attributes import ALLOCATION_SPAN

SIDES = ("off", "on")
CASES = {"1": (200, False), "100": (100, True)}
"""name -> (devices, all at once); "1" sends its devices one after another."""
ROUNDS = 6
"""Even, so that each side goes first as often as the other."""
SCHEDULE_DELAY_MS = 100
SPANS_TIMEOUT_SECONDS = 20
FIGURES = ("p50", "p95", "p99", "perSecond", "hostCpuMs")


class NothingExported(RuntimeError):
    """Tracing was on and the receiver got no allocation span: the figures would measure nothing."""


@dataclass
class TracingRig:
    backend: Backend
    receiver: Child
    hosts: dict[str, Child]

    def pids(self) -> list[int]:
        children = [
            *self.hosts.values(),
            self.receiver,
            self.backend.assets,
            *self.backend.azurite.children,
        ]
        return [c.process.pid for c in children]

    def span_counts(self) -> dict[str, int]:
        """Spans received so far, by name."""
        counts: dict[str, int] = httpx.get(f"{self.receiver.url}/stats", timeout=10).json()["spans"]
        return counts

    def allocation_spans(self) -> int:
        return self.span_counts().get(ALLOCATION_SPAN, 0)


def host_queues(side: str) -> dict[str, str]:
    """The app settings naming a host's queues: its own, so that it drains only its own work."""
    return {
        "AUDIT_QUEUE": f"audit-{side}",
        "RECONCILIATION_QUEUE": f"reconciliation-{side}",
        "DEAD_LETTER_QUEUE": f"dead-letters-{side}",
    }


def host_settings(side: str, receiver_url: str) -> dict[str, str]:
    """Each host's own queues and audit table; the exporter for "on" only, and no Application
    Insights for either."""
    settings = {
        **host_queues(side),
        "AUDIT_TABLE": f"audit{side}",
        # After a run, the audit writer's idle queue waits up to host.json's 5 s before it is
        # polled again, and each run waits for it to be drained: 1 s keeps the rounds short.
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:01",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }
    if side == "on":
        settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver_url
        settings["OTEL_BSP_SCHEDULE_DELAY"] = str(SCHEDULE_DELAY_MS)
    return settings


@contextmanager
def tracing_rig() -> Iterator[TracingRig]:
    with backend() as parts:
        started: list[Child] = []
        try:
            receiver = start_otlp_receiver(parts.run_dir)
            started.append(receiver)
            hosts: dict[str, Child] = {}
            for side in SIDES:
                hosts[side] = start_host(
                    parts, f"host-tracing-{side}", **host_settings(side, receiver.url)
                )
                started.append(hosts[side])
            yield TracingRig(backend=parts, receiver=receiver, hosts=hosts)
        finally:
            stop_children(list(reversed(started)))


def settle(rig: TracingRig) -> bool:
    """Until every host's queues are empty and the stack is quiet; False if it never was."""
    queues = [name for side in SIDES for name in host_queues(side).values()]
    drained = wait_drained(rig.backend.azurite.connection_string, queues)
    return wait_quiet(rig.pids()) and drained


def wait_for_spans(rig: TracingRig, expected: int) -> int:
    """The allocation spans received once `expected` arrived (or the timeout passed)."""
    deadline = time.monotonic() + SPANS_TIMEOUT_SECONDS
    while (received := rig.allocation_spans()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return received


async def _allocate(url: str, fleet: Any, *, at_once: bool) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=len(fleet))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await timed(allocation_calls(session, url, fleet), at_once=at_once)


async def _fleet(asset_api: str, n: int, ca: TestCertificateAuthority) -> Any:
    async with aiohttp.ClientSession(headers={"x-api-key": ASSET_KEY}) as session:
        return await make_fleet(session, asset_api, n, ca)


def measure(rig: TracingRig, side: str, case: str, ca: TestCertificateAuthority) -> dict[str, Any]:
    """One run of `case` against `side`'s host, from a quiet stack until it is quiet again."""
    devices, at_once = CASES[case]
    fleet = asyncio.run(_fleet(rig.backend.assets.url, devices, ca))
    host = rig.hosts[side]
    settle(rig)
    spans_before = rig.allocation_spans()
    all_spans_before = sum(rig.span_counts().values())
    cpu_before = cpu_seconds([host.process.pid])
    figures: dict[str, Any] = asyncio.run(_allocate(allocate_url(host), fleet, at_once=at_once))
    spans = wait_for_spans(rig, spans_before + devices) - spans_before if side == "on" else 0
    if side == "on" and spans == 0:
        raise NothingExported(
            f"{devices} allocations with tracing on, and the receiver got no {ALLOCATION_SPAN}"
            f" span in {SPANS_TIMEOUT_SECONDS} s:\n{host.log_tail()}"
        )
    settled = settle(rig)
    figures["hostCpuMs"] = (cpu_seconds([host.process.pid]) - cpu_before) * 1000 / devices
    figures["allocationSpans"] = spans
    figures["spans"] = sum(rig.span_counts().values()) - all_spans_before if side == "on" else 0
    figures["settled"] = settled
    return figures


def run(rounds: int = ROUNDS) -> dict[str, Any]:
    ca = TestCertificateAuthority()
    with tracing_rig() as rig:
        for side in SIDES:
            asyncio.run(warm_up(rig.backend.assets.url, allocate_url(rig.hosts[side]), ca))
        # All of them, so that none arrives during the first run and is counted as its own.
        if wait_for_spans(rig, WARM_UP_DEVICES) == 0:
            raise NothingExported(f"the warm-up with tracing on exported no {ALLOCATION_SPAN} span")
        per_case: dict[str, list[Round]] = {case: [] for case in CASES}
        for index in range(rounds):
            for case, case_rounds in per_case.items():
                one_round: Round = {}
                for side in side_order(index, SIDES):
                    one_round[side] = measure(rig, side, case, ca)
                case_rounds.append(one_round)
    results = {
        case: {
            "devices": CASES[case][0],
            "atOnce": CASES[case][1],
            **summarise(case_rounds, FIGURES, base="off", other="on"),
            "allocationsOn": CASES[case][0] * rounds,
            "allocationSpansReceived": sum(r["on"]["allocationSpans"] for r in case_rounds),
            "spansReceived": sum(r["on"]["spans"] for r in case_rounds),
            "unsettledRuns": sum(not r[side]["settled"] for r in case_rounds for side in SIDES),
        }
        for case, case_rounds in per_case.items()
    }
    return {"rounds": rounds, "scheduleDelayMs": SCHEDULE_DELAY_MS, "results": results}


def case_label(figures: dict[str, Any]) -> str:
    n = figures["devices"]
    return f"{n} at once" if figures["atOnce"] else f"1 at a time ({n})"


def spans_cell(received: int, sent: int) -> str:
    """In red when spans went missing: the batch processor drops what overflows its queue."""
    text = f"{received} of {sent}"
    return text if received >= sent else f"[red]{text}[/red]"


def table(result: dict[str, Any]) -> Table:
    rendered = Table(
        title=f"webhook, tracing off vs. on (OTLP/HTTP), interleaved: median of {result['rounds']}"
        " rounds; on/off is the median of each round's own ratio"
    )
    columns = ["devices", "tracing", "p50 ms", "p95 ms", "p99 ms", "allocations/s"]
    columns += ["host CPU ms per allocation", "allocation spans received"]
    for column in columns:
        rendered.add_column(column, justify="left" if column == "tracing" else "right")
    for figures in result["results"].values():
        label = case_label(figures)
        spans = spans_cell(figures["allocationSpansReceived"], figures["allocationsOn"])
        for side, spans_text in (("off", "-"), ("on", spans)):
            row = figures[side]
            rendered.add_row(
                label if side == "off" else "",
                side,
                *(f"{row[f]:.1f}" for f in ("p50", "p95", "p99")),
                f"{row['perSecond']:.0f}",
                f"{row['hostCpuMs']:.2f}",
                spans_text,
            )
        ratio = figures["ratio"]
        rendered.add_row(
            "",
            "on / off",
            *(f"{ratio[f]:.2f}" for f in ("p50", "p95", "p99", "perSecond", "hostCpuMs")),
            "",
            end_section=True,
        )
    return rendered


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("tracing", result)
    console.print(table(result))
    per_allocation = ", ".join(
        f"{case_label(f)}: {f['spansReceived'] / f['allocationsOn']:.1f}"
        for f in result["results"].values()
    )
    console.print(
        f"spans received per allocation: {per_allocation}; no goal, the cost is reported;"
        f" written to {path.relative_to(REPO)}"
    )
    unsettled = sum(f["unsettledRuns"] for f in result["results"].values())
    if unsettled:
        console.print(
            f"[red]{unsettled} runs left work behind (queues not empty or the stack still busy"
            " after 20 s): their neighbours' figures include some of it[/red]"
        )
    return result


if __name__ == "__main__":
    main(Console())
