"""The two inbound event kinds, parsed and checked: asset-change events and twin changes.

A twin change counts only with the system properties IoT Hub stamps on it (the sender cannot
set those through the hub): anything else on the Event Hub is forged or replayed by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app_errors import BadInput
from asset_client.models import ASSET_ID_PATTERN
from messages import ReconciliationMessage, capped_event
from sync.constraints import DEVICE_ID

_SUBJECT = re.compile(r"/assets/([^/]+)")
_METADATA_KEYS = ("$metadata", "$version")
_TWIN_CHANGE_SOURCE = "twinChangeEvents"
_IOTHUB_PREFIX = "iothub-"
"""System properties as Event Hubs names them; the Python worker's iothub_metadata drops it."""


class InvalidEvent(BadInput, ValueError):
    """The event cannot be acted on; retrying it will not help."""


@dataclass(frozen=True)
class AssetEvent:
    """An asset changed. Only the id is trusted: the asset itself is always fetched again."""

    asset_id: str
    event_id: str | None = None
    event_type: str | None = None
    version: int | None = None
    changed_at: datetime | None = None
    """The event's time (the asset system's clock): where sync lag is measured from."""


def asset_event_from(
    *,
    event_id: str | None,
    subject: str | None,
    event_type: str | None,
    data: Any,
    event_time: datetime | None = None,
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
        changed_at=_aware(event_time),
    )


def _aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC, as Event Grid writes its times."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TwinChange:
    """One twin-change notification (docs/contracts.md, "Twin-change notifications").

    Sections are None when absent.
    """

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
    """`properties` are the application properties, `iothub_metadata` the system properties
    without their `iothub-` prefix (func.EventHubEvent.iothub_metadata).

    InvalidEvent messages name what is wrong, never a value of the event: they are logged.
    """
    schema = properties.get("iothub-message-schema")
    if schema != "twinChangeNotification":
        raise InvalidEvent("not a twin change notification (iothub-message-schema)")
    device_id = properties.get("deviceId")
    if not isinstance(device_id, str) or not DEVICE_ID.fits(device_id):
        raise InvalidEvent("the event names no valid device id")
    _check_system_properties(device_id, iothub_metadata)
    if properties.get("moduleId"):
        raise InvalidEvent("module twins are not synchronised")
    op_type = str(properties.get("opType") or "")
    if op_type not in ("updateTwin", "replaceTwin"):
        raise InvalidEvent("unknown opType: neither updateTwin nor replaceTwin")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers undecodable bytes and integers too long for int(); RecursionError
        # nesting deeper than the parser's stack.
        raise InvalidEvent("the body is not JSON this app can read") from exc
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


def _check_system_properties(device_id: str, iothub_metadata: Mapping[str, Any]) -> None:
    """The names only: the values of a forged event are the forger's, and may name another
    device, so they stay out of the error (which is logged and dead-lettered)."""
    if iothub_metadata.get("message-source") != _TWIN_CHANGE_SOURCE:
        raise InvalidEvent(
            f"system property iothub-message-source is missing or not {_TWIN_CHANGE_SOURCE}"
        )
    if iothub_metadata.get("connection-device-id") != device_id:
        raise InvalidEvent(
            "system property iothub-connection-device-id is missing or differs from deviceId"
        )
    enqueued = iothub_metadata.get("enqueuedtime")
    if not isinstance(enqueued, str | datetime) or not str(enqueued).strip():
        raise InvalidEvent("system property iothub-enqueuedtime is missing")


def twin_change_record(
    body: bytes,
    properties: Mapping[str, Any],
    iothub_metadata: Mapping[str, Any],
    sequence_number: int | None,
) -> dict[str, Any]:
    """A twin change as the reconciliation queue and the dead letters keep it: the Event Hub
    message's shape (system properties under their full names), so it can be judged and
    replayed exactly as it arrived."""
    return {
        "body": body.decode("utf-8", "replace"),
        "properties": dict(properties),
        "systemProperties": {
            f"{_IOTHUB_PREFIX}{name}": _json_safe(value) for name, value in iothub_metadata.items()
        },
        "sequenceNumber": sequence_number,
    }


def twin_change_from_record(event: Mapping[str, Any]) -> TwinChange:
    """The twin change a twin_change_record holds, checked exactly as on arrival."""
    if event.get("truncated"):
        raise InvalidEvent("the recorded event was too large to keep")
    body, properties = event.get("body"), event.get("properties")
    system = event.get("systemProperties")
    system = {} if system is None else system
    if not isinstance(body, str):
        raise InvalidEvent("the recorded event has no body text")
    if not isinstance(properties, Mapping) or not isinstance(system, Mapping):
        raise InvalidEvent("the recorded event's properties are not objects")
    sequence = event.get("sequenceNumber")
    metadata = {
        name.removeprefix(_IOTHUB_PREFIX): value
        for name, value in system.items()
        if isinstance(name, str) and name.startswith(_IOTHUB_PREFIX)
    }
    return twin_change_from(
        body.encode("utf-8", "replace"),
        properties,
        metadata,
        sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
    )


def _json_safe(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _section(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name} is not an object")
    return {key: item for key, item in value.items() if key not in _METADATA_KEYS}


@dataclass(frozen=True)
class RawTwinEvent:
    """What the Event Hub trigger hands over, before any parsing."""

    body: bytes
    properties: dict[str, object]
    iothub_metadata: dict[str, object]
    sequence_number: int | None = None


def parse_twin_batch(
    events: Sequence[RawTwinEvent],
) -> tuple[list[tuple[RawTwinEvent, TwinChange]], list[tuple[RawTwinEvent, InvalidEvent]]]:
    """Each event parsed, in order: the changes, and the events that cannot be acted on."""
    changes: list[tuple[RawTwinEvent, TwinChange]] = []
    invalid: list[tuple[RawTwinEvent, InvalidEvent]] = []
    for raw in events:
        try:
            changes.append(
                (
                    raw,
                    twin_change_from(
                        raw.body, raw.properties, raw.iothub_metadata, raw.sequence_number
                    ),
                )
            )
        except InvalidEvent as error:
            invalid.append((raw, error))
    return changes, invalid


def twin_change_message(
    raw: RawTwinEvent,
    change: TwinChange | None,
    reason: str,
    detail: str,
    request_id: str,
    *,
    permanent: bool,
) -> ReconciliationMessage:
    """A twin change to apply again later (or, permanent, to dead-letter), with its event as
    received, system properties included, so that a replay is checked as the original was."""
    return ReconciliationMessage(
        kind="twinChange",
        reason=reason[:200],
        detail=detail[:2000],
        permanent=permanent,
        device_id=change.device_id if change else None,
        hub=change.hub_name if change else None,
        request_id=request_id,
        event=capped_event(
            twin_change_record(raw.body, raw.properties, raw.iothub_metadata, raw.sequence_number)
        ),
    )
