"""Reading the audit table: a device's, an asset's or a registration's timeline. Each is a
single-partition scan that returns the newest entries first (inverted-time RowKeys); they are
handed out oldest first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.entry import AuditAction, AuditEntry
from audit.table_access import AuditTable, TableMissing
from audit.table_entity import from_entity
from audit.table_keys import partition_key
from storage_access.closing import ClosedOnExit

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

_logger = logging.getLogger("audit")


@dataclass(frozen=True)
class Timeline:
    entries: list[AuditEntry]
    """Oldest first: the newest `limit` entries found."""
    maybe_more: bool
    """The limit was reached: older entries may exist."""
    unreadable: int = 0
    """Entities in the partition that are not audit entries (skipped, logged)."""


class AuditTimelines(ClosedOnExit):
    def __init__(self, table: AuditTable) -> None:
        self._table = table
        self.table_name = table.table_name

    async def aclose(self) -> None:
        await self._table.aclose()

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
            pages = self._table.client().query_entities(
                query, parameters=parameters, results_per_page=min(count, MAX_LIMIT)
            )
            async for entity in pages:
                found.append(entity)
                if len(found) >= count:
                    break
            return found

        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                return await self._table.call(first())
        except TableMissing:
            return []
        except TimeoutError:
            raise self._table.unavailable(f"no answer within {READ_TIMEOUT_SECONDS:g} s") from None


def _registration_scans(registration_id: str) -> list[tuple[str, str | None]]:
    return [
        (partition_key("registration", registration_id), None),
        (partition_key("device", registration_id), registration_id),
    ]
