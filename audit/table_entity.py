"""An audit entry as a table entity and back. Pure: no I/O.

Properties are the entry's JSON field names (entryId, at, action, actor, outcome,
registrationId, deviceId, assetId, hub, requestId) with `at` as an Edm.DateTime and the
details as compact JSON text. Table limits: a string property holds at most 64 KiB (32 K
UTF-16 code units), an entity 1 MiB and 252 properties; long details are split over
`details`, `details2`, `details3`, ... and joined again when read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app_errors import BadInput
from audit.entry import AuditEntry
from audit.table_keys import row_key, utc, utf16_units

DETAILS_CHUNK_CHARS = 16_000
"""Code points per details property: at most 32,000 UTF-16 units, inside the 64 KiB limit."""
MAX_DETAILS_UNITS = 448 * 1024
"""UTF-16 code units of details JSON an entity may hold (896 KiB of the 1 MiB entity limit)."""

_STRING_FIELDS = (
    "entryId",
    "action",
    "actor",
    "outcome",
    "registrationId",
    "deviceId",
    "assetId",
    "hub",
    "requestId",
)
_KEY_PROPERTIES = ("PartitionKey", "RowKey")


class EntityTooLarge(BadInput, ValueError):
    """The entry's details do not fit one table entity."""


def details_property(index: int) -> str:
    return "details" if index == 0 else f"details{index + 1}"


def to_entity(entry: AuditEntry, partition_key: str) -> dict[str, Any]:
    """The entity stored under `partition_key`; EntityTooLarge if the details cannot fit."""
    message = entry.to_message()
    entity: dict[str, Any] = {
        "PartitionKey": partition_key,
        "RowKey": row_key(entry.at, entry.entry_id),
        "at": utc(entry.at),
    }
    for name in _STRING_FIELDS:
        if message.get(name) is not None:
            entity[name] = message[name]
    details = json.dumps(
        message.get("details", {}), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    units = utf16_units(details)
    if units > MAX_DETAILS_UNITS:
        raise EntityTooLarge(
            f"details are {units} UTF-16 code units as JSON; a table entity holds at most "
            f"{MAX_DETAILS_UNITS} of them"
        )
    for index, start in enumerate(range(0, max(len(details), 1), DETAILS_CHUNK_CHARS)):
        entity[details_property(index)] = details[start : start + DETAILS_CHUNK_CHARS]
    return entity


def from_entity(entity: Mapping[str, Any]) -> AuditEntry:
    """The entry an entity holds; ValueError (pydantic's ValidationError is one) if it is
    not one of ours."""
    fields: dict[str, Any] = {
        name: entity[name] for name in _STRING_FIELDS if entity.get(name) is not None
    }
    at = entity.get("at")
    if not isinstance(at, datetime):
        raise ValueError("entity has no `at` time")
    # The SDK's TablesEntityDatetime, as a plain datetime in UTC.
    fields["at"] = datetime(
        at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond, tzinfo=UTC
    )
    chunks: list[str] = []
    while isinstance(part := entity.get(details_property(len(chunks))), str):
        chunks.append(part)
    try:
        fields["details"] = json.loads("".join(chunks)) if chunks else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"entity details are not JSON ({exc.msg})") from None
    return AuditEntry.model_validate(fields)


def entity_keys(entity: Mapping[str, Any]) -> tuple[str, str]:
    partition, row = (entity.get(name) for name in _KEY_PROPERTIES)
    return str(partition), str(row)
