"""How dead letters look on a terminal (rich) and as --json.

Message contents come from devices and services: they are shown as plain text (never as rich
markup) with control characters escaped, so a message cannot restyle or rewrite the terminal.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from operator_cli.dead_letter_store import Listing
from operator_cli.letters import QueuedLetter, letter_json, refusal
from operator_cli.replay import ReplayOutcome

_STATUS_STYLES = {
    "replayed": "green",
    "refused": "yellow",
    "missing": "yellow",
    "skipped": "yellow",
    "failed": "bold red",
    "duplicated": "bold red",
}


def listing_table(title: str, caption: str) -> Table:
    """The frame every listing shares: title and caption left, a rule under the header."""
    return Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )


def printable(text: str) -> str:
    """Control and format characters (ESC, bidi overrides, ...) written as escapes."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch).startswith("C")
        else ch
        for ch in text
    )


def _cell(value: object) -> Text:
    if value is None or value == "":
        return Text("-", style="dim")
    return Text(printable(str(value)))


def timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


WIDE_TABLE_COLUMNS = 170
"""From this terminal width on, one column per field; below it, the fields stack in a cell."""
_COLUMNS = (
    "id",
    "dead-lettered at",
    "source",
    "kind",
    "reason",
    "registration id",
    "device id",
    "asset id",
    "attempts",
    "replayable",
)


def _fields(queued: QueuedLetter) -> dict[str, Text]:
    """A message's cells by column name."""
    letter = queued.letter
    if letter is None:
        cells = {name: _cell(None) for name in _COLUMNS}
        cells.update(
            {
                "id": _cell(queued.message_id),
                "dead-lettered at": _cell(timestamp(queued.inserted_on)),
                "source": Text("unreadable", style="bold red"),
                "reason": _cell(queued.problem),
                "replayable": Text("no", style="red"),
            }
        )
        return cells
    replayable = refusal(queued) is None
    return {
        "id": _cell(queued.message_id),
        "dead-lettered at": _cell(timestamp(letter.dead_lettered_at)),
        "source": _cell(letter.source),
        "kind": _cell(letter.kind),
        "reason": _cell(letter.reason),
        "registration id": _cell(letter.registration_id),
        "device id": _cell(letter.device_id),
        "asset id": _cell(letter.asset_id),
        "attempts": _cell(letter.attempts),
        "replayable": Text("yes", style="green") if replayable else Text("no", style="yellow"),
    }


def _stacked(cells: dict[str, Text]) -> Text:
    def labelled(*names: str) -> Text:
        parts: list[Text] = []
        for name in names:
            parts += [Text(f"{name.removesuffix(' id')} ", style="dim"), cells[name], Text("  ")]
        return Text.assemble(*parts[:-1])

    return Text("\n").join(
        [
            labelled("source", "kind", "attempts", "replayable"),
            cells["reason"],
            labelled("registration id", "device id", "asset id"),
        ]
    )


def letters_table(listing: Listing, queue_name: str, width: int) -> RenderableType:
    """One row per message, oldest first; unreadable messages as red rows with the reason.

    The id never wraps: it is what `show` and `replay` take.
    """
    if not listing.letters:
        return Text(f"no dead letters in queue {queue_name}")
    count = len(listing.letters)
    caption = f"{count} message{'s' if count != 1 else ''}"
    if listing.maybe_more:
        caption += "; the limit was reached, more may be waiting (raise --limit)"
    table = listing_table(f"dead letters in queue {queue_name}", caption)
    wide = width >= WIDE_TABLE_COLUMNS
    table.add_column("id", no_wrap=True)
    table.add_column("dead-lettered at", overflow="fold", min_width=10)
    if wide:
        for name in _COLUMNS[2:]:
            table.add_column(
                name,
                overflow="fold",
                ratio=1 if name == "reason" else None,
                justify="right" if name == "attempts" else "left",
            )
    else:
        table.add_column("letter", ratio=1, overflow="fold")
    for queued in listing.letters:
        cells = _fields(queued)
        if wide:
            row = [cells[name] for name in _COLUMNS]
        else:
            row = [cells["id"], cells["dead-lettered at"], _stacked(cells)]
        table.add_row(*row, style="red" if queued.letter is None else None)
    return table


def letter_panel(queued: QueuedLetter, queue_name: str) -> RenderableType:
    """One message in full: every field, the request as JSON, and how to replay it."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    fields.add_row("id", _cell(queued.message_id))
    fields.add_row("queue", _cell(queue_name))
    fields.add_row("queued at", _cell(timestamp(queued.inserted_on)))
    letter = queued.letter
    if letter is None:
        fields.add_row("problem", _cell(queued.problem))
        return Panel(
            Group(fields, Text("content as stored:", style="bold"), Text(printable(queued.text))),
            title=f"unreadable message {printable(queued.message_id)}",
            title_align="left",
            border_style="red",
        )
    for name, value in (
        ("source", letter.source),
        ("kind", letter.kind),
        ("reason", letter.reason),
        ("detail", letter.detail),
        ("registration id", letter.registration_id),
        ("device id", letter.device_id),
        ("asset id", letter.asset_id),
        ("hub", letter.hub),
        ("request id", letter.request_id),
        ("attempts", letter.attempts),
        ("first seen", timestamp(letter.first_seen) if letter.first_seen else None),
        ("dead-lettered at", timestamp(letter.dead_lettered_at)),
    ):
        fields.add_row(name, _cell(value))
    refused = refusal(queued)
    fields.add_row(
        "replayable",
        Text("yes", style="green")
        if refused is None
        else Text(f"no: {printable(refused)}", style="yellow"),
    )
    parts: list[RenderableType] = [fields]
    if letter.request is not None:
        parts += [
            Text("request:", style="bold"),
            JSON.from_data(letter.request, indent=2, ensure_ascii=True),
        ]
    if refused is None:
        command = f"python -m operator_cli dead-letters replay {queued.message_id}"
        parts.append(Text(f"replay with: {printable(command)}", style="dim"))
    return Panel(
        Group(*parts),
        title=f"dead letter {printable(queued.message_id)}",
        title_align="left",
    )


def listing_json(listing: Listing, queue_name: str) -> str:
    document: dict[str, Any] = {
        "queue": queue_name,
        "count": len(listing.letters),
        "maybeMore": listing.maybe_more,
        "items": [letter_json(queued, full=False) for queued in listing.letters],
    }
    return json.dumps(document, indent=2)


def letter_json_text(queued: QueuedLetter, queue_name: str) -> str:
    return json.dumps({"queue": queue_name, **letter_json(queued, full=True)}, indent=2)


def replay_report(outcomes: Sequence[ReplayOutcome], target_queue: str) -> RenderableType:
    """A line per letter, then the count."""
    lines = [
        Text.assemble(
            (f"{outcome.status:<10}", _STATUS_STYLES.get(outcome.status, "")),
            " ",
            printable(outcome.message_id),
            ": ",
            printable(outcome.detail),
        )
        for outcome in outcomes
    ]
    replayed = sum(outcome.ok for outcome in outcomes)
    lines.append(
        Text(
            f"replayed {replayed} of {len(outcomes)} onto queue {target_queue}",
            style="bold",
        )
    )
    return Group(*lines)
