"""Run every benchmark, then compare the figures with the goals: `make bench`.

`python -m bench pure_path webhook` runs only those. Each benchmark prints its own table and
writes bench/results/<name>.json; the goal table reads those files, so it also covers
benchmarks run earlier on their own.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import cold_start, journey, outage, pure_path, sync, tracing, webhook
from bench.reporting import RESULTS_DIR, machine

BENCHMARKS: dict[str, Callable[[Console], dict[str, Any]]] = {
    "pure_path": pure_path.main,
    "cold_start": cold_start.main,
    "webhook": webhook.main,
    "tracing": tracing.main,
    "outage": outage.main,
    "journey": journey.main,
    "sync": sync.main,
}

Goal = tuple[str, str, Callable[[dict[str, Any]], float], Callable[[float], bool], str]


def _goals() -> list[Goal]:
    """(benchmark, measure, figure from its result, goal test, goal text)."""

    def at(n: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda r: r["results"][n]

    return [
        ("pure_path", "pure path p99, certificate (ms)",
         lambda r: r["milliseconds"]["certificate"]["p99"], lambda v: v < 1, "< 1"),
        ("pure_path", "pure path p99, info only (ms)",
         lambda r: r["milliseconds"]["info-only"]["p99"], lambda v: v < 1, "< 1"),
        ("webhook", "webhook p99, 100 at once (ms)",
         lambda r: at("100")(r)["ours"]["p99"], lambda v: v < 50, "< 50"),
        ("webhook", "webhook p99, 1 at a time (ms)",
         lambda r: at("1")(r)["ours"]["p99"], lambda v: v < 50, "< 50"),
        ("webhook", "sustained allocations/s (lowest N)",
         lambda r: min(f["ours"]["perSecond"] for n, f in r["results"].items() if n != "1"),
         lambda v: v >= 200, ">= 200"),
        ("webhook", "ours / floor p99, 100 at once",
         lambda r: at("100")(r)["ratioP99"], lambda v: v <= 1.5, "<= 1.5"),
        ("outage", "breaker open p99, defer (ms)",
         lambda r: r["results"]["defer"]["oneAtATime"]["p99"], lambda v: v < 5, "< 5"),
        ("outage", "breaker open p99, fallback (ms)",
         lambda r: r["results"]["fallback"]["oneAtATime"]["p99"], lambda v: v < 5, "< 5"),
        ("journey", "300-device journey, all assigned (s)",
         lambda r: r["allAssignedSeconds"], lambda v: v < 30, "< 30"),
        ("cold_start", "import function_app (ms)",
         lambda r: r["importMs"], lambda v: v < 300, "< 300"),
        ("sync", "write amplification, twin -> asset",
         lambda r: r["twinToAsset"]["amplification"], lambda v: v == 1.0, "1.0"),
        ("sync", "write amplification, asset -> twin",
         lambda r: max(r["assetToTwin"][k]["amplification"]
                       for k in ("devstackDelivery", "parallelDelivery")),
         lambda v: v == 1.0, "1.0"),
    ]  # fmt: skip


def goal_table() -> Table:
    table = Table(title="goals (2-core machine; see docs/performance.md)")
    for column in ("measure", "goal", "measured", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, measure, figure, met, goal in _goals():
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            table.add_row(measure, goal, "not run", "")
            continue
        value = figure(json.loads(path.read_text()))
        verdict = "[green]met[/green]" if met(value) else "[red]missed[/red]"
        table.add_row(measure, goal, f"{value:.2f}", verdict)
    return table


def main(argv: list[str]) -> int:
    console = Console(width=max(Console().width, 120))
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        console.print(
            f"[red]unknown benchmark {', '.join(unknown)}[/red]; known: {', '.join(BENCHMARKS)}"
        )
        return 2
    facts = machine()
    console.print(
        f"[bold]benchmarks[/bold] on {facts['cpus']} cores, Python {facts['python']}"
        " (absolute figures depend on the machine; ratios measured side by side compare)"
    )
    for name in argv or list(BENCHMARKS):
        started = time.monotonic()
        console.rule(name)
        BENCHMARKS[name](console)
        console.print(f"[dim]{name}: {time.monotonic() - started:.0f} s[/dim]")
    console.print(goal_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
