"""One audit entry: who did what to which device and asset, why, and from what evidence.

Entries are identifiers and decisions only: never a key, token, certificate or request body.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AuditAction = Literal[
    "allocation.decided",
    "allocation.fallback",
    "allocation.refused",
    "replacement.accepted",
    "replacement.refused",
    "device.deregistered",
    "device.disabled",
    "device.reenabled",
    "reconciliation.completed",
    "reconciliation.refused",
    "sync.twinWritten",
    "sync.assetWritten",
    "sync.refused",
]
BATCH_FIELD = "entries"
"""The field of an audit queue message (a batch) that holds its entries."""
AuditActor = Literal[
    "dps-webhook", "reconciler", "pending-sweep", "asset-sync", "twin-sync", "operator"
]


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    entry_id: str = Field(default_factory=lambda: uuid.uuid4().hex, alias="entryId")
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    action: AuditAction
    actor: AuditActor
    outcome: str = Field(max_length=100)
    registration_id: str | None = Field(None, alias="registrationId", max_length=128)
    device_id: str | None = Field(None, alias="deviceId", max_length=128)
    asset_id: str | None = Field(None, alias="assetId", max_length=128)
    hub: str | None = Field(None, max_length=259)
    request_id: str | None = Field(None, alias="requestId", max_length=128)
    details: dict[str, Any] = Field(default_factory=dict)
    """Decision specifics: role and why, hub and why, field sources, flags, reasons."""

    def to_message(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
