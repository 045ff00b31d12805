"""The allocation use case: read identity, find the asset, decide, record the link.

One outcome per request (Allocated or Refused), and one way out for what it leaves behind: the
service decides which refusals are dead-lettered and what each outcome records, and sends it
all through the Outbox before it returns, so the answer never claims more than is durable.

When the asset system is down (not when it answers 4xx) the outage policy decides, for a plain
first registration only: fallback answers with least privilege and queues the rest for
reconciliation; defer answers 503. Anything that needs the asset system's word (a replacement
claim, a re-registration) is always deferred during an outage.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from allocation import emissions
from allocation.attestation import read_identity
from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision, decide_allocation, decide_fallback
from allocation.errors import (
    AllocationDeferred,
    AllocationError,
    AssetNotAssignable,
    AssetRecordInvalid,
    ReplacementRefused,
)
from allocation.identity import DeviceIdentity
from allocation.replacement import (
    Replacement,
    ReplacementClaim,
    judge_claim,
    read_claim,
    rekeyed,
)
from allocation.trust import check_enrollment, check_issuer
from asset_client import (
    Asset,
    AssetConflict,
    AssetContractViolation,
    AssetNotFound,
    AssetRepository,
    AssetStatus,
    AssetUnavailable,
    AssetVersionConflict,
    DeviceLink,
)
from messages.emission import Emission
from observability import DeviceLog
from policies import Policy
from resilience.outbox import Outbox

_logger = logging.getLogger("allocation")
_KNOWN_LOCATIONS = 100_000


@dataclass(frozen=True)
class Allocated:
    """Answer 200 with the decision's response."""

    decision: AllocationDecision
    fallback_reason: str | None = None


@dataclass(frozen=True)
class Refused:
    """Answer with the error's status (4xx, or 503 for a deferral)."""

    error: AllocationError


AllocationOutcome = Allocated | Refused


class AllocationService:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        policy: Policy,
        asset_api_public_url: str,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._assets = assets
        self._outbox = outbox
        self._policy = policy
        self._asset_api_public_url = asset_api_public_url
        self._clock = clock
        # Locations seen in earlier lookups, so a fallback can still route by location.
        self._locations: OrderedDict[str, str] = OrderedDict()

    async def allocate(
        self, request: AllocationRequest, log: DeviceLog, *, request_id: str = ""
    ) -> AllocationOutcome:
        """Decide, record, and say what to answer.

        Raises QueueError when what the outcome must record cannot be written, and AssetError
        for asset trouble that is neither an outage nor a refusal (our credentials refused, our
        request rejected): DPS retries both.
        """
        try:
            outcome, emission = await self._allocate(request, log, request_id)
        except AllocationError as refusal:
            _log_refusal(log, refusal)
            await self._outbox.send(emissions.refused(request, refusal, request_id))
            return Refused(refusal)
        await self._outbox.send(emission)
        return outcome

    async def _allocate(
        self, request: AllocationRequest, log: DeviceLog, request_id: str
    ) -> tuple[Allocated, Emission]:
        now = self._clock()
        trust = self._policy.trust
        group = request.enrollment_group
        check_enrollment(
            trust,
            group_id=group.enrollment_group_id if group else None,
            individual=request.individual_enrollment is not None,
        )
        identity = read_identity(
            request.device_runtime_context,
            request.enrollment,
            now=now,
            clock_skew=timedelta(seconds=self._policy.attestation.clock_skew_seconds),
        )
        check_issuer(trust, identity.certificate_chain, now=now)
        # Binding tags the request's span too: the identifiers as the certificate proved them.
        log = log.bind(registrationId=identity.registration_id, deviceId=identity.device_id.value)
        claim = read_claim(request.device_runtime_context.payload)
        try:
            asset, replacement = await self._resolve(identity, claim, now)
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
                await self._link(asset, decision.link, replacement)
        except AssetUnavailable as outage:
            return self._outage(request, identity, claim, outage, log, request_id, now)
        except AssetContractViolation as broken:
            raise AssetRecordInvalid(
                f"the asset system answered a record that breaks its contract: {broken}"
            ) from broken
        except (AssetNotFound, AssetVersionConflict) as changed:
            raise AssetNotAssignable(
                f"the asset changed during the allocation ({type(changed).__name__}); "
                "the device should register again",
                public="the asset of this device changed during the registration; register again",
            ) from changed
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
        return Allocated(decision), emissions.allocated(request, decision, request_id)

    def _outage(
        self,
        request: AllocationRequest,
        identity: DeviceIdentity,
        claim: ReplacementClaim | None,
        outage: AssetUnavailable,
        log: DeviceLog,
        request_id: str,
        now: datetime,
    ) -> tuple[Allocated, Emission]:
        """Fallback admits only what a working asset system could not refuse later without a
        trace: a first registration that claims nothing. Everything else waits for its word."""
        policy = self._policy.outage
        context = request.device_runtime_context
        first = context.current_iot_hub_host_name is None and context.current_device_id is None
        if policy.policy == "defer" or claim is not None or not first:
            why = (
                "the outage policy is 'defer'"
                if policy.policy == "defer"
                else "a replacement claim needs the asset system's approval"
                if claim is not None
                else "a re-registration needs the asset system's word"
            )
            log.warning("allocation deferred", reason=type(outage).__name__, why=why)
            raise AllocationDeferred(
                f"the asset system is unavailable ({outage}); {why}; DPS should retry",
                retry_after=policy.retry_after_seconds,
            ) from outage
        decision = decide_fallback(
            request=request,
            identity=identity,
            policy=self._policy,
            known_location=self._known_location(identity),
            pending_since=now,
        )
        detail = str(outage)
        log.warning(
            "allocated with the fallback role; reconciliation queued",
            hub=decision.hub.hub,
            role=decision.role.role.value,
            provisioningState=decision.provisioning_state.value,
            reason=type(outage).__name__,
            detail=detail,
        )
        return (
            Allocated(decision, fallback_reason=detail),
            emissions.fallback(request, decision, detail, request_id),
        )

    async def _resolve(
        self, identity: DeviceIdentity, claim: ReplacementClaim | None, now: datetime
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
            return old, judge_claim(claim, old, identity, self._policy.replacement, now=now)
        asset = await self._find_by_serial(identity)
        if (
            asset is not None
            and asset.device_id
            and asset.device_id.casefold() != device_id.casefold()
        ):
            return asset, rekeyed(asset, self._policy.replacement)
        return asset, None

    async def _prepare_replacement(
        self,
        asset: Asset,
        replacement: Replacement,
        identity: DeviceIdentity,
        request_id: str,
        log: DeviceLog,
    ) -> None:
        """Before the link: record the old device's deregistration (it runs once the link shows
        on the asset, so a failed link deregisters nothing), and approve a policy re-key."""
        await self._outbox.send(
            Emission(
                reconciliation=(
                    emissions.deregistration(
                        replacement,
                        new_device_id=identity.device_id.value,
                        asset_id=asset.asset_id,
                        action=self._policy.replacement.old_device,
                        request_id=request_id,
                    ),
                )
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
                        "approvedThumbprint": identity.thumbprint,
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

    async def _link(self, asset: Asset, link: DeviceLink, replacement: Replacement | None) -> None:
        """The asset system has the last word, atomically: a takeover it refuses (an approval
        used by a faster claim, expired, or for other hardware) is a refused replacement."""
        try:
            await self._assets.link_device(asset.asset_id, link)
        except AssetConflict as conflict:
            if replacement is not None:
                raise ReplacementRefused(
                    f"the asset system refused the takeover of asset {asset.asset_id!r}: "
                    f"{conflict}",
                    rule="refused-by-asset-system",
                ) from conflict
            raise AssetNotAssignable(
                f"the asset system refused to link asset {asset.asset_id!r}: {conflict}"
            ) from conflict

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


def _log_refusal(log: DeviceLog, refusal: AllocationError) -> None:
    if isinstance(refusal, AllocationDeferred):
        return  # logged where the outage was met
    log.warning("allocation refused", reason=refusal.code, detail=refusal.detail)


def _only(assets: list[Asset], what: str) -> Asset | None:
    if len(assets) > 1:
        ids = ", ".join(sorted(asset.asset_id for asset in assets)[:5])
        raise AssetNotAssignable(f"{len(assets)} assets match {what} ({ids}); fix the asset data")
    return assets[0] if assets else None
