"""The reconciliation and dead-letter messages: their shapes, and how they stay under a queue
message's size.

Each message names its shape (`schemaVersion`). A message without it was written before shapes
were versioned and reads as version 1; a version this code does not know fails validation, so
its handler treats it as unreadable (poison) rather than guessing. A new shape gets the next
number and a reader of the old one beside it.

A message carries what a later handler (or an operator) needs to finish or judge the work, and
never a secret: identifiers, the reason, and the event or request as received, size-capped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1
MAX_MESSAGE_JSON_BYTES = 45_000
"""A message's compact UTF-8 JSON: 60,000 bytes once base64-encoded, under the 64 KiB limit."""
MAX_EVENT_CHARS = 16_000
"""An event kept whole on a reconciliation message; a larger one keeps its head."""
_HEAD_CHARS = 1000

MessageKind = Literal["twinChange", "assetChange", "allocation", "deregistration"]
DeadLetterSource = Literal["allocation", "reconciliation", "sync", "poison"]


class ReconciliationMessage(BaseModel):
    """Work to finish later: one of four kinds, each with a handler in reconciliation/."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schemaVersion")
    kind: MessageKind
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

    def given_up(
        self,
        *,
        source: DeadLetterSource,
        reason: str | None = None,
        attempts: int | None = None,
        replayable: bool = False,
    ) -> DeadLetter:
        """This work as a dead letter: what it carried, and why it was given up."""
        return DeadLetter(
            source=source,
            kind=self.kind,
            reason=(reason or self.reason)[:200],
            detail=self.detail,
            registration_id=_text_or_none((self.event or {}).get("registrationId")),
            device_id=self.device_id,
            asset_id=self.asset_id,
            hub=self.hub,
            request_id=self.request_id,
            request=self.event,
            attempts=max(attempts or 0, self.attempts),
            first_seen=self.recorded_at,
            replayable=replayable,
        )


class DeadLetter(BaseModel):
    """Work that failed for good, kept with full context for operators (list, show, replay).

    It says what was attempted (a request summary, never a secret), why it failed, how often it
    was tried and when."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schemaVersion")
    source: DeadLetterSource
    kind: MessageKind
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


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def capped_event(event: dict[str, Any]) -> dict[str, Any]:
    """Keep the event if it fits, else a marker saying how big it was."""
    text = json.dumps(event, separators=(",", ":"), default=str)
    if len(text) <= MAX_EVENT_CHARS:
        return event
    return {"truncated": True, "chars": len(text), "head": text[:_HEAD_CHARS]}


def fitted(message: dict[str, Any], bulky: str) -> dict[str, Any]:
    """The message, with its `bulky` member cut to a marker if the whole would not fit a queue
    message; identifiers, reason and detail always survive."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text.encode()) <= MAX_MESSAGE_JSON_BYTES or message.get(bulky) is None:
        return message
    cut = json.dumps(message[bulky], separators=(",", ":"), ensure_ascii=False, default=str)
    return {**message, bulky: {"truncated": True, "chars": len(cut), "head": cut[:_HEAD_CHARS]}}
