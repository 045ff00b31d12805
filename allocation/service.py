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
from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision, decide_allocation, decide_fallback
from allocation.errors import AllocationDeferred, AssetNotAssignable
from allocation.identity import DeviceIdentity
from allocation.policy import Policy
from asset_client import Asset, AssetContractViolation, AssetRepository, AssetUnavailable
from observability import DeviceLog
from resilience.reconciliation import ReconciliationMessage

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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._assets = assets
        self._policy = policy
        self._asset_api_public_url = asset_api_public_url
        self._clock = clock
        # Locations seen in earlier lookups, so a fallback can still route by location.
        self._locations: OrderedDict[str, str] = OrderedDict()

    async def allocate(
        self, request: AllocationRequest, log: DeviceLog, *, request_id: str = ""
    ) -> AllocationOutcome:
        """Raises AllocationError (a refusal) or AssetError (asset trouble that is no outage)."""
        identity = read_identity(
            request.device_runtime_context,
            request.enrollment,
            now=self._clock(),
            clock_skew=timedelta(seconds=self._policy.attestation.clock_skew_seconds),
        )
        log = log.bind(registrationId=identity.registration_id, deviceId=identity.device_id.value)
        try:
            asset = await self._find_asset(identity)
            log = log.bind(assetId=asset.asset_id if asset else None)
            decision = decide_allocation(
                request=request,
                identity=identity,
                asset=asset,
                policy=self._policy,
                asset_api_public_url=self._asset_api_public_url,
            )
            if decision.link is not None and asset is not None:
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

    async def _find_asset(self, identity: DeviceIdentity) -> Asset | None:
        """By device id first (re-registrations), then by the certificate's subject serial."""
        device_id = identity.device_id.value
        serial = identity.subject_serial_number
        asset = _only(await self._assets.find_by_device_id(device_id), f"device id {device_id!r}")
        if asset is None and serial is not None:
            asset = _only(
                await self._assets.find_by_serial_number(serial.value), f"serial {serial.value!r}"
            )
        if asset is not None:
            self._remember(f"d:{device_id}", asset.location)
            self._remember(f"s:{asset.serial_number}", asset.location)
        return asset

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
