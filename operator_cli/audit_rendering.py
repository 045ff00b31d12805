"""How an audit timeline looks on a terminal (rich) and as --json.

Entries hold identifiers and reasons that came from devices and services: they are shown as
plain text (never rich markup) with control characters escaped, as dead letters are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from audit.entry import AuditEntry
from audit.timeline import Timeline
from operator_cli.rendering import WIDE_TABLE_COLUMNS, listing_table, printable

KEY_DETAILS = ("role", "roleReason", "hubSelection", "hubReason", "reason", "outage", "detail")
"""Shown first, in this order: why the device got its role and hub, or why it was refused."""
MAX_DETAIL_ITEMS = 8
MAX_DETAIL_CHARS = 100

_COLUMNS = (
    "time",
    "action",
    "actor",
    "outcome",
    "device",
    "asset",
    "hub",
    "details",
    "request id",
)
_FLAGGED_ACTIONS = ("allocation.fallback", "device.deregistered")


def entry_time(moment: datetime) -> str:
    """UTC to the millisecond: entries of one registration are often that close."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _cell(value: object) -> Text:
    if value is None or value == "":
        return Text("-", style="dim")
    return Text(printable(str(value)))


def _shortened(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def key_details(details: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """(name, value) pairs to show, KEY_DETAILS first, then the others as recorded, leaving
    out empty ones; and how many more there are (capped at MAX_DETAIL_ITEMS)."""
    names = [name for name in KEY_DETAILS if details.get(name) is not None]
    names += [name for name in details if name not in KEY_DETAILS and details[name] is not None]
    pairs = []
    for name in names[:MAX_DETAIL_ITEMS]:
        value = details[name]
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        pairs.append((name, _shortened(text)))
    return pairs, max(0, len(names) - MAX_DETAIL_ITEMS)


def _details_cell(details: dict[str, Any]) -> Text:
    pairs, more = key_details(details)
    if not pairs:
        return _cell(None)
    lines = [
        Text.assemble((f"{printable(name)}=", "dim"), printable(value)) for name, value in pairs
    ]
    if more:
        lines.append(Text(f"+{more} more (see --json)", style="dim"))
    return Text("\n").join(lines)


def _action_style(entry: AuditEntry) -> str:
    if entry.action.endswith(".refused"):
        return "yellow"
    return "cyan" if entry.action in _FLAGGED_ACTIONS else ""


def _fields(entry: AuditEntry) -> dict[str, Text]:
    return {
        "time": _cell(entry_time(entry.at)),
        "action": Text(printable(entry.action), style=_action_style(entry)),
        "actor": _cell(entry.actor),
        "outcome": _cell(entry.outcome),
        "device": _cell(entry.device_id),
        "asset": _cell(entry.asset_id),
        "hub": _cell(entry.hub),
        "details": _details_cell(entry.details),
        "request id": _cell(entry.request_id),
    }


def _stacked(cells: dict[str, Text]) -> Text:
    def labelled(*names: str) -> Text:
        parts: list[Text] = []
        for name in names:
            parts += [Text(f"{name.removesuffix(' id')} ", style="dim"), cells[name], Text("  ")]
        return Text.assemble(*parts[:-1])

    lines = [labelled("actor", "outcome"), labelled("device", "asset", "hub")]
    if cells["details"].plain != "-":
        lines.append(cells["details"])
    lines.append(labelled("request id"))
    return Text("\n").join(lines)


def no_entries(subject: str, subject_id: str, table_name: str) -> Text:
    return Text(
        f"no audit entries for {subject} {printable(subject_id)} in table {table_name}",
        no_wrap=False,
    )


def timeline_table(
    timeline: Timeline, subject: str, subject_id: str, table_name: str, width: int
) -> RenderableType:
    """One row per entry, oldest first."""
    if not timeline.entries:
        return no_entries(subject, subject_id, table_name)
    count = len(timeline.entries)
    caption = f"{count} entr{'ies' if count != 1 else 'y'}, oldest first"
    if timeline.maybe_more:
        caption += "; only the latest are shown, older ones exist (raise --limit)"
    table = listing_table(
        f"audit trail of {subject} {printable(subject_id)} (table {table_name})", caption
    )
    wide = width >= WIDE_TABLE_COLUMNS
    table.add_column("time", no_wrap=True)
    table.add_column("action", overflow="fold")
    if wide:
        for name in _COLUMNS[2:]:
            table.add_column(name, overflow="fold", ratio=2 if name == "details" else None)
    else:
        table.add_column("entry", ratio=1, overflow="fold")
    for entry in timeline.entries:
        cells = _fields(entry)
        if wide:
            table.add_row(*(cells[name] for name in _COLUMNS))
        else:
            table.add_row(cells["time"], cells["action"], _stacked(cells))
    return table


def timeline_json(timeline: Timeline, subject: str, subject_id: str, table_name: str) -> str:
    document: dict[str, Any] = {
        "table": table_name,
        "subject": subject,
        "id": subject_id,
        "count": len(timeline.entries),
        "maybeMore": timeline.maybe_more,
        "unreadable": timeline.unreadable,
        "items": [entry.to_message() for entry in timeline.entries],
    }
    return json.dumps(document, indent=2)
