"""The sweep: fallback devices still pending reconciliation after the deadline are disabled.

A fallback admits a device with least privilege on the promise that reconciliation confirms it
soon. If that never happens (the asset system stays down, the message was dead-lettered), the
promise lapses: the device is disabled on its hub, its twin marked reconciliationOverdue, a dead
letter written and the decision audited. Reconciliation that succeeds later enables it again.

Devices are found with an IoT Hub query on the twin tags the fallback wrote (provisioningState
and pendingSince). The query is eventually consistent, so each twin is read again first, and
the mark is written with the twin's etag: a twin reconciled meanwhile is left alone, or enabled
again if the race was lost after the disable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from audit import AuditEntry
from device_twin import ProvisioningState, format_twin_timestamp
from iothub_client import (
    DeviceNotFound,
    IotHubError,
    IotHubRegistry,
    Twin,
    TwinPatch,
    TwinPreconditionFailed,
)
from messages import DeadLetter
from messages.emission import Emission
from observability import DeviceLog
from policies import Policy
from resilience.outbox import Outbox

_logger = logging.getLogger("reconciliation.sweep")
_PENDING = ProvisioningState.PENDING_RECONCILIATION.value
_MAX_PER_HUB = 1000


@dataclass
class SweepResult:
    disabled: list[str] = field(default_factory=list)
    reconciled_meanwhile: list[str] = field(default_factory=list)
    failed_hubs: list[str] = field(default_factory=list)


def overdue_query(cutoff: datetime) -> str:
    """Fallback devices admitted before `cutoff` that are still pending."""
    # Both values are ours (an enum and a formatted timestamp): nothing here is caller input.
    since = format_twin_timestamp(cutoff)
    where = f"tags.provisioningState = '{_PENDING}' AND tags.pendingSince < '{since}'"
    return "SELECT * FROM devices WHERE " + where  # noqa: S608


class PendingSweep:
    def __init__(
        self,
        *,
        hubs: IotHubRegistry,
        hub_names: Sequence[str],
        policy: Policy,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._hubs = hubs
        self._hub_names = list(hub_names)
        self._deadline = timedelta(hours=policy.outage.reconciliation_deadline_hours)
        self._outbox = outbox
        self._clock = clock

    async def run(self, *, request_id: str) -> SweepResult:
        """One pass over every configured hub; a hub that fails is reported, the rest go on."""
        now = self._clock()
        result = SweepResult()
        for hub in self._hub_names:
            try:
                twins = await self._hubs.query_twins(
                    hub, overdue_query(now - self._deadline), limit=_MAX_PER_HUB
                )
                for twin in twins:
                    await self._lapse(hub, twin.device_id, now, request_id, result)
            except IotHubError as error:
                _logger.warning(
                    "pending sweep skipped a hub; the next run tries again",
                    extra={"hub": hub, "reason": type(error).__name__, "requestId": request_id},
                )
                result.failed_hubs.append(hub)
        _logger.info(
            "pending sweep done",
            extra={
                "requestId": request_id,
                "disabled": len(result.disabled),
                "reconciledMeanwhile": len(result.reconciled_meanwhile),
                "failedHubs": len(result.failed_hubs),
            },
        )
        return result

    async def _lapse(
        self, hub: str, device_id: str, now: datetime, request_id: str, result: SweepResult
    ) -> None:
        log = DeviceLog(
            _logger, request_id=request_id, registration_id=device_id, device_id=device_id
        )
        try:
            twin = await self._hubs.get_twin(hub, device_id)
        except DeviceNotFound:
            return
        if not _still_pending(twin):
            result.reconciled_meanwhile.append(device_id)
            return
        await self._hubs.disable_device(hub, device_id)
        while True:
            try:
                await self._hubs.update_twin(
                    hub,
                    device_id,
                    TwinPatch(tags={"provisioningState": ProvisioningState.OVERDUE.value}),
                    etag=twin.etag,
                )
                break
            except TwinPreconditionFailed:
                twin = await self._hubs.get_twin(hub, device_id)
                if not _still_pending(twin):
                    # Reconciled between our read and the disable: it keeps its place.
                    await self._hubs.enable_device(hub, device_id)
                    result.reconciled_meanwhile.append(device_id)
                    return
        since = str(twin.tags.get("pendingSince"))[:40]
        log.warning("fallback device overdue for reconciliation; disabled", hub=hub, since=since)
        await self._outbox.send(_lapsed_emission(hub, device_id, since, request_id))
        result.disabled.append(device_id)


def _still_pending(twin: Twin) -> bool:
    return twin.tags.get("provisioningState") == _PENDING


def _lapsed_emission(hub: str, device_id: str, since: str, request_id: str) -> Emission:
    reason = "reconciliation overdue"
    detail = (
        f"pending reconciliation since {since}, past the policy's "
        "outage.reconciliation_deadline_hours; disabled until reconciliation succeeds"
    )
    return Emission(
        dead_letters=(
            DeadLetter(
                source="reconciliation",
                kind="allocation",
                reason=reason,
                detail=detail,
                registration_id=device_id,
                device_id=device_id,
                hub=hub,
                request_id=request_id,
                request={"pendingSince": since},
                # Replaying the device's own reconciliation message (or its dead letter) is
                # what re-enables it; this letter only records the decision.
                replayable=False,
            ),
        ),
        audit=(
            AuditEntry(
                action="device.disabled",
                actor="pending-sweep",
                outcome=reason,
                registration_id=device_id,
                device_id=device_id,
                hub=hub,
                request_id=request_id,
                details={"pendingSince": since, "detail": detail},
            ),
        ),
    )
