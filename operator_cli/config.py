"""Where the CLI finds the storage account, its queues and their message encoding.

The connection string comes from, in this order: --connection-string, the AzureWebJobsStorage
environment variable (the app setting of the same name), or the local stack's
.devstack/stack.json (written by `make run`). Queue names and the encoding follow the app
settings RECONCILIATION_QUEUE, DEAD_LETTER_QUEUE and QUEUE_MESSAGE_ENCODING; the audit table's
name follows AUDIT_TABLE.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from audit.table_store import valid_table_name
from observability import redact
from operator_cli.errors import ConfigurationError
from resilience.durable_queue import QueueEncoding

CONNECTION_FLAG = "--connection-string"
CONNECTION_ENV = "AzureWebJobsStorage"
STACK_FILE = Path(".devstack") / "stack.json"
DEAD_LETTER_QUEUE_ENV = "DEAD_LETTER_QUEUE"
DEFAULT_DEAD_LETTER_QUEUE = "dead-letters"
RECONCILIATION_QUEUE_ENV = "RECONCILIATION_QUEUE"
DEFAULT_RECONCILIATION_QUEUE = "reconciliation"
AUDIT_TABLE_ENV = "AUDIT_TABLE"
DEFAULT_AUDIT_TABLE = "audit"
ENCODING_ENV = "QUEUE_MESSAGE_ENCODING"
DEFAULT_ENCODING: QueueEncoding = "base64"

_QUEUE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class StorageConnection:
    """A connection string and where it came from; only the source is ever shown."""

    connection_string: str = field(repr=False)
    source: str


def resolve_connection(
    flag: str | None, environ: Mapping[str, str], cwd: Path
) -> StorageConnection:
    """The first of the flag, the environment and the stack file that is set."""
    if flag:
        return StorageConnection(flag, CONNECTION_FLAG)
    from_env = environ.get(CONNECTION_ENV, "").strip()
    if from_env:
        return StorageConnection(from_env, CONNECTION_ENV)
    stack_file = cwd / STACK_FILE
    if stack_file.is_file():
        return StorageConnection(_from_stack_file(stack_file), str(STACK_FILE))
    raise ConfigurationError(
        "no storage connection string: pass --connection-string, set the "
        f"{CONNECTION_ENV} environment variable, or run the local stack (`make run`), "
        f"which writes {STACK_FILE} in the repository root"
    )


def _from_stack_file(path: Path) -> str:
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {STACK_FILE}: {type(exc).__name__}") from None
    storage = description.get("storage") if isinstance(description, dict) else None
    value = storage.get("connectionString") if isinstance(storage, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{STACK_FILE} has no storage.connectionString")
    return value.strip()


def queue_name(value: str, what: str) -> str:
    """A valid Azure Storage queue name, else an error naming `what` (flag or setting)."""
    if not (3 <= len(value) <= 63 and _QUEUE_NAME.fullmatch(value)):
        raise ConfigurationError(
            f"{what} {_shown(value)} is not a queue name: 3-63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )
    return value


def queue_from(flag: str | None, environ: Mapping[str, str], env_name: str, default: str) -> str:
    """The flag, else the app setting from the environment, else the app's default."""
    if flag is not None:
        return queue_name(flag, "the queue")
    from_env = environ.get(env_name, "").strip()
    return queue_name(from_env, env_name) if from_env else default


def table_name(value: str, what: str) -> str:
    """A valid Azure Table name, else an error naming `what` (flag or setting)."""
    if not valid_table_name(value):
        raise ConfigurationError(
            f"{what} {_shown(value)} is not a table name: 3-63 letters and digits, starting "
            "with a letter (and not 'tables')"
        )
    return value


def table_from(flag: str | None, environ: Mapping[str, str]) -> str:
    """The audit table: the flag, else AUDIT_TABLE from the environment, else the default."""
    if flag is not None:
        return table_name(flag, "the table")
    from_env = environ.get(AUDIT_TABLE_ENV, "").strip()
    return table_name(from_env, AUDIT_TABLE_ENV) if from_env else DEFAULT_AUDIT_TABLE


def message_encoding(environ: Mapping[str, str]) -> QueueEncoding:
    """QUEUE_MESSAGE_ENCODING as the app reads it: base64 (default) or none."""
    raw = environ.get(ENCODING_ENV, "").strip() or DEFAULT_ENCODING
    if raw == "base64":
        return "base64"
    if raw == "none":
        return "none"
    raise ConfigurationError(f"{ENCODING_ENV} must be 'base64' or 'none', not {_shown(raw, 40)}")


def _shown(value: str, limit: int = 70) -> str:
    """A wrong value as an error quotes it: a connection string given in the wrong place (the
    queue flag, DEAD_LETTER_QUEUE) loses its key first, then the rest is cut short."""
    return repr(redact(value)[:limit])
