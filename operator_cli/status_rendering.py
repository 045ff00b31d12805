"""How `status` looks on a terminal: one screen of small tables, the verdict last.

Reasons and names come from messages and the app: shown as plain text (never rich markup) with
control characters escaped, as dead letters are.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.text import Text

from operator_cli.rendering import listing_table, printable, timestamp
from operator_cli.status_summary import (
    DeadLetterFigures,
    DeviceFigures,
    QueueFigures,
    StatusSummary,
    age_seconds,
)

_VERDICT_STYLES = {"ok": "bold green", "degraded": "bold yellow", "incomplete": "bold red"}
_STATE_STYLES = {"closed": "green", "half-open": "yellow", "open": "bold red"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def _age(moment: datetime | None, now: datetime) -> str:
    return duration(age_seconds(moment, now))


def _plain(value: object) -> Text:
    return Text(printable(str(value)))


def status_screen(summary: StatusSummary) -> RenderableType:
    now = summary.read_at
    return Group(
        _app(summary, now),
        Text(""),
        _queues(summary, now),
        Text(""),
        _dead_letter_reasons(summary.dead_letters),
        Text(""),
        _devices(summary.devices, now),
        Text(""),
        _fallbacks(summary, now),
        _verdict(summary),
    )


def _app(summary: StatusSummary, now: datetime) -> RenderableType:
    where = printable(summary.app_url or "no URL")
    app = summary.app
    if app is None:
        return Text.assemble(
            ("app ", "bold"),
            ("did not answer", "bold red"),
            f" ({where}): ",
            printable(summary.app_problem or ""),
        )
    table = listing_table(
        f"app {app.status}, policy {printable(app.policy.version)}",
        f"{where}, as the worker that answered sees it",
    )
    for column in ("breaker", "state", "for", "failures"):
        table.add_column(column, justify="right" if column == "failures" else "left")
    for breaker in app.breakers:
        table.add_row(
            _plain(breaker.name),
            Text(breaker.state, style=_STATE_STYLES.get(breaker.state, "")),
            Text("since start", style="dim")
            if breaker.since is None
            else Text(_age(breaker.since, now)),
            Text(f"{breaker.failures} of {breaker.fail_max}"),
        )
    return table


def _seen(figures: QueueFigures) -> str:
    return "-" if figures.messages is None else f"{figures.seen} of {figures.messages}"


def _queues(summary: StatusSummary, now: datetime) -> RenderableType:
    table = listing_table(
        "queues",
        "messages: the queue's count, retries in flight included; seen: the first visible "
        "ones a peek returns (at most 32); audit: entries not yet in the audit table",
    )
    for column in ("queue", "messages", "seen", "oldest seen", "kinds seen"):
        table.add_column(column, justify="right" if column == "messages" else "left")
    reconciliation = summary.reconciliation
    kinds = ", ".join(f"{kind} {count}" for kind, count in reconciliation.by_kind.items())
    if reconciliation.unreadable:
        kinds += f"{', ' if kinds else ''}unreadable {reconciliation.unreadable}"
    rows = [
        (reconciliation.queue, kinds),
        (summary.dead_letters.queue, _unreadable(summary.dead_letters.unreadable)),
        (summary.audit, ""),
    ]
    for figures, note in rows:
        if figures.problem is not None:
            table.add_row(
                _plain(figures.name),
                Text("?", style="bold red"),
                Text("-"),
                Text("-"),
                Text(printable(figures.problem), style="red"),
            )
            continue
        table.add_row(
            _plain(figures.name),
            Text(str(figures.messages)),
            Text(_seen(figures)),
            Text(_age(figures.oldest_queued_at, now)),
            _plain(note) if note else Text("-", style="dim"),
        )
    return table


def _unreadable(count: int) -> str:
    return f"unreadable {count}" if count else ""


def _dead_letter_reasons(figures: DeadLetterFigures) -> RenderableType:
    if figures.queue.problem is not None:
        return Text(f"dead letters by reason: not read ({printable(figures.queue.problem)})")
    if not figures.by_reason:
        return Text("dead letters by reason: none seen", style="dim")
    caption = "" if figures.queue.complete else "of the messages a peek saw"
    table = listing_table("dead letters by reason", caption)
    table.add_column("reason", overflow="fold")
    table.add_column("count", justify="right")
    for reason, count in figures.by_reason:
        table.add_row(_plain(reason), Text(str(count)))
    return table


def _devices(devices: DeviceFigures, now: datetime) -> RenderableType:
    title = "devices not provisioned, by twin tags.provisioningState"
    if devices.problem is not None:
        return Text(f"{title}: not read ({printable(devices.problem)})")
    caption = "provisioned devices are not counted"
    if devices.capped:
        caption += "; a hub's limit was reached: at least these"
    table = listing_table(title, caption)
    for column in ("hub", "state", "devices", "oldest pending"):
        table.add_column(column, justify="right" if column == "devices" else "left")
    for hub in devices.hubs:
        if hub.problem is not None:
            table.add_row(
                _plain(hub.hub), Text("?", style="bold red"), Text("-"), _plain(hub.problem)
            )
        elif not hub.by_state:
            table.add_row(_plain(hub.hub), Text("none", style="dim"), Text("0"), Text("-"))
        for state, count in hub.by_state.items():
            pending = state == "pendingReconciliation"
            table.add_row(
                _plain(hub.hub),
                _plain(state),
                Text(str(count)),
                Text(_age(hub.oldest_pending_since, now) if pending else "-"),
            )
    return table


def _fallbacks(summary: StatusSummary, now: datetime) -> RenderableType:
    devices = summary.devices
    reconciliation = summary.reconciliation
    parts = []
    if devices.problem is None:
        pending = devices.by_state.get("pendingReconciliation", 0)
        parts.append(
            f"{pending} device(s) pending on their twins"
            + (f", the oldest for {_age(devices.oldest_pending_since, now)}" if pending else "")
        )
    if reconciliation.queue.problem is None:
        seen = reconciliation.fallbacks_seen
        parts.append(
            f"{seen} allocation message(s) seen on queue {reconciliation.queue.name}"
            + (f", the oldest for {_age(reconciliation.oldest_fallback_at, now)}" if seen else "")
        )
    return Text(
        "fallbacks waiting for reconciliation: " + ("; ".join(parts) or "not read"),
        style="bold",
    )


def _verdict(summary: StatusSummary) -> RenderableType:
    verdict = summary.verdict
    return Text.assemble(
        ("status ", "bold"),
        (verdict, _VERDICT_STYLES[verdict]),
        f" at {timestamp(summary.read_at)} (exit code {summary.exit_code})",
    )
