"""What a flow emits, and the one way it is sent: durable queue messages first, then the trail.

A flow decides what it emits (an Emission) and hands it to the Outbox before it answers. Queue
messages go first because they are the record that keeps work from being lost: a QueueError
propagates, so the caller answers "retry later" instead of claiming success. Audit entries go
last and never raise (the trail keeps them until its queue takes them).
"""

from __future__ import annotations

from audit.port import AuditTrail, NoAudit
from messages.emission import Emission
from observability.reconciliation_metrics import (
    ReconciliationMetrics,
    global_reconciliation_metrics,
)
from resilience.queue_port import DurableQueue


class Outbox:
    def __init__(
        self,
        *,
        reconciliation: DurableQueue,
        dead_letters: DurableQueue,
        audit: AuditTrail | None = None,
        metrics: ReconciliationMetrics | None = None,
    ) -> None:
        """`metrics`: where dead letters are counted (the process's instruments unless given)."""
        self._reconciliation = reconciliation
        self._dead_letters = dead_letters
        self._audit: AuditTrail = audit or NoAudit()
        self._metrics = metrics or global_reconciliation_metrics()

    async def send(self, emission: Emission) -> None:
        """Raises QueueError when a queue message cannot be sent; audit entries never raise."""
        for message in emission.reconciliation:
            await self._reconciliation.send(message.to_message())
        for letter in emission.dead_letters:
            await self._dead_letters.send(letter.to_message())
            self._metrics.dead_lettered(letter.kind, letter.replayable)
        for entry in emission.audit:
            await self._audit.record(entry)
