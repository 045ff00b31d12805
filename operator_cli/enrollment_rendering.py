"""How plans and DPS's groups look on a terminal; webhook URLs always lose their key."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from operator_cli.enrollment_desired import masked_url
from operator_cli.enrollment_plan import WEBHOOK_FIELD, PlannedGroup, shown
from operator_cli.rendering import printable

_STYLES = {"create": "green", "update": "yellow", "unchanged": "dim"}


def plan_table(entries: Sequence[PlannedGroup], *, applied: bool = False) -> RenderableType:
    table = Table(
        title="enrollment groups applied" if applied else "enrollment plan",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("group", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("changes", overflow="fold")
    for entry in entries:
        changes = Text()
        for change in entry.changes:
            if changes:
                changes.append("\n")
            changes.append(f"{change.field}: ", style="bold")
            if entry.action == "update":
                changes.append(_value(change.field, change.before), style="red")
                changes.append(" -> ")
            changes.append(_value(change.field, change.after), style="green")
            if _only_key_changed(change.field, change.before, change.after):
                changes.append(" (function key changed)", style="yellow")
        table.add_row(
            Text(printable(entry.group_id)),
            Text(_done(entry.action) if applied else entry.action, style=_STYLES[entry.action]),
            changes,
        )
    return Group(table, Text(summary(entries, applied=applied)))


def summary(entries: Sequence[PlannedGroup], *, applied: bool) -> str:
    counts = {action: 0 for action in _STYLES}
    for entry in entries:
        counts[entry.action] += 1
    if applied:
        return (
            f"{counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged"
        )
    return (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['unchanged']} unchanged"
    )


def groups_table(groups: Sequence[dict[str, Any]]) -> RenderableType:
    table = Table(title="enrollment groups in DPS", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("group", "status", "allocation", "webhook", "hubs", "signing CA", "etag"):
        table.add_column(name, overflow="fold")
    for group in groups:
        view = masked_group(group)
        definition = view.get("customAllocationDefinition") or {}
        table.add_row(
            Text(printable(str(view.get("enrollmentGroupId", "?")))),
            Text(str(view.get("provisioningStatus", "enabled"))),
            Text(str(view.get("allocationPolicy", ""))),
            Text(printable(str(definition.get("webhookUrl", "")))),
            Text(printable(", ".join(map(str, view.get("iotHubs") or [])))),
            Text(printable(_signer(view))),
            Text(printable(str(view.get("etag", "")))),
        )
    return Group(table, Text(f"{len(groups)} group(s)"))


def groups_json(groups: Sequence[dict[str, Any]]) -> str:
    return json.dumps([masked_group(group) for group in groups], indent=2)


def masked_group(group: dict[str, Any]) -> dict[str, Any]:
    """A copy whose webhook URL shows no key."""
    view: dict[str, Any] = json.loads(json.dumps(group))
    definition = view.get("customAllocationDefinition")
    if isinstance(definition, dict) and isinstance(definition.get("webhookUrl"), str):
        definition["webhookUrl"] = masked_url(definition["webhookUrl"])
    return view


def _signer(group: dict[str, Any]) -> str:
    x509_section = (group.get("attestation") or {}).get("x509") or {}
    primary = (x509_section.get("signingCertificates") or {}).get("primary") or {}
    info = primary.get("info") or {}
    if info.get("subjectName"):
        return f"{info['subjectName']} ({str(info.get('sha256Thumbprint', ''))[:16]}...)"
    reference = (x509_section.get("caReferences") or {}).get("primary")
    return f"caReference {reference}" if reference else ""


def _value(field: str, value: Any) -> str:
    shown_value = shown(field, value)
    return printable(json.dumps(shown_value) if not isinstance(shown_value, str) else shown_value)


def _only_key_changed(field: str, before: Any, after: Any) -> bool:
    return (
        field == WEBHOOK_FIELD
        and isinstance(before, str)
        and isinstance(after, str)
        and before != after
        and shown(field, before) == shown(field, after)
    )


def _done(action: str) -> str:
    return {"create": "created", "update": "updated", "unchanged": "unchanged"}[action]
