"""What one flow emits besides its answer: queue messages that keep work from being lost, and
audit entries. A flow decides it (pure); resilience.outbox.Outbox sends it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from audit.entry import AuditEntry
from messages.queues import DeadLetter, ReconciliationMessage


@dataclass(frozen=True)
class Emission:
    """Everything one flow emits besides its answer."""

    reconciliation: tuple[ReconciliationMessage, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    audit: tuple[AuditEntry, ...] = ()

    def __add__(self, other: Emission) -> Emission:
        return Emission(
            self.reconciliation + other.reconciliation,
            self.dead_letters + other.dead_letters,
            self.audit + other.audit,
        )

    @classmethod
    def of_audit(cls, entries: Iterable[AuditEntry]) -> Emission:
        return cls(audit=tuple(entries))
