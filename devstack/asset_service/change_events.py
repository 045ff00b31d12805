"""The change events the asset service publishes, in the Event Grid event schema or CloudEvents
1.0 (what an Event Grid topic with the CloudEvents input schema delivers); no I/O."""

from __future__ import annotations

import uuid
from enum import StrEnum

from .fields import CONTENT_FIELDS
from .model import Asset, AssetStatus, JsonObject, canonical_json
from .trace_context import TraceContext

DEFAULT_TOPIC = "/devstack/assetManagement"
DATA_VERSION = "1.0"
METADATA_VERSION = "1"


class EventSchema(StrEnum):
    EVENT_GRID = "eventgrid"
    CLOUD_EVENTS = "cloudevents"


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


def change_events(
    before: Asset | None,
    after: Asset,
    *,
    at: str,
    topic: str,
    schema: EventSchema = EventSchema.EVENT_GRID,
    trace: TraceContext | None = None,
) -> list[JsonObject]:
    """AssetChanged for a write that bumped the version, then AssetRetired / ReplacementApproved.

    CloudEvents carry `trace` as the distributed tracing extension (traceparent, tracestate).
    """
    if before is not None and before.version == after.version:
        return []
    events = _events(before, after, at, topic)
    if schema is EventSchema.CLOUD_EVENTS:
        return [_cloud_event(event, trace) for event in events]
    return events


def _events(before: Asset | None, after: Asset, at: str, topic: str) -> list[JsonObject]:
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


def _cloud_event(event: JsonObject, trace: TraceContext | None) -> JsonObject:
    """The same event in CloudEvents 1.0: the topic becomes the source, no data/metadata
    versions (CloudEvents has none)."""
    cloud: JsonObject = {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "datacontenttype": "application/json",
        "data": event["data"],
    }
    if trace is not None:
        cloud["traceparent"] = trace.traceparent
        if trace.tracestate:
            cloud["tracestate"] = trace.tracestate
    return cloud
