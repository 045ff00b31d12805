"""The command line: `python -m operator_cli dead-letters {list,show,replay} ...`,
`python -m operator_cli audit {device,asset,registration} ID`, `python -m operator_cli
enrollment {plan,apply,list}`, `python -m operator_cli smoke` and `python -m operator_cli
status`.

Exit codes: 0 done, 1 not found / refused / failed / not confirmed, 2 bad usage or
configuration (argparse's own code for usage errors); `status` adds 3, something could not be
read (status_command).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console

from operator_cli import config
from operator_cli.audit_commands import add_audit_commands, show_timeline
from operator_cli.dead_letter_store import (
    LIST_VISIBILITY_SECONDS,
    MAX_SCAN,
    REPLAY_VISIBILITY_SECONDS,
    DeadLetterQueue,
    Listing,
)
from operator_cli.enrollment_commands import ENROLLMENT_ACTIONS, add_enrollment_commands
from operator_cli.errors import CONFIGURATION_EXIT_CODE, ConfigurationError, OperatorError
from operator_cli.explain import add_explain_command, explain
from operator_cli.letters import QueuedLetter, refusal
from operator_cli.rendering import (
    letter_json_text,
    letter_panel,
    letters_table,
    listing_json,
    printable,
    replay_report,
)
from operator_cli.replay import ReplayOutcome, replay
from operator_cli.smoke_command import SMOKE_ACTIONS, add_smoke_command
from operator_cli.status_command import add_status_command, show_status
from resilience.durable_queue import StorageQueue

PROG = "python -m operator_cli"
DEFAULT_LIMIT = 100
SEND_TIMEOUT_SECONDS = 10

_EXIT_CODES = """\
exit codes: 0 done; 1 not found, refused, failed or not confirmed; 2 bad usage or configuration
"""
_CONNECTION_HELP = (
    f"storage connection string (default: ${config.CONNECTION_ENV}, else "
    f"{config.STACK_FILE} of the local stack); prefer the environment variable: "
    "other local users can read command lines"
)


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    environ: Mapping[str, str]
    cwd: Path
    out: Console
    err: Console
    stdin: TextIO

    def dead_letter_queue(self) -> DeadLetterQueue:
        connection = config.resolve_connection(self.args.connection_string, self.environ, self.cwd)
        name = config.queue_from(
            self.args.queue,
            self.environ,
            config.DEAD_LETTER_QUEUE_ENV,
            config.DEFAULT_DEAD_LETTER_QUEUE,
        )
        return DeadLetterQueue(connection, name, config.message_encoding(self.environ))

    def warn_if_unreleased(self, queue: DeadLetterQueue, visibility_seconds: int) -> None:
        if queue.unreleased:
            self.err.print(
                f"warning: {queue.unreleased} message(s) could not be made visible again; "
                f"they reappear on their own within {visibility_seconds} s",
                style="yellow",
                highlight=False,
                markup=False,
            )


def _limit(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_SCAN):
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer from 1 to {MAX_SCAN}")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operator tools for the DPS onboarding app.",
        epilog=_EXIT_CODES,
    )
    areas = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    dead_letters = areas.add_parser(
        "dead-letters",
        help="list, show and replay the dead-letter queue",
        description=(
            "Provisions and events that failed for good, kept on the dead-letter queue "
            f"(${config.DEAD_LETTER_QUEUE_ENV}, default {config.DEFAULT_DEAD_LETTER_QUEUE}). "
            "Listing and showing never consume a message."
        ),
        epilog=_EXIT_CODES,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--connection-string", metavar="TEXT", help=_CONNECTION_HELP)
    common.add_argument(
        "--queue",
        metavar="NAME",
        help=f"dead-letter queue (default: ${config.DEAD_LETTER_QUEUE_ENV}, "
        f"else {config.DEFAULT_DEAD_LETTER_QUEUE})",
    )
    actions = dead_letters.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[common], help="the messages, oldest first", epilog=_EXIT_CODES
    )
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"read at most N messages, 1 to {MAX_SCAN} (default: %(default)s)",
    )
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = actions.add_parser(
        "show", parents=[common], help="one message in full", epilog=_EXIT_CODES
    )
    show.add_argument("message_id", metavar="MESSAGE-ID")
    show.add_argument("--json", action="store_true", help="JSON instead of a panel")
    again = actions.add_parser(
        "replay",
        parents=[common],
        help="queue replayable letters for reconciliation again",
        description=(
            "Put each replayable letter's work on the reconciliation queue, then delete the "
            "letter (in that order: a crash in between duplicates, never loses). Letters "
            "marked not replayable, and unreadable messages, are refused."
        ),
        epilog=_EXIT_CODES,
    )
    again.add_argument("message_id", nargs="?", metavar="MESSAGE-ID")
    again.add_argument("--all", action="store_true", help="every replayable letter")
    again.add_argument("--yes", action="store_true", help="do not ask before --all")
    again.add_argument(
        "--reconciliation-queue",
        metavar="NAME",
        help=f"where replays go (default: ${config.RECONCILIATION_QUEUE_ENV}, "
        f"else {config.DEFAULT_RECONCILIATION_QUEUE})",
    )
    add_audit_commands(areas, connection_help=_CONNECTION_HELP, epilog=_EXIT_CODES)
    add_explain_command(areas, connection_help=_CONNECTION_HELP, epilog=_EXIT_CODES)
    add_enrollment_commands(areas, epilog=_EXIT_CODES)
    add_smoke_command(areas, epilog=_EXIT_CODES)
    add_status_command(areas, connection_help=_CONNECTION_HELP)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        args.area == "dead-letters"
        and args.action == "replay"
        and (args.message_id is None) == (not args.all)
    ):
        parser.error("replay needs a MESSAGE-ID or --all (not both)")
    return args


def list_letters(ctx: Context) -> int:
    queue = ctx.dead_letter_queue()
    listing = asyncio.run(_browse(queue, ctx.args.limit))
    ctx.warn_if_unreleased(queue, LIST_VISIBILITY_SECONDS)
    if ctx.args.json:
        ctx.out.file.write(listing_json(listing, queue.name) + "\n")
    else:
        ctx.out.print(letters_table(listing, queue.name, ctx.out.width))
    return 0


def show_letter(ctx: Context) -> int:
    queue = ctx.dead_letter_queue()
    found = asyncio.run(_find(queue, ctx.args.message_id))
    ctx.warn_if_unreleased(queue, LIST_VISIBILITY_SECONDS)
    if found is None:
        raise OperatorError(_not_found(ctx.args.message_id, queue.name))
    if ctx.args.json:
        ctx.out.file.write(letter_json_text(found, queue.name) + "\n")
    else:
        ctx.out.print(letter_panel(found, queue.name))
    return 0


def replay_letters(ctx: Context) -> int:
    """The question for --all is asked between two event loops, so Ctrl-C ends it at once."""
    args = ctx.args
    target = config.queue_from(
        args.reconciliation_queue,
        ctx.environ,
        config.RECONCILIATION_QUEUE_ENV,
        config.DEFAULT_RECONCILIATION_QUEUE,
    )
    queue = ctx.dead_letter_queue()
    if args.all:
        listing = asyncio.run(_browse(queue, MAX_SCAN))
        ctx.warn_if_unreleased(queue, LIST_VISIBILITY_SECONDS)
        ids = _confirmed_ids(ctx, listing, queue.name, target)
        if ids is None:
            return 1
        if not ids:
            return 0
    else:
        ids = [args.message_id]
    outcomes = asyncio.run(_replay(queue, target, ids))
    ctx.warn_if_unreleased(queue, REPLAY_VISIBILITY_SECONDS)
    if not args.all and outcomes[0].status == "missing":
        raise OperatorError(_not_found(args.message_id, queue.name))
    ctx.out.print(replay_report(outcomes, target))
    return 0 if all(outcome.ok for outcome in outcomes) else 1


async def _browse(queue: DeadLetterQueue, limit: int) -> Listing:
    async with queue:
        return await queue.browse(limit)


async def _find(queue: DeadLetterQueue, message_id: str) -> QueuedLetter | None:
    async with queue:
        return await queue.find(message_id)


async def _replay(queue: DeadLetterQueue, target: str, ids: list[str]) -> list[ReplayOutcome]:
    async with (
        queue,
        StorageQueue(
            queue.connection.clients(timeout_seconds=SEND_TIMEOUT_SECONDS, retry_total=0),
            target,
            encoding=queue.encoding,
            timeout_seconds=SEND_TIMEOUT_SECONDS,
            owns_storage=True,
        ) as reconciliation,
    ):
        return await replay(queue, reconciliation, ids)


def _confirmed_ids(
    ctx: Context, listing: Listing, queue_name: str, target: str
) -> list[str] | None:
    """The replayable letters' ids once the operator agreed; None when they did not."""
    ids = [letter.message_id for letter in listing.letters if refusal(letter) is None]
    kept = len(listing.letters) - len(ids)
    if not ids:
        ctx.out.print(
            f"nothing to replay in queue {queue_name}: {len(listing.letters)} message(s), "
            "none replayable",
            highlight=False,
            markup=False,
        )
        return []
    if ctx.args.yes:
        return ids
    staying = f" ({kept} not replayable will stay)" if kept else ""
    ctx.err.print(
        f"replay {len(ids)} dead letter(s) from queue {queue_name} onto queue {target}"
        f"{staying}? [y/N] ",
        end="",
        highlight=False,
        markup=False,
    )
    answer = ctx.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        ctx.err.print(
            "nothing replayed (pass --yes to skip this question)", highlight=False, markup=False
        )
        return None
    return ids


def _not_found(message_id: str, queue_name: str) -> str:
    return (
        f"no message with id {printable(message_id[:200])} in queue {queue_name} "
        f"(looked at up to {MAX_SCAN} messages)"
    )


def _quiet_sdk_logs() -> None:
    """The SDK logs warnings with tracebacks (and request URLs); our errors say what matters."""
    sdk = logging.getLogger("azure")
    sdk.addHandler(logging.NullHandler())
    sdk.propagate = False


_ACTIONS = {
    ("dead-letters", "list"): list_letters,
    ("dead-letters", "show"): show_letter,
    ("dead-letters", "replay"): replay_letters,
    ("audit", "device"): show_timeline,
    ("audit", "asset"): show_timeline,
    ("audit", "registration"): show_timeline,
    ("explain", "run"): explain,
    ("status", "show"): show_status,
    **ENROLLMENT_ACTIONS,
    **SMOKE_ACTIONS,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: TextIO | None = None,
) -> int:
    args = parse_args(argv)
    _quiet_sdk_logs()
    ctx = Context(
        args=args,
        environ=os.environ if environ is None else environ,
        cwd=Path.cwd() if cwd is None else cwd,
        out=Console(),
        err=Console(stderr=True),
        stdin=sys.stdin if stdin is None else stdin,
    )
    try:
        return _ACTIONS[args.area, args.action](ctx)
    except ConfigurationError as exc:
        ctx.err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        return CONFIGURATION_EXIT_CODE
    except OperatorError as exc:
        ctx.err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.err.print("interrupted", style="red", highlight=False, markup=False)
        return 130
