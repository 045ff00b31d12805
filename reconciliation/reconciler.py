"""Reconciliation: finish what could not be done when it first happened, idempotently.

A fallback allocation gets its asset link and its real role, permissions and tags (clearing
provisioningState pendingReconciliation); a recorded twin or asset change is applied again.
Transient failures raise, so the queue redelivers (visibility timeout) and, after
maxDequeueCount tries, moves the message to `<queue>-poison`, whose handler dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from allocation.decision import check_assignable
from allocation.errors import AssetNotAssignable
from app_errors import Conflict
from asset_client import (
    Asset,
    AssetConflict,
    AssetContractViolation,
    AssetRepository,
    DeviceLink,
)
from audit import AuditAction, AuditEntry, AuditTrail, NoAudit
from device_twin import ProvisioningState, format_twin_timestamp
from iothub_client import DeviceNotFound, IotHubRegistry, Twin, TwinPatch, TwinPreconditionFailed
from messages import DeadLetter, ReconciliationMessage
from observability import DeviceLog
from policies import Policy
from resilience.recorders import DeadLetterRecorder
from sync.asset_sync_service import AssetToTwinSync
from sync.asset_to_twin import plan_twin_update
from sync.device_sync_service import TwinToAssetSync
from sync.errors import SyncConflict, SyncError
from sync.events import AssetEvent, InvalidEvent, twin_change_from_record


class ReplacementPending(SyncError, Conflict):
    """The replacement's link is not on the asset yet; try again later."""


_logger = logging.getLogger("reconciliation")
_AUDIT_ACTIONS: dict[tuple[str, str], AuditAction] = {
    ("allocation", "refused"): "reconciliation.refused",
    ("allocation", "dead-lettered"): "reconciliation.refused",
    ("twinChange", "dead-lettered"): "reconciliation.refused",
    ("allocation", "reconciled late; re-enabled"): "device.reenabled",
    ("deregistration", "disabled"): "device.deregistered",
    ("deregistration", "deleted"): "device.deregistered",
    ("deregistration", "already gone"): "device.deregistered",
}
_EVENT_DETAILS = ("oldDeviceId", "newDeviceId", "action", "approvedBy", "reason", "deviceReason")


class Reconciler:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        hubs: IotHubRegistry,
        hub_names: Sequence[str],
        policy: Policy,
        asset_api_public_url: str,
        asset_sync: AssetToTwinSync,
        device_sync: TwinToAssetSync,
        dead_letters: DeadLetterRecorder,
        audit: AuditTrail | None = None,
        max_attempts: int = 5,
    ) -> None:
        self._audit: AuditTrail = audit or NoAudit()
        self._assets = assets
        self._hubs = hubs
        self._hub_names = list(hub_names)
        self._policy = policy
        self._public_url = asset_api_public_url
        self._asset_sync = asset_sync
        self._device_sync = device_sync
        self._dead_letters = dead_letters
        self._max_attempts = max_attempts

    async def handle_raw(self, body: bytes, *, dequeue_count: int, request_id: str) -> str:
        """A message nobody can read is dead-lettered at once; retrying cannot fix it."""
        try:
            message = ReconciliationMessage.model_validate_json(body)
        except ValidationError as error:
            await self._dead_letters.record(
                DeadLetter(
                    source="reconciliation",
                    kind="allocation",
                    reason="unreadable reconciliation message",
                    detail=str(error)[:2000],
                    request_id=request_id,
                    request={"raw": body[:4000].decode("utf-8", "replace")},
                    attempts=dequeue_count,
                    replayable=False,
                )
            )
            return "dead-lettered"
        return await self.handle(message, dequeue_count=dequeue_count, request_id=request_id)

    async def handle(
        self, message: ReconciliationMessage, *, dequeue_count: int, request_id: str
    ) -> str:
        log = DeviceLog(
            _logger,
            request_id=request_id,
            registration_id=message.device_id,
            device_id=message.device_id,
            asset_id=message.asset_id,
        )
        if message.permanent:
            await self._bury(message, message.reason, dequeue_count, replayable=False)
            return "dead-lettered"
        if message.kind == "allocation":
            result = await self._allocation(message, log, dequeue_count)
        elif message.kind == "deregistration":
            result = await self._deregistration(message, log)
        elif message.kind == "twinChange":
            result = await self._twin_change(message, log)
        else:
            result = await self._asset_change(message, log)
        log.info("reconciled", kind=message.kind, result=result, dequeueCount=dequeue_count)
        await self._audit.record(
            AuditEntry(
                action=_AUDIT_ACTIONS.get((message.kind, result), "reconciliation.completed"),
                actor="reconciler",
                outcome=result,
                registration_id=(message.event or {}).get("registrationId"),
                device_id=message.device_id,
                asset_id=message.asset_id or (message.event or {}).get("assetId"),
                hub=message.hub,
                request_id=request_id,
                details={
                    "kind": message.kind,
                    "reason": message.reason,
                    "dequeueCount": dequeue_count,
                    "event": {
                        k: v for k, v in (message.event or {}).items() if k in _EVENT_DETAILS
                    },
                },
            )
        )
        return result

    async def bury_raw(self, body: bytes, *, dequeue_count: int, request_id: str) -> None:
        """The poison queue's handler: the message failed maxDequeueCount times."""
        try:
            message = ReconciliationMessage.model_validate_json(body)
        except ValidationError:
            await self.handle_raw(body, dequeue_count=dequeue_count, request_id=request_id)
            return
        await self._bury(
            message,
            f"gave up after {max(dequeue_count, message.attempts)} attempts: {message.reason}",
            dequeue_count,
            replayable=True,
            source="poison",
        )

    async def _allocation(
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
        for _attempt in range(self._max_attempts):
            twin: Twin = await self._hubs.get_twin(hub, device_id)
            overdue = twin.tags.get("provisioningState") == ProvisioningState.OVERDUE.value
            plan = plan_twin_update(
                twin=twin,
                asset=asset,
                policy=self._policy,
                asset_api_public_url=self._public_url,
                current_hub=hub,
                hubs=self._hub_names,
            )
            tags = dict(plan.patch.tags or {}) if plan.patch else {}
            if twin.tags.get("provisioningState") != "provisioned":
                tags["provisioningState"] = "provisioned"
            if twin.tags.get("pendingSince") is not None:
                tags["pendingSince"] = None
            desired = plan.patch.desired if plan.patch else None
            if not tags and not desired:
                return overdue
            try:
                await self._hubs.update_twin(
                    hub, device_id, TwinPatch(tags=tags, desired=desired), etag=twin.etag
                )
            except TwinPreconditionFailed:
                continue
            log.info("twin reconciled from asset", hub=hub, changed=",".join(plan.changed))
            return overdue
        raise SyncConflict(f"twin of {device_id} kept changing during reconciliation")

    async def _unknown(
        self,
        message: ReconciliationMessage,
        device_id: str,
        hub: str,
        log: DeviceLog,
        dequeue_count: int,
    ) -> str:
        if self._policy.unknown_device == "quarantine":
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

    async def _deregistration(self, message: ReconciliationMessage, log: DeviceLog) -> str:
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

    async def _find(self, device_id: str, serial: str | None) -> Asset | None:
        matches = await self._assets.find_by_device_id(device_id)
        if not matches and serial:
            matches = await self._assets.find_by_serial_number(serial)
        if len(matches) > 1:
            raise AssetNotAssignable(f"{len(matches)} assets match device {device_id}")
        return matches[0] if matches else None

    async def _twin_change(self, message: ReconciliationMessage, log: DeviceLog) -> str:
        try:
            change = twin_change_from_record(message.event or {})
        except InvalidEvent as error:
            # Retrying cannot give it the system properties it lacks.
            await self._bury(message, f"invalid event: {error}", message.attempts, False)
            return "dead-lettered"
        return await self._device_sync.apply(change, log)

    async def _asset_change(self, message: ReconciliationMessage, log: DeviceLog) -> str:
        event = message.event or {}
        asset_id = message.asset_id or (event.get("data") or {}).get("assetId")
        if not asset_id:
            await self._bury(message, "no asset id to reconcile", message.attempts, False)
            return "dead-lettered"
        outcome = await self._asset_sync.handle(AssetEvent(asset_id=asset_id), log)
        return outcome.result

    async def _bury(
        self,
        message: ReconciliationMessage,
        reason: str,
        attempts: int,
        replayable: bool,
        source: str = "reconciliation",
    ) -> None:
        await self._dead_letters.record(
            DeadLetter(
                source="poison" if source == "poison" else "reconciliation",
                kind=message.kind,
                reason=reason[:200],
                detail=message.detail,
                registration_id=(message.event or {}).get("registrationId"),
                device_id=message.device_id,
                asset_id=message.asset_id,
                hub=message.hub,
                request_id=message.request_id,
                request=message.event,
                attempts=max(attempts, message.attempts),
                first_seen=message.recorded_at,
                replayable=replayable,
            )
        )


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
