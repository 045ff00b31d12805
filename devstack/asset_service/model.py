"""The asset and its history as the API exposes them; plain data, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .fields import CONTENT_FIELDS, REPLACEMENT_TERMS, STAMPED_FIELDS, snake_case

JsonObject = dict[str, Any]


class AssetStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    PENDING_REPLACEMENT = "pendingReplacement"
    RETIRED = "retired"


class ProvisioningStatus(StrEnum):
    NOT_PROVISIONED = "notProvisioned"
    PROVISIONED = "provisioned"
    DEREGISTERED = "deregistered"


class EventType(StrEnum):
    CREATED = "created"
    DEVICE_LINKED = "deviceLinked"
    DEVICE_REPLACED = "deviceReplaced"
    REPLACEMENT_APPROVED = "replacementApproved"


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix."""
    return as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """The inverse of format_timestamp."""
    return datetime.fromisoformat(text)


def format_epoch(seconds: float) -> str:
    """A Unix time in the same RFC 3339 spelling."""
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))


def canonical_json(value: Any) -> str:
    """One spelling per JSON value, so that equal content compares equal (1 and true differ)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ReplacementTerms:
    """What an approver decides: which device goes, why, and the hardware that may come.

    `approved_thumbprint` is normalized (uppercase hex, no separators): SHA-256 or SHA-1.
    """

    old_device_id: str
    reason: str
    approved_serial: str | None = None
    approved_thumbprint: str | None = None

    @property
    def bound(self) -> bool:
        return self.approved_serial is not None or self.approved_thumbprint is not None

    def to_json(self) -> JsonObject:
        return {name: getattr(self, snake_case(name)) for name in REPLACEMENT_TERMS}


@dataclass(frozen=True)
class AssetDraft:
    """The client-writable content of an asset: what PUT sets and a merge patch edits."""

    serial_number: str
    asset_type: str
    location: str
    status: AssetStatus = AssetStatus.PLANNED
    device_id: str | None = None
    provisioning_status: ProvisioningStatus = ProvisioningStatus.NOT_PROVISIONED
    replacement: ReplacementTerms | None = None
    attributes: JsonObject = field(default_factory=dict)

    def same_content(self, other: AssetDraft) -> bool:
        return canonical_json(self.to_json()) == canonical_json(other.to_json())

    def to_json(self) -> JsonObject:
        return {name: _json_value(getattr(self, snake_case(name))) for name in CONTENT_FIELDS}


def _json_value(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, ReplacementTerms):
        return value.to_json()
    return value


@dataclass(frozen=True)
class Asset:
    """A stored asset: its content plus what the server stamps (version, times)."""

    asset_id: str
    draft: AssetDraft
    version: int
    updated_at: str
    replacement_approved_at: str | None = None

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def to_json(self) -> JsonObject:
        body: JsonObject = {"assetId": self.asset_id}
        body.update(self.draft.to_json())
        if self.draft.replacement is not None:
            body["replacement"]["approvedAt"] = self.replacement_approved_at
        body.update((name, getattr(self, snake_case(name))) for name in STAMPED_FIELDS)
        return body


@dataclass(frozen=True)
class HistoryEvent:
    seq: int
    type: EventType
    at: str
    asset_version: int
    details: JsonObject

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "seq": self.seq,
            "type": self.type.value,
            "at": self.at,
            "assetVersion": self.asset_version,
        }
        body.update((k, v) for k, v in self.details.items() if k not in body)
        return body
