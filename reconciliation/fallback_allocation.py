"""A fallback allocation, finished: the device gets its asset link and its real role,
permissions and tags (provisioningState pendingReconciliation cleared), or, where a working
asset system would have refused it, is taken back (disabled, marked, dead-lettered)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from allocation.decision import check_assignable
from allocation.errors import AssetNotAssignable
from asset_client import (
    Asset,
    AssetConflict,
    AssetContractViolation,
    AssetRepository,
    DeviceLink,
)
from device_twin import ProvisioningState, format_twin_timestamp
from iothub_client import IotHubRegistry, Twin, TwinPatch, TwinPreconditionFailed
from messages import ReconciliationMessage
from observability import DeviceLog
from reconciliation.burial import Burial
from resilience.optimistic_update import optimistic_update
from sync.asset_to_twin import TwinPlanner
from sync.errors import SyncConflict


class FallbackAllocation:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        hubs: IotHubRegistry,
        planner: TwinPlanner,
        bury: Burial,
        max_attempts: int,
    ) -> None:
        self._assets = assets
        self._hubs = hubs
        self._planner = planner
        self._bury = bury
        self._max_attempts = max_attempts

    async def __call__(
        self, message: ReconciliationMessage, log: DeviceLog, dequeue_count: int
    ) -> str:
        event: dict[str, Any] = message.event or {}
        device_id = message.device_id or event.get("deviceId")
        hub = message.hub or event.get("assignedHub")
        if not device_id or not hub:
            await self._bury(message, "no device id or hub to reconcile", dequeue_count, False)
            return "dead-lettered"
        try:
            asset = await self._find(device_id, event.get("subjectSerialNumber"))
            log = log.bind(assetId=asset.asset_id if asset else None)
            if asset is None:
                return await self._unknown(message, device_id, hub, log, dequeue_count)
            check_assignable(asset, device_id)
            if asset.device_id != device_id or asset.provisioning_status != "provisioned":
                await self._assets.link_device(asset.asset_id, _link(device_id, event))
            asset = await self._assets.get_asset(asset.asset_id)
        except (AssetNotAssignable, AssetConflict) as refusal:
            return await self._refuse(message, device_id, hub, str(refusal), log, dequeue_count)
        except AssetContractViolation as broken:
            reason = f"the asset system answered a record that breaks its contract: {broken}"
            return await self._refuse(message, device_id, hub, reason, log, dequeue_count)
        was_overdue = await self._write_twin(hub, device_id, asset, log)
        if was_overdue:
            await self._hubs.enable_device(hub, device_id)
            log.warning("device re-enabled: reconciliation succeeded after its deadline", hub=hub)
            return "reconciled late; re-enabled"
        return "reconciled"

    async def _refuse(
        self,
        message: ReconciliationMessage,
        device_id: str,
        hub: str,
        reason: str,
        log: DeviceLog,
        dequeue_count: int,
    ) -> str:
        """What a working asset system would have refused: the fallback admitted it, so take it
        back. Disabled first (what matters), then its twin marked, then dead-lettered."""
        await self._hubs.disable_device(hub, device_id)
        await self._hubs.update_twin(
            hub,
            device_id,
            TwinPatch(
                tags={
                    "provisioningState": ProvisioningState.REFUSED.value,
                    "pendingSince": None,
                    "refusedAt": format_twin_timestamp(datetime.now(UTC)),
                }
            ),
            etag=None,
        )
        await self._bury(message, reason, dequeue_count, replayable=False)
        log.warning("fallback device refused on reconciliation; disabled", hub=hub, reason=reason)
        return "refused"

    async def _write_twin(self, hub: str, device_id: str, asset: Asset, log: DeviceLog) -> bool:
        """The asset's fields, the role's permissions, and provisioningState provisioned.

        Returns whether the twin said the device had been disabled for being overdue.
        """

        def plan(twin: Twin) -> _TwinReconciliation:
            planned = self._planner.plan(twin, asset, hub)
            tags = dict(planned.patch.tags or {}) if planned.patch else {}
            if twin.tags.get("provisioningState") != "provisioned":
                tags["provisioningState"] = "provisioned"
            if twin.tags.get("pendingSince") is not None:
                tags["pendingSince"] = None
            desired = planned.patch.desired if planned.patch else None
            return _TwinReconciliation(TwinPatch(tags=tags, desired=desired), planned.changed)

        async def write(twin: Twin, planned: _TwinReconciliation) -> None:
            await self._hubs.update_twin(hub, device_id, planned.patch, etag=twin.etag)

        async def reread(_stale: Twin) -> Twin:
            return await self._hubs.get_twin(hub, device_id)

        settled = await optimistic_update(
            await self._hubs.get_twin(hub, device_id),
            plan=plan,
            needs_write=lambda planned: bool(planned.patch.tags or planned.patch.desired),
            write=write,
            reread=reread,
            stale=TwinPreconditionFailed,
            attempts=self._max_attempts,
            give_up=lambda: SyncConflict(
                f"twin of {device_id} kept changing during reconciliation"
            ),
        )
        if settled.written:
            log.info("twin reconciled from asset", hub=hub, changed=",".join(settled.plan.changed))
        return settled.state.tags.get("provisioningState") == ProvisioningState.OVERDUE.value

    async def _unknown(
        self,
        message: ReconciliationMessage,
        device_id: str,
        hub: str,
        log: DeviceLog,
        dequeue_count: int,
    ) -> str:
        if self._planner.policy.unknown_device == "quarantine":
            await self._hubs.update_twin(
                hub,
                device_id,
                TwinPatch(tags={"provisioningState": "quarantined", "pendingSince": None}),
                etag=None,
            )
            log.warning("fallback device has no asset; quarantined", hub=hub)
            return "quarantined"
        return await self._refuse(
            message,
            device_id,
            hub,
            "no asset for the device; the policy rejects unknown devices, so it was disabled",
            log,
            dequeue_count,
        )

    async def _find(self, device_id: str, serial: str | None) -> Asset | None:
        matches = await self._assets.find_by_device_id(device_id)
        if not matches and serial:
            matches = await self._assets.find_by_serial_number(serial)
        if len(matches) > 1:
            raise AssetNotAssignable(f"{len(matches)} assets match device {device_id}")
        return matches[0] if matches else None


@dataclass(frozen=True)
class _TwinReconciliation:
    patch: TwinPatch
    changed: Sequence[str]


def _link(device_id: str, event: dict[str, Any]) -> DeviceLink:
    """The link the fallback could not make, with the hardware facts it recorded."""

    def text(key: str) -> str | None:
        value = event.get(key)
        return value if isinstance(value, str) and value else None

    return DeviceLink(
        device_id=device_id,
        registration_id=text("registrationId") or device_id,
        thumbprint=text("thumbprint"),
        sha1_thumbprint=text("sha1Thumbprint"),
        serial_number=text("subjectSerialNumber"),
    )
