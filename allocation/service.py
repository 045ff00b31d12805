"""The allocation use case: read identity, find the asset, decide, record the link.

When the asset system is down (not when it answers 4xx) the outage policy decides: fallback
answers with least privilege and queues the rest for reconciliation; defer answers 503.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from allocation.attestation import read_identity
from allocation.audit_entries import outcome_entries, refusal_entries
from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision, decide_allocation, decide_fallback
from allocation.errors import AllocationDeferred, AllocationError, AssetNotAssignable
from allocation.identity import DeviceIdentity
from allocation.policy import Policy
from allocation.replacement import Replacement, ReplacementClaim, judge_claim, read_claim, rekeyed
from asset_client import (
    Asset,
    AssetContractViolation,
    AssetRepository,
    AssetStatus,
    AssetUnavailable,
)
from audit import AuditTrail, NoAudit
from observability import DeviceLog
from resilience.reconciliation import ReconciliationMessage, ReconciliationRecorder

_logger = logging.getLogger("allocation")
_KNOWN_LOCATIONS = 100_000


@dataclass(frozen=True)
class AllocationOutcome:
    decision: AllocationDecision
    reconciliation: ReconciliationMessage | None = None


class AllocationService:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        policy: Policy,
        asset_api_public_url: str,
        deregistrations: ReconciliationRecorder | None = None,
        audit: AuditTrail | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._assets = assets
        self._audit: AuditTrail = audit or NoAudit()
        self._deregistrations = deregistrations
        self._policy = policy
        self._asset_api_public_url = asset_api_public_url
        self._clock = clock
        # Locations seen in earlier lookups, so a fallback can still route by location.
        self._locations: OrderedDict[str, str] = OrderedDict()

    async def allocate(
        self, request: AllocationRequest, log: DeviceLog, *, request_id: str = ""
    ) -> AllocationOutcome:
        """Raises AllocationError (a refusal) or AssetError (asset trouble that is no outage).

        Every decision and every refusal goes on the audit trail (which never raises).
        """
        try:
            outcome = await self._allocate(request, log, request_id)
        except AllocationError as refusal:
            if not isinstance(refusal, AllocationDeferred):
                for entry in refusal_entries(request, refusal, request_id):
                    await self._audit.record(entry)
            raise
        for entry in outcome_entries(
            request,
            decision=outcome.decision,
            fallback_reason=outcome.reconciliation.detail if outcome.reconciliation else None,
            request_id=request_id,
        ):
            await self._audit.record(entry)
        return outcome

    async def _allocate(
        self, request: AllocationRequest, log: DeviceLog, request_id: str
    ) -> AllocationOutcome:
        identity = read_identity(
            request.device_runtime_context,
            request.enrollment,
            now=self._clock(),
            clock_skew=timedelta(seconds=self._policy.attestation.clock_skew_seconds),
        )
        log = log.bind(registrationId=identity.registration_id, deviceId=identity.device_id.value)
        claim = read_claim(request.device_runtime_context.payload)
        try:
            asset, replacement = await self._resolve(identity, claim)
            log = log.bind(assetId=asset.asset_id if asset else None)
            decision = decide_allocation(
                request=request,
                identity=identity,
                asset=asset,
                policy=self._policy,
                asset_api_public_url=self._asset_api_public_url,
                replacement=replacement,
            )
            if decision.link is not None and asset is not None:
                if replacement is not None:
                    await self._prepare_replacement(asset, replacement, identity, request_id, log)
                await self._assets.link_device(asset.asset_id, decision.link)
        except (AssetUnavailable, AssetContractViolation) as outage:
            return self._outage(request, identity, outage, log, request_id)
        log.info(
            "allocated",
            hub=decision.hub.hub,
            hubSelection=decision.hub.selection.value,
            role=decision.role.role.value,
            roleReason=decision.role.reason,
            provisioningState=decision.provisioning_state.value,
            linked=decision.link is not None,
            reregistration=request.is_reregistration,
        )
        return AllocationOutcome(decision)

    def _outage(
        self,
        request: AllocationRequest,
        identity: DeviceIdentity,
        outage: Exception,
        log: DeviceLog,
        request_id: str,
    ) -> AllocationOutcome:
        policy = self._policy.outage
        if policy.policy == "defer":
            log.warning("allocation deferred", reason=type(outage).__name__, detail=str(outage))
            raise AllocationDeferred(
                f"the asset system is unavailable ({outage}); DPS should retry",
                retry_after=policy.retry_after_seconds,
            ) from outage
        decision = decide_fallback(
            request=request,
            identity=identity,
            policy=self._policy,
            known_location=self._known_location(identity),
        )
        message = ReconciliationMessage(
            kind="allocation",
            reason="asset system unavailable",
            detail=str(outage)[:2000],
            device_id=identity.device_id.value,
            hub=decision.hub.hub,
            request_id=request_id or None,
            event=allocation_summary(request, identity, decision.hub.hub),
        )
        log.warning(
            "allocated with the fallback role; reconciliation queued",
            hub=decision.hub.hub,
            role=decision.role.role.value,
            provisioningState=decision.provisioning_state.value,
            reason=type(outage).__name__,
            detail=str(outage),
        )
        return AllocationOutcome(decision, message)

    async def _resolve(
        self, identity: DeviceIdentity, claim: ReplacementClaim | None
    ) -> tuple[Asset | None, Replacement | None]:
        """The asset this device belongs to, and the replacement that makes it so, if any."""
        device_id = identity.device_id.value
        own = _only(await self._assets.find_by_device_id(device_id), f"device id {device_id!r}")
        if own is not None:
            self._remember_asset(device_id, own)
            return own, None  # linked already: a re-registration, or a replacement done before
        if claim is not None:
            old = _only(
                await self._assets.find_by_device_id(claim.device_id),
                f"device id {claim.device_id!r}",
            )
            return old, judge_claim(claim, old, identity)
        asset = await self._find_by_serial(identity)
        if (
            asset is not None
            and asset.device_id
            and asset.device_id.casefold() != device_id.casefold()
        ):
            return asset, rekeyed(asset, identity, self._policy.replacement.same_serial)
        return asset, None

    async def _prepare_replacement(
        self,
        asset: Asset,
        replacement: Replacement,
        identity: DeviceIdentity,
        request_id: str,
        log: DeviceLog,
    ) -> None:
        """Before the link: queue the old device's deregistration (it runs once the link shows on
        the asset, so a failed link deregisters nothing), and approve a policy re-key."""
        if self._deregistrations is None:
            raise RuntimeError("a replacement needs a deregistration queue")
        await self._deregistrations.record(
            ReconciliationMessage(
                kind="deregistration",
                reason=f"replaced by {identity.device_id.value}",
                detail=replacement.reason,
                device_id=replacement.old_device_id,
                asset_id=asset.asset_id,
                request_id=request_id or None,
                event={
                    "oldDeviceId": replacement.old_device_id,
                    "newDeviceId": identity.device_id.value,
                    "assetId": asset.asset_id,
                    "action": self._policy.replacement.old_device,
                    "approvedBy": replacement.approved_by,
                    "reason": replacement.reason,
                },
            )
        )
        if replacement.approved_by == "policy" and asset.status != AssetStatus.PENDING_REPLACEMENT:
            serial = identity.subject_serial_number
            await self._assets.patch_asset(
                asset.asset_id,
                {
                    "status": "pendingReplacement",
                    "replacement": {
                        "oldDeviceId": replacement.old_device_id,
                        "reason": replacement.reason,
                        "approvedSerial": serial.value if serial else None,
                    },
                },
                if_match=asset.version,
            )
        log.info(
            "replacement accepted",
            oldDeviceId=replacement.old_device_id,
            approvedBy=replacement.approved_by,
            reason=replacement.reason,
        )

    async def _find_by_serial(self, identity: DeviceIdentity) -> Asset | None:
        serial = identity.subject_serial_number
        if serial is None:
            return None
        asset = _only(
            await self._assets.find_by_serial_number(serial.value), f"serial {serial.value!r}"
        )
        if asset is not None:
            self._remember_asset(identity.device_id.value, asset)
        return asset

    def _remember_asset(self, device_id: str, asset: Asset) -> None:
        self._remember(f"d:{device_id}", asset.location)
        self._remember(f"s:{asset.serial_number}", asset.location)

    def _known_location(self, identity: DeviceIdentity) -> str | None:
        serial = identity.subject_serial_number
        return self._locations.get(f"d:{identity.device_id.value}") or (
            self._locations.get(f"s:{serial.value}") if serial else None
        )

    def _remember(self, key: str, location: str) -> None:
        self._locations[key] = location
        self._locations.move_to_end(key)
        while len(self._locations) > _KNOWN_LOCATIONS:
            self._locations.popitem(last=False)


def allocation_summary(
    request: AllocationRequest, identity: DeviceIdentity, hub: str | None
) -> dict[str, Any]:
    """What reconciliation and operators need to know about a registration; no secrets."""
    context = request.device_runtime_context
    return {
        "registrationId": identity.registration_id,
        "deviceId": identity.device_id.value,
        "subjectSerialNumber": (
            identity.subject_serial_number.value if identity.subject_serial_number else None
        ),
        "thumbprint": identity.thumbprint,
        "assignedHub": hub,
        "linkedHubs": list(request.linked_hubs),
        "currentHub": context.current_iot_hub_host_name,
        "enrollment": request.enrollment.enrollment_group_id or request.enrollment.registration_id,
        "attestation": identity.attestation_kind,
        "provenance": identity.provenance(),
    }


def _only(assets: list[Asset], what: str) -> Asset | None:
    if len(assets) > 1:
        ids = ", ".join(sorted(asset.asset_id for asset in assets)[:5])
        raise AssetNotAssignable(f"{len(assets)} assets match {what} ({ids}); fix the asset data")
    return assets[0] if assets else None
