"""The audit table of one storage account (azure-data-tables, async), with the SDK's failures
mapped: AuditStoreRejected when an entry itself cannot be stored (400, 413, too large),
AuditStoreUnavailable for everything else (transport, timeouts, 5xx, 429, auth, a table being
deleted), TableMissing when the table does not exist. The SDK's own retries are off unless
asked for (`retry_total`). The writer (audit.table_writer) and the operators' reader
(audit.timeline) each hold one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from audit.errors import AuditStoreRejected, AuditStoreUnavailable
from storage_access import auth_failures
from storage_access.clients import StorageClients, storage_clients, validate_connection_string
from storage_access.closing import ClosedOnExit
from storage_access.connection import StorageAccount, StorageConfigError

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

T = TypeVar("T")

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_REJECTED_STATUSES = frozenset({400, 413})


class TableMissing(Exception):
    """The table does not exist: for reads, the same as empty; for writes, create it."""


def valid_table_name(name: str) -> bool:
    """Azure Tables: 3-63 letters and digits, starting with a letter; "tables" is reserved."""
    return bool(_TABLE_NAME.fullmatch(name)) and name.lower() != "tables"


class AuditTable(ClosedOnExit):
    """One client (aiohttp pool) for every call."""

    def __init__(
        self,
        storage: StorageClients | StorageAccount | str,
        table_name: str,
        *,
        timeout_seconds: float = 5.0,
        retry_total: int = 0,
        owns_storage: bool | None = None,
    ) -> None:
        """ValueError for a table name Azure would refuse or a malformed connection string.

        `storage`: the account's client factory, or an account or connection string for a
        factory of the table's own (with `retry_total` SDK retries). The table closes the
        factory when it owns it: its own, or a given one with `owns_storage=True`.
        """
        if not valid_table_name(table_name):
            raise ValueError(
                f"invalid table name {table_name[:70]!r}: 3-63 letters and digits, starting "
                "with a letter (and not 'tables')"
            )
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.table_name = table_name
        self._owns_storage = (
            not isinstance(storage, StorageClients) if owns_storage is None else owns_storage
        )
        self._storage = storage_clients(
            storage, timeout_seconds=timeout_seconds, retry_total=retry_total
        )
        self.timeout = timeout_seconds
        self._client: TableClient | None = None
        try:  # a malformed connection string fails here, not on the first entry
            validate_connection_string(self._storage.account)
        except StorageConfigError as exc:
            raise ValueError(str(exc)) from None

    async def aclose(self) -> None:
        """Close the client's connections (when the factory is the table's own); a later call
        opens new ones."""
        self._client = None
        if self._owns_storage:
            await self._storage.aclose()

    def client(self) -> TableClient:
        if self._client is None:
            try:
                self._client = self._storage.table(self.table_name)
            except StorageConfigError as exc:
                raise AuditStoreRejected(
                    f"table {self.table_name}: {exc}",
                    table_name=self.table_name,
                    status=None,
                    code="BadConnection",
                ) from None
        return self._client

    async def call(self, call: Awaitable[T]) -> T:
        """Await an SDK call; its failures become AuditStoreError (or TableMissing)."""
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            return await call
        except HttpResponseError as exc:
            if auth_failures.is_token_failure(exc):
                raise self.unavailable(
                    auth_failures.token_failure(self._storage.account, exc)
                ) from None
            status = int(getattr(exc, "status_code", None) or 0)
            code = _error_code(exc)
            if status == 404 and code == "TableNotFound":
                raise TableMissing from None
            detail = f"table {self.table_name}: the table service answered {status or 'nothing'}"
            detail += f" ({code})" if code else ""
            if status in auth_failures.AUTH_STATUSES:
                detail += f": {auth_failures.refusal_hint(self._storage.account, 'table')}"
            if status in _REJECTED_STATUSES:
                raise AuditStoreRejected(
                    detail, table_name=self.table_name, status=status, code=code
                ) from None
            raise AuditStoreUnavailable(detail, table_name=self.table_name, code=code) from None
        except AzureError as exc:
            # Transport trouble or an SDK timeout. The SDK's text may name the account URL.
            raise self.unavailable(f"{type(exc).__name__} talking to the table service") from None

    def unavailable(self, why: str) -> AuditStoreUnavailable:
        return AuditStoreUnavailable(f"table {self.table_name}: {why}", table_name=self.table_name)

    def timed_out(self) -> AuditStoreUnavailable:
        return self.unavailable(f"no answer within {self.timeout:g} s")


def _error_code(exc: Any) -> str | None:
    """The service's error code: the x-ms-error-code header, else the SDK's error_code."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) if code else None
