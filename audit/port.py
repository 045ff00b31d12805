"""The port every flow records to. Recording never raises and never blocks a device."""

from __future__ import annotations

from typing import Protocol

from audit.entry import AuditEntry


class AuditTrail(Protocol):
    async def record(self, entry: AuditEntry) -> None:
        """Accept the entry durably or keep it for a later attempt; never raise."""
        ...
