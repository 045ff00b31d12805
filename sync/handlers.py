"""Trigger payloads in, sync services called, failures routed: free of azure.functions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from app_errors import AppError
from messages import ReconciliationMessage, capped_event
from messages.emission import Emission
from observability import DeviceLog
from observability import sync_metrics as sm
from observability import trace_attributes as attr
from observability.flow_spans import TraceContext, flow_span
from resilience.outbox import Outbox
from sync.asset_sync_service import AssetSyncOutcome, AssetToTwinSync
from sync.device_sync_service import BatchOutcome, TwinToAssetSync
from sync.events import (
    InvalidEvent,
    RawTwinEvent,
    asset_event_from,
    parse_twin_batch,
    twin_change_message,
)

_logger = logging.getLogger("sync.asset_to_twin")
_twin_logger = logging.getLogger("sync.twin_to_asset")
_tracer = trace.get_tracer("sync")
_metrics = sm.global_sync_metrics()


async def handle_asset_event(
    *,
    service: AssetToTwinSync,
    outbox: Outbox,
    event_id: str | None,
    subject: str | None,
    event_type: str | None,
    data: Any,
    request_id: str,
    event_time: datetime | None = None,
    parent: TraceContext | None = None,
    metrics: sm.SyncMetrics | None = None,
) -> AssetSyncOutcome | None:
    """A bad event is recorded and acknowledged; a transient failure raises so Event Grid
    delivers the event again (it retries for up to 24 h).

    `parent`: the event's distributed tracing extension when it has one (the asset change's
    trace), else the invocation's. `metrics`: the process's unless given."""
    counted = metrics or _metrics
    with flow_span(
        _tracer,
        attr.ASSET_EVENT_SPAN,
        kind=SpanKind.CONSUMER,
        request_id=request_id,
        parent=parent,
        attributes={attr.EVENT_ID: event_id or "", attr.EVENT_TYPE: event_type or ""},
    ) as span:
        outcome = await _asset_event(
            service, outbox, event_id, subject, event_type, data, event_time, request_id, counted
        )
        result = outcome.result if outcome is not None else "invalid"
        span.set_attribute(attr.SYNC_RESULT, result)
        if outcome is not None and outcome.hub is not None:
            span.set_attribute(attr.HUB, outcome.hub)
        counted.changes(sm.ASSET_TO_TWIN, result)
        return outcome


async def _asset_event(
    service: AssetToTwinSync,
    outbox: Outbox,
    event_id: str | None,
    subject: str | None,
    event_type: str | None,
    data: Any,
    event_time: datetime | None,
    request_id: str,
    metrics: sm.SyncMetrics,
) -> AssetSyncOutcome | None:
    log = DeviceLog(_logger, request_id=request_id)
    try:
        event = asset_event_from(
            event_id=event_id,
            subject=subject,
            event_type=event_type,
            data=data,
            event_time=event_time,
        )
    except InvalidEvent as error:
        log.warning("asset event refused", reason="InvalidEvent", detail=str(error))
        message = ReconciliationMessage(
            kind="assetChange",
            reason="invalid event",
            detail=str(error),
            permanent=True,
            request_id=request_id,
            event=capped_event(
                {"id": event_id, "subject": subject, "eventType": event_type, "data": data}
            ),
        )
        await outbox.send(Emission.deferred(message))
        return None
    try:
        outcome = await service.handle(event, log)
    except AppError as error:
        metrics.changes(sm.ASSET_TO_TWIN, "failed")
        device_id = getattr(error, "device_id", None)
        log.bind(assetId=event.asset_id, deviceId=device_id, registrationId=device_id).warning(
            "asset sync failed; Event Grid will deliver again",
            reason=type(error).__name__,
            detail=str(error),
        )
        raise
    if outcome.result == "written":
        metrics.twin_written(event.changed_at)
    return outcome


async def handle_twin_batch(
    service: TwinToAssetSync,
    events: Sequence[RawTwinEvent],
    request_id: str,
    *,
    parent: TraceContext | None = None,
    metrics: sm.SyncMetrics | None = None,
) -> BatchOutcome:
    """One bad event never fails the batch: it is dead-lettered, and the rest applied.

    Only a failure to record a failure propagates (the trigger's retry policy runs the batch
    again). `parent`: the invocation's trace context; `metrics`: the process's unless given.
    """
    counted = metrics or _metrics
    with flow_span(
        _tracer,
        attr.TWIN_BATCH_SPAN,
        kind=SpanKind.CONSUMER,
        request_id=request_id,
        parent=parent,
        attributes={attr.TWIN_BATCH_SIZE: len(events)},
    ):
        outcome = await _twin_batch(service, events, request_id)
    for result, count in outcome.results.items():
        counted.changes(sm.TWIN_TO_ASSET, result, count)
    counted.changes(sm.TWIN_TO_ASSET, "deferred", outcome.recorded)
    return outcome


async def _twin_batch(
    service: TwinToAssetSync, events: Sequence[RawTwinEvent], request_id: str
) -> BatchOutcome:
    changes, invalid = parse_twin_batch(events)
    for raw, error in invalid:
        _twin_logger.warning(
            "twin change event refused; dead-lettered",
            extra={"requestId": request_id, "reason": "invalid event", "detail": str(error)},
        )
        message = twin_change_message(
            raw, None, "invalid event", str(error), request_id, permanent=True
        )
        await service.outbox.send(Emission.deferred(message))
    outcome = await service.apply_batch(changes, request_id)
    outcome.recorded += len(invalid)
    return outcome
