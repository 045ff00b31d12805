"""What one flow emits besides its answer: queue messages that keep work from being lost, and
audit entries. A flow decides it (pure); resilience.outbox.Outbox sends it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from audit.entry import AuditEntry
from messages.queues import DeadLetter, DeadLetterSource, ReconciliationMessage


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

    @classmethod
    def of_dead_letter(cls, letter: DeadLetter) -> Emission:
        return cls(dead_letters=(letter,))

    @classmethod
    def deferred(cls, message: ReconciliationMessage) -> Emission:
        """Work a flow could not finish: transient work goes on the reconciliation queue, a
        permanent failure straight to the dead letters (retrying it would only delay the
        operator)."""
        if not message.permanent:
            return cls(reconciliation=(message,))
        source: DeadLetterSource = "allocation" if message.kind == "allocation" else "sync"
        return cls.of_dead_letter(message.given_up(source=source))
