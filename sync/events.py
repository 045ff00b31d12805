"""The two inbound event kinds, parsed and checked: asset-change events and twin changes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asset_client.models import ASSET_ID_PATTERN

_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_SUBJECT = re.compile(r"/assets/([^/]+)")
_METADATA_KEYS = ("$metadata", "$version")


class InvalidEvent(ValueError):
    """The event cannot be acted on; retrying it will not help."""


@dataclass(frozen=True)
class AssetEvent:
    """An asset changed. Only the id is trusted: the asset itself is always fetched again."""

    asset_id: str
    event_id: str | None = None
    event_type: str | None = None
    version: int | None = None


def asset_event_from(
    *, event_id: str | None, subject: str | None, event_type: str | None, data: Any
) -> AssetEvent:
    """Works for the EventGridEvent schema and CloudEvents alike (both carry subject and data)."""
    from_data = data.get("assetId") if isinstance(data, Mapping) else None
    match = _SUBJECT.fullmatch(subject or "")
    from_subject = match.group(1) if match else None
    if from_data is not None and not isinstance(from_data, str):
        raise InvalidEvent("data.assetId must be a string")
    if from_data and from_subject and from_data != from_subject:
        raise InvalidEvent(
            f"data.assetId {from_data[:64]!r} contradicts subject {(subject or '')[:80]!r}"
        )
    asset_id = from_data or from_subject
    if not asset_id:
        raise InvalidEvent("neither data.assetId nor a subject /assets/{id} names the asset")
    if not ASSET_ID_PATTERN.fullmatch(asset_id):
        raise InvalidEvent(f"{asset_id[:64]!r} is not a valid asset id")
    version = data.get("version") if isinstance(data, Mapping) else None
    return AssetEvent(
        asset_id=asset_id,
        event_id=event_id,
        event_type=event_type,
        version=version if isinstance(version, int) else None,
    )


@dataclass(frozen=True)
class TwinChange:
    """One twin-change notification (CONTRACTS.md §2). Sections are None when absent."""

    hub_name: str
    device_id: str
    op_type: str
    version: int | None
    tags: dict[str, Any] | None
    desired: dict[str, Any] | None
    reported: dict[str, Any] | None
    sequence_number: int | None = None

    @property
    def sync_marker(self) -> Any:
        return (self.tags or {}).get("sync")


def twin_change_from(
    body: bytes,
    properties: Mapping[str, Any],
    iothub_metadata: Mapping[str, Any],
    sequence_number: int | None = None,
) -> TwinChange:
    schema = properties.get("iothub-message-schema")
    if schema != "twinChangeNotification":
        raise InvalidEvent(f"not a twin change notification (schema {str(schema)[:40]!r})")
    device_id = properties.get("deviceId")
    connection_device = iothub_metadata.get("connection-device-id")
    if connection_device and device_id and connection_device != device_id:
        raise InvalidEvent("deviceId and iothub-connection-device-id disagree")
    device_id = device_id or connection_device
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise InvalidEvent("the event names no valid device id")
    if properties.get("moduleId"):
        raise InvalidEvent("module twins are not synchronised")
    op_type = str(properties.get("opType") or "")
    if op_type not in ("updateTwin", "replaceTwin"):
        raise InvalidEvent(f"unknown opType {op_type[:40]!r}")
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidEvent("the body is not a JSON object")
    sections = document.get("properties")
    sections = {} if sections is None else sections
    if not isinstance(sections, dict):
        raise InvalidEvent("properties is not an object")
    version = document.get("version")
    return TwinChange(
        hub_name=str(properties.get("hubName") or ""),
        device_id=device_id,
        op_type=op_type,
        version=version if isinstance(version, int) else None,
        tags=_section(document.get("tags"), "tags"),
        desired=_section(sections.get("desired"), "properties.desired"),
        reported=_section(sections.get("reported"), "properties.reported"),
        sequence_number=sequence_number,
    )


def _section(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name} is not an object")
    return {key: item for key, item in value.items() if key not in _METADATA_KEYS}
