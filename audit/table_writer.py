"""Writing the audit table: append-only and idempotent. An entry is inserted (create_entity)
once per partition it concerns (see audit.table_keys), and "already exists" counts as done, so
a redelivered queue message writes nothing twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from audit.entry import AuditEntry
from audit.errors import AuditStoreError, AuditStoreRejected, AuditStoreUnavailable
from audit.table_access import AuditTable, TableMissing
from audit.table_entity import to_entity
from audit.table_keys import partition_keys
from storage_access.closing import ClosedOnExit

_logger = logging.getLogger("audit")


class AuditTableWriter(ClosedOnExit):
    def __init__(self, table: AuditTable) -> None:
        self._table = table
        self.table_name = table.table_name
        self._table_ready = False

    async def aclose(self) -> None:
        await self._table.aclose()

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
            async with asyncio.timeout(self._table.timeout):
                if not self._table_ready:
                    await self.ensure_table()
                results = await asyncio.gather(
                    *(self._insert(entity) for entity in entities), return_exceptions=True
                )
        except TimeoutError:
            raise self._table.timed_out() from None
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
            await self._table.call(self._table.client().create_table())
        except AuditStoreError as exc:
            if exc.code != "TableAlreadyExists":
                raise
        except TableMissing:  # not an answer create_table is known to give
            raise self._table.unavailable("the table cannot be created") from None
        self._table_ready = True
        _logger.info("audit table ready", extra={"table": self.table_name})

    async def _insert(self, entity: dict[str, Any]) -> bool:
        """True when inserted now, False when it was there already."""
        try:
            try:
                await self._table.call(self._table.client().create_entity(entity))
            except TableMissing:
                # Deleted since we created it (nothing was written): create it and insert again.
                self._table_ready = False
                await self.ensure_table()
                await self._table.call(self._table.client().create_entity(entity))
        except AuditStoreError as exc:
            if exc.code == "EntityAlreadyExists":
                return False
            raise
        return True
