"""The audit table's writer and its reader over one table, for tests that write and then read."""

from __future__ import annotations

from typing import Any

from audit.table_access import AuditTable
from audit.table_writer import AuditTableWriter
from audit.timeline import AuditTimelines
from storage_access.closing import ClosedOnExit


class AuditTableSides(ClosedOnExit):
    def __init__(self, storage: Any, table_name: str, **options: Any) -> None:
        self._table = AuditTable(storage, table_name, **options)
        self.table_name = table_name
        self.writer = AuditTableWriter(self._table)
        self.timelines = AuditTimelines(self._table)

    async def aclose(self) -> None:
        await self._table.aclose()
