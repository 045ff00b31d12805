"""The change events the asset service publishes, in the Event Grid event schema; no I/O."""

from __future__ import annotations

import uuid
from enum import StrEnum

from .fields import CONTENT_FIELDS
from .model import Asset, AssetStatus, JsonObject, canonical_json

DEFAULT_TOPIC = "/devstack/assetManagement"
DATA_VERSION = "1.0"
METADATA_VERSION = "1"


class ChangeEventType(StrEnum):
    ASSET_CHANGED = "AssetManagement.AssetChanged"
    ASSET_RETIRED = "AssetManagement.AssetRetired"
    REPLACEMENT_APPROVED = "AssetManagement.ReplacementApproved"


def changed_fields(before: Asset | None, after: Asset) -> list[str]:
    """Top-level members whose value differs; every content member for a new asset."""
    if before is None:
        return list(CONTENT_FIELDS)
    old, new = before.to_json(), after.to_json()
    return [
        name for name in CONTENT_FIELDS if canonical_json(old[name]) != canonical_json(new[name])
    ]


def change_events(before: Asset | None, after: Asset, *, at: str, topic: str) -> list[JsonObject]:
    """AssetChanged for a write that bumped the version, then AssetRetired / ReplacementApproved."""
    if before is not None and before.version == after.version:
        return []
    base: JsonObject = {"assetId": after.asset_id, "version": after.version}
    events = [
        _event(
            ChangeEventType.ASSET_CHANGED,
            after,
            {**base, "changedFields": changed_fields(before, after)},
            at,
            topic,
        )
    ]
    was_retired = before is not None and before.draft.status is AssetStatus.RETIRED
    if after.draft.status is AssetStatus.RETIRED and not was_retired:
        events.append(_event(ChangeEventType.ASSET_RETIRED, after, base, at, topic))
    terms = after.draft.replacement
    if terms is not None and (before is None or before.draft.replacement != terms):
        data = {**base, **terms.to_json()}
        events.append(_event(ChangeEventType.REPLACEMENT_APPROVED, after, data, at, topic))
    return events


def _event(
    event_type: ChangeEventType, asset: Asset, data: JsonObject, at: str, topic: str
) -> JsonObject:
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": f"/assets/{asset.asset_id}",
        "eventType": event_type.value,
        "eventTime": at,
        "data": data,
        "dataVersion": DATA_VERSION,
        "metadataVersion": METADATA_VERSION,
    }
