"""`python -m operator_cli audit {device,asset,registration} ID`: a timeline from the audit table.

Why did device X get role Y on hub Z, and what happened to it since? Each command reads one
subject's entries (single-partition scans of the table), newest first up to --limit, and
shows them oldest first. Reading never changes the table.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from audit.errors import AuditStoreError
from audit.table_access import AuditTable
from audit.timeline import MAX_LIMIT, AuditTimelines, Timeline
from operator_cli import config
from operator_cli.audit_rendering import no_entries, timeline_json, timeline_table
from operator_cli.errors import TableServiceError

if TYPE_CHECKING:
    from operator_cli.commands import Context

DEFAULT_LIMIT = 100
TIMEOUT_SECONDS = 10.0
_CREDENTIAL_CODES = frozenset(
    {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch"}
)
SUBJECTS = {
    "device": "a device's entries (by device id), e.g. why it got its role and hub",
    "asset": "an asset's entries: every device that served it, replacements, syncs",
    "registration": "a DPS registration's entries (by registration id)",
}


def _limit(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def add_audit_commands(
    areas: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    connection_help: str,
    epilog: str,
) -> None:
    """The `audit` area and its three subjects."""
    audit = areas.add_parser(
        "audit",
        help="the audit trail of a device, asset or registration",
        description=(
            "Who decided what about a device, asset or registration, when and why, from the "
            f"audit table (${config.AUDIT_TABLE_ENV}, default {config.DEFAULT_AUDIT_TABLE}). "
            "Shows the latest entries, oldest first."
        ),
        epilog=epilog,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--connection-string", metavar="TEXT", help=connection_help)
    common.add_argument(
        "--table",
        metavar="NAME",
        help=f"audit table (default: ${config.AUDIT_TABLE_ENV}, else {config.DEFAULT_AUDIT_TABLE})",
    )
    common.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show the latest N entries, 1 to {MAX_LIMIT} (default: %(default)s)",
    )
    common.add_argument("--json", action="store_true", help="JSON instead of a table")
    subjects = audit.add_subparsers(dest="action", required=True, metavar="SUBJECT")
    for subject, help_text in SUBJECTS.items():
        parser = subjects.add_parser(subject, parents=[common], help=help_text, epilog=epilog)
        parser.add_argument("subject_id", metavar=f"{subject.upper()}-ID")


def show_timeline(ctx: Context) -> int:
    args = ctx.args
    subject: str = args.action
    connection = config.resolve_connection(args.connection_string, ctx.environ, ctx.cwd)
    store = _store(connection, config.table_from(args.table, ctx.environ))
    try:
        timeline = asyncio.run(_read(store, subject, args.subject_id, args.limit))
    except AuditStoreError as exc:
        # Our error texts name the table and the service's answer, never the account URL.
        if exc.code in _CREDENTIAL_CODES:
            raise TableServiceError(
                f"{exc}; check the connection string from {connection.source}"
            ) from None
        if exc.code is None and getattr(exc, "status", None) is None:
            raise TableServiceError(
                f"{exc}; is the storage account from {connection.source} up?"
            ) from None
        raise TableServiceError(str(exc)) from None
    if timeline.unreadable:
        ctx.err.print(
            f"warning: {timeline.unreadable} entit{'ies' if timeline.unreadable != 1 else 'y'} "
            f"in table {store.table_name} could not be read as audit entries and are not shown",
            style="yellow",
            highlight=False,
            markup=False,
        )
    if args.json:
        ctx.out.file.write(
            timeline_json(timeline, subject, args.subject_id, store.table_name) + "\n"
        )
    elif not timeline.entries:
        ctx.out.print(no_entries(subject, args.subject_id, store.table_name), highlight=False)
    else:
        ctx.out.print(
            timeline_table(timeline, subject, args.subject_id, store.table_name, ctx.out.width)
        )
    return 0


def _store(connection: config.StorageConnection, table: str) -> AuditTimelines:
    return AuditTimelines(
        AuditTable(connection.clients(timeout_seconds=TIMEOUT_SECONDS), table, owns_storage=True)
    )


async def _read(store: AuditTimelines, subject: str, subject_id: str, limit: int) -> Timeline:
    readers = {
        "device": store.by_device,
        "asset": store.by_asset,
        "registration": store.by_registration,
    }
    async with store:
        return await readers[subject](subject_id, limit)
