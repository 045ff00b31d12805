"""A replaced device deregistered (disabled or deleted) once its replacement is linked."""

from __future__ import annotations

from collections.abc import Sequence

from asset_client import AssetRepository
from iothub_client import DeviceNotFound, IotHubRegistry
from messages import ReconciliationMessage
from observability import DeviceLog
from reconciliation.burial import Burial
from reconciliation.errors import ReplacementPending


class Deregistration:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        hubs: IotHubRegistry,
        hub_names: Sequence[str],
        bury: Burial,
    ) -> None:
        self._assets = assets
        self._hubs = hubs
        self._hub_names = list(hub_names)
        self._bury = bury

    async def __call__(
        self, message: ReconciliationMessage, log: DeviceLog, dequeue_count: int
    ) -> str:
        """Disable or delete a replaced device, once the asset shows its replacement linked."""
        event = message.event or {}
        old, new, asset_id = event.get("oldDeviceId"), event.get("newDeviceId"), message.asset_id
        if not old or not asset_id:
            await self._bury(
                message, "no old device or asset to deregister", message.attempts, False
            )
            return "dead-lettered"
        asset = await self._assets.get_asset(asset_id)
        if asset.device_id == old:
            # The link that replaces it has not happened (yet): never cut off the only device.
            raise ReplacementPending(f"asset {asset_id} still names {old}; waiting for {new}")
        if new and asset.device_id != new:
            # Another claim took the approval: its own message deregisters the old device.
            log.info("deregistration superseded", oldDeviceId=old, newDeviceId=new)
            return "superseded"
        for hub in self._hub_names:
            try:
                await self._hubs.get_device(hub, old)
            except DeviceNotFound:
                continue
            if event.get("action") == "delete":
                await self._hubs.delete_device(hub, old)
            else:
                await self._hubs.disable_device(hub, old)
            log.info(
                "replaced device deregistered", hub=hub, action=event.get("action"), newDeviceId=new
            )
            return f"{event.get('action') or 'disable'}d"
        return "already gone"
