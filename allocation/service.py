"""The allocation use case: read identity, find the asset, decide, record the link."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from allocation.attestation import read_identity
from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision, decide_allocation
from allocation.errors import AssetNotAssignable
from allocation.identity import DeviceIdentity
from allocation.policy import Policy
from asset_client import Asset, AssetRepository
from observability import DeviceLog

_logger = logging.getLogger("allocation")


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

    async def allocate(self, request: AllocationRequest, log: DeviceLog) -> AllocationDecision:
        """Raises AllocationError (refusal) or AssetError (asset system trouble)."""
        identity = read_identity(
            request.device_runtime_context,
            request.enrollment,
            now=self._clock(),
            clock_skew=timedelta(seconds=self._policy.attestation.clock_skew_seconds),
        )
        log = log.bind(registrationId=identity.registration_id, deviceId=identity.device_id.value)
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
        return decision

    async def _find_asset(self, identity: DeviceIdentity) -> Asset | None:
        """By device id first (re-registrations), then by the certificate's subject serial."""
        by_device = await self._assets.find_by_device_id(identity.device_id.value)
        if by_device:
            return _only(by_device, f"device id {identity.device_id.value!r}")
        serial = identity.subject_serial_number
        if serial is None:
            return None
        return _only(
            await self._assets.find_by_serial_number(serial.value), f"serial {serial.value!r}"
        )


def _only(assets: list[Asset], what: str) -> Asset | None:
    if len(assets) > 1:
        ids = ", ".join(sorted(asset.asset_id for asset in assets)[:5])
        raise AssetNotAssignable(f"{len(assets)} assets match {what} ({ids}); fix the asset data")
    return assets[0] if assets else None
