"""Work that could not finish now and must not be lost: recorded on the reconciliation queue.

The message carries what a later handler (or an operator) needs to finish or judge it, and
never a secret: identifiers, the reason, and the event as received (size-capped).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resilience.dead_letters import DeadLetter
from resilience.message_fit import QueueSender, fitted

MAX_EVENT_CHARS = 16_000
"""Storage queue messages are at most 64 KB; base64 costs a third, so keep the event small."""


class ReconciliationMessage(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: Literal["twinChange", "assetChange", "allocation", "deregistration"]
    reason: str = Field(max_length=200)
    detail: str = Field(max_length=2000)
    permanent: bool = False
    device_id: str | None = Field(None, alias="deviceId")
    asset_id: str | None = Field(None, alias="assetId")
    hub: str | None = None
    request_id: str | None = Field(None, alias="requestId")
    event: dict[str, Any] | None = None
    attempts: int = 1
    recorded_at: datetime = Field(default_factory=lambda: datetime.now(UTC), alias="recordedAt")

    def to_message(self) -> dict[str, Any]:
        return fitted(self.model_dump(mode="json", by_alias=True, exclude_none=True), "event")


def capped_event(event: dict[str, Any]) -> dict[str, Any]:
    """Keep the event if it fits, else a marker saying how big it was."""
    text = json.dumps(event, separators=(",", ":"), default=str)
    if len(text) <= MAX_EVENT_CHARS:
        return event
    return {"truncated": True, "chars": len(text), "head": text[:1000]}


class ReconciliationRecorder:
    """Transient work goes on the reconciliation queue; permanent failures straight to the
    dead-letter queue (retrying them would only delay the operator). Raises if the queue
    cannot take the message: the caller must not consider it recorded."""

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
