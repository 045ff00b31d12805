"""Recording work that must not be lost: on the reconciliation queue, or as a dead letter.

Each raises if its queue cannot take the message: the caller must not consider it recorded.
"""

from __future__ import annotations

from typing import Any, Protocol

from messages import DeadLetter, ReconciliationMessage


class QueueSender(Protocol):
    async def send(self, message: dict[str, Any]) -> None: ...


class ReconciliationRecorder:
    """Transient work goes on the reconciliation queue; permanent failures straight to the
    dead-letter queue (retrying them would only delay the operator)."""

    def __init__(self, queue: QueueSender, dead_letters: QueueSender | None = None) -> None:
        self._queue = queue
        self._dead_letters = dead_letters

    async def record(self, message: ReconciliationMessage) -> None:
        if message.permanent and self._dead_letters is not None:
            letter = DeadLetter(
                source="sync" if message.kind != "allocation" else "allocation",
                kind=message.kind,
                reason=message.reason,
                detail=message.detail,
                device_id=message.device_id,
                asset_id=message.asset_id,
                hub=message.hub,
                request_id=message.request_id,
                request=message.event,
                attempts=message.attempts,
                first_seen=message.recorded_at,
                replayable=False,
            )
            await self._dead_letters.send(letter.to_message())
            return
        await self._queue.send(message.to_message())


class DeadLetterRecorder:
    def __init__(self, queue: QueueSender) -> None:
        self._queue = queue

    async def record(self, letter: DeadLetter) -> None:
        await self._queue.send(letter.to_message())
