"""A recorded twin or asset change, applied again by the sync flow that first failed it."""

from __future__ import annotations

from messages import ReconciliationMessage
from observability import DeviceLog
from reconciliation.burial import Burial
from sync.asset_sync_service import AssetToTwinSync
from sync.device_sync_service import TwinToAssetSync
from sync.events import AssetEvent, InvalidEvent, twin_change_from_record


class TwinChangeReplay:
    def __init__(self, sync: TwinToAssetSync, bury: Burial) -> None:
        self._sync = sync
        self._bury = bury

    async def __call__(
        self, message: ReconciliationMessage, log: DeviceLog, dequeue_count: int
    ) -> str:
        try:
            change = twin_change_from_record(message.event or {})
        except InvalidEvent as error:
            # Retrying cannot give it the system properties it lacks.
            await self._bury(message, f"invalid event: {error}", message.attempts, False)
            return "dead-lettered"
        return await self._sync.apply(change, log)


class AssetChangeReplay:
    def __init__(self, sync: AssetToTwinSync, bury: Burial) -> None:
        self._sync = sync
        self._bury = bury

    async def __call__(
        self, message: ReconciliationMessage, log: DeviceLog, dequeue_count: int
    ) -> str:
        event = message.event or {}
        asset_id = message.asset_id or (event.get("data") or {}).get("assetId")
        if not asset_id:
            await self._bury(message, "no asset id to reconcile", message.attempts, False)
            return "dead-lettered"
        outcome = await self._sync.handle(AssetEvent(asset_id=asset_id), log)
        return outcome.result
