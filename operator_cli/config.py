"""Where the CLI finds the storage account, its queues and their message encoding.

The storage account comes from, in this order: --connection-string, the app's own settings in
the environment (AzureWebJobsStorage, or its identity-based AzureWebJobsStorage__* settings,
read as the app reads them), or the local stack's .devstack/stack.json (written by `make run`).
Queue and table names and the encoding follow the app settings of the same names
(settings.StorageSettings: one declaration for the app and the CLI).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.table_access import valid_table_name
from observability import redact
from operator_cli.errors import ConfigurationError
from resilience.queue_port import QueueEncoding
from settings import STORAGE_CONNECTION, StorageSettings
from storage_access import (
    StorageAccount,
    StorageConfigError,
    resolve_storage_account,
    storage_account_from_connection_string,
)
from storage_access.clients import StorageClients, validate_connection_string

CONNECTION_FLAG = "--connection-string"
CONNECTION_ENV = STORAGE_CONNECTION
STACK_FILE = Path(".devstack") / "stack.json"


def _app_setting(field_name: str) -> tuple[str, Any]:
    """The app setting's name and default, as settings.StorageSettings declares them."""
    declared = StorageSettings.model_fields[field_name]
    return str(declared.validation_alias), declared.default


DEAD_LETTER_QUEUE_ENV, DEFAULT_DEAD_LETTER_QUEUE = _app_setting("dead_letter_queue")
RECONCILIATION_QUEUE_ENV, DEFAULT_RECONCILIATION_QUEUE = _app_setting("reconciliation_queue")
AUDIT_QUEUE_ENV, DEFAULT_AUDIT_QUEUE = _app_setting("audit_queue")
AUDIT_TABLE_ENV, DEFAULT_AUDIT_TABLE = _app_setting("audit_table")
ENCODING_ENV, DEFAULT_ENCODING = _app_setting("queue_message_encoding")
CA_BUNDLE_ENV, _ = _app_setting("storage_ca_bundle")

_QUEUE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class StorageConnection:
    """A storage account and where it came from; only the source is ever shown."""

    account: StorageAccount = field(repr=False)
    source: str
    ca_bundle: str | None = None
    """A CA to trust for HTTPS storage (the local stack's Azurite in keyless mode)."""

    def clients(self, *, timeout_seconds: float, retry_total: int = 1) -> StorageClients:
        return StorageClients(
            self.account,
            timeout_seconds=timeout_seconds,
            retry_total=retry_total,
            connection_verify=self.ca_bundle or True,
        )


def resolve_connection(
    flag: str | None, environ: Mapping[str, str], cwd: Path
) -> StorageConnection:
    """The first of the flag, the environment and the stack file that is set."""
    ca_bundle = environ.get(CA_BUNDLE_ENV, "").strip() or None
    if flag:
        account = storage_account_from_connection_string(flag, CONNECTION_FLAG)
        return _checked(StorageConnection(account, CONNECTION_FLAG, ca_bundle))
    prefix = CONNECTION_ENV.lower()
    if any(key.lower().startswith(prefix) and value.strip() for key, value in environ.items()):
        try:
            account = resolve_storage_account(CONNECTION_ENV, environ)
        except StorageConfigError as exc:
            raise ConfigurationError(str(exc)) from None
        return _checked(StorageConnection(account, account.setting, ca_bundle))
    stack_file = cwd / STACK_FILE
    if stack_file.is_file():
        return _checked(_from_stack_file(stack_file))
    raise ConfigurationError(
        "no storage connection: pass --connection-string, set the "
        f"{CONNECTION_ENV} environment variable (or its identity-based {CONNECTION_ENV}__* "
        f"settings), or run the local stack (`make run`), which writes {STACK_FILE} in the "
        "repository root"
    )


def _checked(connection: StorageConnection) -> StorageConnection:
    try:
        validate_connection_string(connection.account)
    except StorageConfigError:
        raise ConfigurationError(
            f"the storage connection string from {connection.source} is not valid (it needs "
            "AccountName and AccountKey, endpoints with a SAS, or UseDevelopmentStorage=true)"
        ) from None
    return connection


def _from_stack_file(path: Path) -> StorageConnection:
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {STACK_FILE}: {type(exc).__name__}") from None
    storage = description.get("storage") if isinstance(description, dict) else None
    if not isinstance(storage, dict):
        raise ConfigurationError(f"{STACK_FILE} has no storage section")
    tls = description.get("tls") if isinstance(description, dict) else None
    ca_bundle = tls.get("caCert") if isinstance(tls, dict) else None
    settings = storage.get("identitySettings")
    if isinstance(settings, dict) and all(isinstance(v, str) for v in settings.values()):
        # A keyless stack: reach storage as its app does. The settings name the service URIs
        # and the identity endpoint, which azure-identity reads from the environment.
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
            if name in settings:
                os.environ[name] = settings[name]
        try:
            account = resolve_storage_account(CONNECTION_ENV, settings)
        except StorageConfigError as exc:
            raise ConfigurationError(f"{STACK_FILE}: {exc}") from None
        return StorageConnection(account, str(STACK_FILE), ca_bundle)
    value = storage.get("connectionString")
    if isinstance(value, str) and value.strip():
        account = storage_account_from_connection_string(value.strip(), str(STACK_FILE))
        return StorageConnection(account, str(STACK_FILE), ca_bundle)
    raise ConfigurationError(
        f"{STACK_FILE} has neither storage.connectionString nor storage.identitySettings"
    )


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
    raw = environ.get(ENCODING_ENV, "").strip() or str(DEFAULT_ENCODING)
    if raw == "base64":
        return "base64"
    if raw == "none":
        return "none"
    raise ConfigurationError(f"{ENCODING_ENV} must be 'base64' or 'none', not {_shown(raw, 40)}")


def _shown(value: str, limit: int = 70) -> str:
    """A wrong value as an error quotes it: a connection string given in the wrong place (the
    queue flag, DEAD_LETTER_QUEUE) loses its key first, then the rest is cut short."""
    return repr(redact(value)[:limit])
