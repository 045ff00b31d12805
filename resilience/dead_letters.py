"""Provisions and events that failed for good, kept with full context for operators.

A dead letter says what was attempted (a request summary, never a secret), why it failed,
how often it was tried and when. Operators list, show and replay them (operator CLI).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resilience.message_fit import QueueSender, fitted

DeadLetterSource = Literal["allocation", "reconciliation", "sync", "poison"]


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    source: DeadLetterSource
    kind: Literal["allocation", "twinChange", "assetChange", "deregistration"]
    reason: str = Field(max_length=200)
    detail: str = Field(max_length=2000)
    registration_id: str | None = Field(None, alias="registrationId")
    device_id: str | None = Field(None, alias="deviceId")
    asset_id: str | None = Field(None, alias="assetId")
    hub: str | None = None
    request_id: str | None = Field(None, alias="requestId")
    request: dict[str, Any] | None = None
    """What was attempted: for allocations, the request summary; for events, the event."""
    attempts: int = Field(1, ge=0)
    first_seen: datetime | None = Field(None, alias="firstSeen")
    dead_lettered_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC), alias="deadLetteredAt"
    )
    replayable: bool = True
    """False for refusals that replaying cannot change (a spoofed claim, a bad certificate)."""

    def to_message(self) -> dict[str, Any]:
        return fitted(self.model_dump(mode="json", by_alias=True, exclude_none=True), "request")


class DeadLetterRecorder:
    def __init__(self, queue: QueueSender) -> None:
        self._queue = queue

    async def record(self, letter: DeadLetter) -> None:
        await self._queue.send(letter.to_message())
