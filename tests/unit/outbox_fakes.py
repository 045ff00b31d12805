"""An Outbox over in-memory queues and trail: what a flow emitted, for assertions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audit import ListAudit
from resilience.outbox import Outbox


class ListQueue:
    """A DurableQueue that keeps what it was sent; `fail_with` makes every send raise."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_with = fail_with

    async def send(self, message: Mapping[str, Any]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(dict(message))


@dataclass
class RecordingOutbox:
    reconciliation: ListQueue = field(default_factory=ListQueue)
    dead_letters: ListQueue = field(default_factory=ListQueue)
    audit: ListAudit = field(default_factory=ListAudit)

    @property
    def outbox(self) -> Outbox:
        return Outbox(
            reconciliation=self.reconciliation, dead_letters=self.dead_letters, audit=self.audit
        )

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit.entries]
