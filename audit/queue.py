"""The audit queue: where entries wait for the table writer.

A message is a batch, `{"entries": [<AuditEntry JSON>, ...]}`, oldest entry first, plus
`writeAttempts` once the writer has put it back. (A bare AuditEntry's JSON, the format before
batches, is still read.)

AuditQueue is the app's StorageQueue (same encoding, limits, typed errors and logging) with
two differences: its messages never expire, and it can send a message that stays invisible for
a while, so entries the table could not take come back later instead of at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from resilience.durable_queue import StorageQueue

MAX_DELAY_SECONDS = 7 * 24 * 3600 - 1
"""Azure Storage: a message's initial visibility timeout must be under seven days."""


class AuditSender(Protocol):
    """What QueuedAuditTrail sends batches to (StorageQueue and AuditQueue both are one)."""

    async def send(self, message: Mapping[str, Any]) -> None:
        """Enqueue one JSON object; raises QueueUnavailable or QueueRejected."""
        ...


class AuditQueue(StorageQueue):
    """A StorageQueue whose messages never expire (time to live -1, where Azure's default is
    seven days: an entry waits however long the writer is stopped), and that can send with an
    initial invisibility (send_later)."""

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.send_later(message, delay_seconds=0)

    async def send_later(self, message: Mapping[str, Any], *, delay_seconds: int) -> None:
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"delay_seconds must be 0 to {MAX_DELAY_SECONDS}")
        options: dict[str, Any] = {"time_to_live": -1}
        if delay_seconds:
            options["visibility_timeout"] = delay_seconds
        await self._send(message, options)
