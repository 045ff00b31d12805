"""`python -m operator_cli status`: one screen on the running app, read without changing anything.

The app's health endpoint (its breakers and policy, as the worker that answers sees them), the
reconciliation, dead-letter and audit queues (their length, and a peek at their first 32
messages), and the devices each hub holds in a state other than provisioned (their twin tags).
Each source is read on its own: one that cannot be read is said so, and the others still show.

Exit codes: 0 every source read and the app healthy; 1 the app says it is degraded (a circuit
breaker is not closed); 2 bad usage or configuration; 3 a source could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from health.report import HealthReport
from operator_cli import config, status_config
from operator_cli.hub_config import hub_connections, hub_registry
from operator_cli.status_rendering import status_screen
from operator_cli.status_sources import ask_health, devices_not_provisioned, glance
from operator_cli.status_summary import (
    HubDevices,
    QueueNames,
    Readings,
    Unread,
    status_json,
    summarise,
)

if TYPE_CHECKING:
    from operator_cli.commands import Context

STORAGE_TIMEOUT_SECONDS = 10.0
_DESCRIPTION = (
    "The app's breakers and policy (its health endpoint), the reconciliation, dead-letter and "
    "audit queues, and the devices not provisioned on each hub; nothing is changed. The app "
    "is found with $HEALTH_URL and $HEALTH_FUNCTION_KEY(_FILE), the hubs as the app finds "
    "them, else the local stack's .devstack/stack.json (docs/operations.md)."
)
_EXIT_CODES = """\
exit codes: 0 everything read, the app healthy; 1 the app is degraded (a breaker is not closed);
2 bad usage or configuration; 3 something could not be read (the app did not answer, a queue or
a hub could not be read)
"""


def add_status_command(
    areas: argparse._SubParsersAction[argparse.ArgumentParser], *, connection_help: str
) -> None:
    parser = areas.add_parser(
        "status",
        help="one screen on the running app: breakers, queues, dead letters, devices",
        description=_DESCRIPTION,
        epilog=_EXIT_CODES,
    )
    parser.add_argument("--connection-string", metavar="TEXT", help=connection_help)
    parser.add_argument("--json", action="store_true", help="JSON instead of tables")
    parser.set_defaults(action="show")


@dataclass(frozen=True)
class _Sources:
    storage: config.StorageConnection
    names: QueueNames
    health: status_config.HealthEndpoint | None
    hubs: Mapping[str, str] | None
    """The hub settings; None when there are none."""

    def hub_names(self) -> list[str]:
        """The configured hubs; a bad hub setting is a configuration error before any read."""
        if self.hubs is None:
            return []
        return sorted(connection.hub for connection in hub_connections(self.hubs).values())


def show_status(ctx: Context) -> int:
    args = ctx.args
    environ = ctx.environ
    sources = _Sources(
        storage=config.resolve_connection(args.connection_string, environ, ctx.cwd),
        names=QueueNames(
            reconciliation=config.queue_from(
                None,
                environ,
                config.RECONCILIATION_QUEUE_ENV,
                config.DEFAULT_RECONCILIATION_QUEUE,
            ),
            dead_letters=config.queue_from(
                None, environ, config.DEAD_LETTER_QUEUE_ENV, config.DEFAULT_DEAD_LETTER_QUEUE
            ),
            audit=config.queue_from(
                None, environ, config.AUDIT_QUEUE_ENV, config.DEFAULT_AUDIT_QUEUE
            ),
        ),
        health=status_config.health_endpoint(environ, ctx.cwd),
        hubs=status_config.hub_settings(environ, ctx.cwd),
    )
    encoding = config.message_encoding(environ)
    hubs = sources.hub_names()
    summary = summarise(asyncio.run(_read(sources, hubs)), sources.names, encoding)
    if args.json:
        ctx.out.file.write(json.dumps(status_json(summary), indent=2) + "\n")
    else:
        ctx.out.print(status_screen(summary))
    return summary.exit_code


async def _read(sources: _Sources, hubs: list[str]) -> Readings:
    storage = sources.storage.clients(timeout_seconds=STORAGE_TIMEOUT_SECONDS, retry_total=0)
    origin = sources.storage.source
    try:
        reconciliation, dead_letters, audit, app, devices = await asyncio.gather(
            glance(storage, sources.names.reconciliation, origin),
            glance(storage, sources.names.dead_letters, origin),
            glance(storage, sources.names.audit, origin),
            _health(sources.health),
            _devices(sources.hubs, hubs),
        )
    finally:
        await storage.aclose()
    return Readings(
        read_at=datetime.now(UTC),
        app_url=sources.health.url if sources.health else None,
        app=app,
        reconciliation=reconciliation,
        dead_letters=dead_letters,
        audit=audit,
        devices=devices,
    )


async def _health(endpoint: status_config.HealthEndpoint | None) -> HealthReport | Unread:
    if endpoint is None:
        return Unread(status_config.NOT_CONFIGURED)
    return await ask_health(endpoint)


async def _devices(
    settings: Mapping[str, str] | None, hubs: list[str]
) -> list[HubDevices] | Unread:
    if settings is None:
        return Unread(status_config.HUBS_NOT_CONFIGURED)
    return await devices_not_provisioned(hub_registry(settings), hubs)
