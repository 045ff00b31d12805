"""Trigger payloads in, sync services called, failures routed: free of azure.functions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from app_errors import AppError
from messages import ReconciliationMessage, capped_event
from messages.emission import Emission
from observability import DeviceLog
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


async def handle_asset_event(
    *,
    service: AssetToTwinSync,
    outbox: Outbox,
    event_id: str | None,
    subject: str | None,
    event_type: str | None,
    data: Any,
    request_id: str,
) -> AssetSyncOutcome | None:
    """A bad event is recorded and acknowledged; a transient failure raises so Event Grid
    delivers the event again (it retries for up to 24 h)."""
    log = DeviceLog(_logger, request_id=request_id)
    try:
        event = asset_event_from(
            event_id=event_id, subject=subject, event_type=event_type, data=data
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
        return await service.handle(event, log)
    except AppError as error:
        device_id = getattr(error, "device_id", None)
        log.bind(assetId=event.asset_id, deviceId=device_id, registrationId=device_id).warning(
            "asset sync failed; Event Grid will deliver again",
            reason=type(error).__name__,
            detail=str(error),
        )
        raise


async def handle_twin_batch(
    service: TwinToAssetSync, events: Sequence[RawTwinEvent], request_id: str
) -> BatchOutcome:
    """One bad event never fails the batch: it is dead-lettered, and the rest applied.

    Only a failure to record a failure propagates (the trigger's retry policy runs the batch
    again).
    """
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
