"""The port every flow records to. Recording never raises and never blocks a device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from audit.entry import AuditEntry


class AuditTrail(Protocol):
    async def record(self, entry: AuditEntry) -> None:
        """Accept the entry durably or keep it for a later attempt; never raise."""
        ...


class NoAudit:
    """For unit tests of flows that do not look at the trail."""

    async def record(self, entry: AuditEntry) -> None:
        return None


class ListAudit:
    """Keeps entries in memory: for unit tests that assert on the trail."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


class DelayedSender(Protocol):
    """What AuditWriter puts entries back on when the table is down (audit.queue.AuditQueue)."""

    async def send_later(self, message: Mapping[str, Any], *, delay_seconds: int) -> None:
        """Enqueue one JSON object, invisible for delay_seconds; raises QueueError."""
        ...
