"""TableAuditStore: the audit trail kept in Azure Table Storage (azure-data-tables, async).

Append-only and idempotent: an entry is inserted (create_entity) once per partition it
concerns (see audit.table_keys), and "already exists" counts as done, so a redelivered queue
message writes nothing twice. Timelines are single-partition scans that return the newest
entries first (inverted-time RowKeys); they are handed out oldest first.

Failures are typed: AuditStoreRejected when the entry itself cannot be stored (400, 413,
too large), AuditStoreUnavailable for everything else (transport, timeouts, 5xx, 429, auth,
a table being deleted). The SDK's own retries are off unless asked for (`retry_total`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from audit.entry import AuditAction, AuditEntry
from audit.errors import AuditStoreError, AuditStoreRejected, AuditStoreUnavailable
from audit.table_entity import from_entity, to_entity
from audit.table_keys import partition_key, partition_keys
from storage_access import auth_failures
from storage_access.clients import StorageClients, storage_clients, validate_connection_string
from storage_access.closing import ClosedOnExit
from storage_access.connection import StorageAccount, StorageConfigError

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

T = TypeVar("T")

DECISION_ACTIONS: tuple[AuditAction, ...] = (
    "allocation.decided",
    "allocation.fallback",
    "allocation.refused",
    "replacement.accepted",
    "replacement.refused",
    "reconciliation.completed",
    "reconciliation.refused",
    "device.deregistered",
)
"""What was decided about a registration: where and as what it was placed, or refused."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
"""The most entries one timeline returns (one page of a table query)."""
READ_TIMEOUT_SECONDS = 60.0

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_REJECTED_STATUSES = frozenset({400, 413})
_logger = logging.getLogger("audit")


class _TableMissing(Exception):
    """The table does not exist: for reads, the same as empty; for writes, create it."""


@dataclass(frozen=True)
class Timeline:
    entries: list[AuditEntry]
    """Oldest first: the newest `limit` entries found."""
    maybe_more: bool
    """The limit was reached: older entries may exist."""
    unreadable: int = 0
    """Entities in the partition that are not audit entries (skipped, logged)."""


def valid_table_name(name: str) -> bool:
    """Azure Tables: 3-63 letters and digits, starting with a letter; "tables" is reserved."""
    return bool(_TABLE_NAME.fullmatch(name)) and name.lower() != "tables"


class TableAuditStore(ClosedOnExit):
    """The audit table of one storage account; one client (aiohttp pool) for every call."""

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
        factory of the store's own (with `retry_total` SDK retries). The store closes the
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
        self._timeout = timeout_seconds
        self._table_ready = False
        self._client: TableClient | None = None
        try:  # a malformed connection string fails here, not on the first entry
            validate_connection_string(self._storage.account)
        except StorageConfigError as exc:
            raise ValueError(str(exc)) from None

    async def aclose(self) -> None:
        """Close the client's connections (when the factory is the store's own); a later call
        opens new ones."""
        self._client = None
        if self._owns_storage:
            await self._storage.aclose()

    # --- writing -------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> int:
        """Store the entry in each of its partitions; how many of them were new (0: all were
        already there). Raises AuditStoreUnavailable or AuditStoreRejected."""
        try:
            entities = [to_entity(entry, key) for key in partition_keys(entry)]
        except ValueError as exc:  # EntityTooLarge, or details that are not JSON
            raise AuditStoreRejected(
                f"table {self.table_name}: entry {entry.entry_id[:64]!r} cannot be stored: "
                f"{str(exc)[:300]}",
                table_name=self.table_name,
                status=None,
                code="EntityTooLarge",
            ) from None
        try:
            async with asyncio.timeout(self._timeout):
                if not self._table_ready:
                    await self.ensure_table()
                results = await asyncio.gather(
                    *(self._insert(entity) for entity in entities), return_exceptions=True
                )
        except TimeoutError:
            raise self._timed_out() from None
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in failures:
            if not isinstance(failure, AuditStoreError):
                raise failure
        for failure in failures:
            if isinstance(failure, AuditStoreUnavailable):
                raise failure
        if failures:
            raise failures[0]
        return sum(result is True for result in results)

    async def ensure_table(self) -> None:
        """Create the table if it is missing."""
        try:
            await self._call(self._table().create_table())
        except AuditStoreError as exc:
            if exc.code != "TableAlreadyExists":
                raise
        except _TableMissing:  # not an answer create_table is known to give
            raise self._unavailable("the table cannot be created") from None
        self._table_ready = True
        _logger.info("audit table ready", extra={"table": self.table_name})

    async def _insert(self, entity: dict[str, Any]) -> bool:
        """True when inserted now, False when it was there already."""
        try:
            try:
                await self._call(self._table().create_entity(entity))
            except _TableMissing:
                # Deleted since we created it (nothing was written): create it and insert again.
                self._table_ready = False
                await self.ensure_table()
                await self._call(self._table().create_entity(entity))
        except AuditStoreError as exc:
            if exc.code == "EntityAlreadyExists":
                return False
            raise
        return True

    # --- reading -------------------------------------------------------------------------------

    async def by_device(self, device_id: str, limit: int = DEFAULT_LIMIT) -> Timeline:
        return await self._timeline([(partition_key("device", device_id), None)], limit)

    async def by_asset(self, asset_id: str, limit: int = DEFAULT_LIMIT) -> Timeline:
        return await self._timeline([(partition_key("asset", asset_id), None)], limit)

    async def by_registration(self, registration_id: str, limit: int = DEFAULT_LIMIT) -> Timeline:
        """Entries with this registration id: its own partition holds those whose device id
        differs; those whose device id is the same live in the device's partition."""
        return await self._timeline(_registration_scans(registration_id), limit)

    async def decisions_for(self, registration_id: str, limit: int = DEFAULT_LIMIT) -> Timeline:
        """The registration's decisions only (DECISION_ACTIONS): placements and refusals."""
        return await self._timeline(
            _registration_scans(registration_id), limit, actions=DECISION_ACTIONS
        )

    async def _timeline(
        self,
        scans: Sequence[tuple[str, str | None]],
        limit: int,
        *,
        actions: Sequence[str] = (),
    ) -> Timeline:
        """scans: (PartitionKey, registrationId the entries must carry, or None)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
        by_row: dict[str, Mapping[str, Any]] = {}
        for partition, registration_id in scans:
            query = "PartitionKey eq @pk"
            parameters: dict[str, Any] = {"pk": partition}
            if registration_id is not None:
                query += " and registrationId eq @rid"
                parameters["rid"] = registration_id
            if actions:
                # The SDK substitutes @names only between spaces: "( ... @a7 )", not "@a7)".
                alternatives = " or ".join(f"action eq @a{i}" for i in range(len(actions)))
                query += f" and ( {alternatives} )"
                parameters.update({f"a{i}": action for i, action in enumerate(actions)})
            for entity in await self._query(query, parameters, limit + 1):
                by_row.setdefault(str(entity["RowKey"]), entity)
        newest_first = sorted(by_row)[: limit + 1]
        entries: list[AuditEntry] = []
        unreadable = 0
        for row in reversed(newest_first[:limit]):
            try:
                entries.append(from_entity(by_row[row]))
            except ValueError as exc:
                unreadable += 1
                _logger.warning(
                    "unreadable audit entity skipped",
                    extra={"table": self.table_name, "rowKey": row, "problem": str(exc)[:300]},
                )
        return Timeline(entries, maybe_more=len(newest_first) > limit, unreadable=unreadable)

    async def _query(
        self, query: str, parameters: dict[str, Any], count: int
    ) -> list[Mapping[str, Any]]:
        """Up to `count` entities in key order; none when the table does not exist."""

        async def first() -> list[Mapping[str, Any]]:
            found: list[Mapping[str, Any]] = []
            pages = self._table().query_entities(
                query, parameters=parameters, results_per_page=min(count, MAX_LIMIT)
            )
            async for entity in pages:
                found.append(entity)
                if len(found) >= count:
                    break
            return found

        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                return await self._call(first())
        except _TableMissing:
            return []
        except TimeoutError:
            raise self._unavailable(f"no answer within {READ_TIMEOUT_SECONDS:g} s") from None

    # --- the SDK, with its failures mapped --------------------------------------------------

    def _table(self) -> TableClient:
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

    async def _call(self, call: Awaitable[T]) -> T:
        """Await an SDK call; its failures become AuditStoreError (or _TableMissing)."""
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            return await call
        except HttpResponseError as exc:
            if auth_failures.is_token_failure(exc):
                raise self._unavailable(
                    auth_failures.token_failure(self._storage.account, exc)
                ) from None
            status = int(getattr(exc, "status_code", None) or 0)
            code = _error_code(exc)
            if status == 404 and code == "TableNotFound":
                raise _TableMissing from None
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
            raise self._unavailable(f"{type(exc).__name__} talking to the table service") from None

    def _unavailable(self, why: str) -> AuditStoreUnavailable:
        return AuditStoreUnavailable(f"table {self.table_name}: {why}", table_name=self.table_name)

    def _timed_out(self) -> AuditStoreUnavailable:
        return self._unavailable(f"no answer within {self._timeout:g} s")


def _registration_scans(registration_id: str) -> list[tuple[str, str | None]]:
    return [
        (partition_key("registration", registration_id), None),
        (partition_key("device", registration_id), registration_id),
    ]


def _error_code(exc: Any) -> str | None:
    """The service's error code: the x-ms-error-code header, else the SDK's error_code."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) if code else None
