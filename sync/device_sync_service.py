"""Twin -> asset: for a batch of twin-change notifications, copy device-owned values to assets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import trace

from asset_client import Asset, AssetError, AssetRepository, AssetVersionConflict
from messages.emission import Emission
from observability import DeviceLog
from observability import trace_attributes as attr
from policies import Policy
from resilience.optimistic_update import optimistic_update
from resilience.outbox import Outbox
from roles import RoleAssignment, assign_role
from sync.audit_entries import asset_written_entry, refusal_entries
from sync.errors import SyncConflict
from sync.events import RawTwinEvent, TwinChange, twin_change_message
from sync.twin_to_asset import AssetPlan, is_own_echo, plan_asset_update

_logger = logging.getLogger("sync.twin_to_asset")
_tracer = trace.get_tracer("sync")
DeviceResult = Literal["echo", "no device-owned change", "unknown device", "unchanged", "written"]


@dataclass
class BatchOutcome:
    results: dict[str, int] = field(default_factory=dict)
    recorded: int = 0

    def count(self, result: str, n: int = 1) -> None:
        self.results[result] = self.results.get(result, 0) + n


class TwinToAssetSync:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        policy: Policy,
        outbox: Outbox,
        max_attempts: int = 5,
        concurrency: int = 16,
    ) -> None:
        self._assets = assets
        self._policy = policy
        self._outbox = outbox
        self._max_attempts = max_attempts
        self._gate = asyncio.Semaphore(concurrency)

    @property
    def outbox(self) -> Outbox:
        """Where this flow sends what it could not finish (and what it will never finish)."""
        return self._outbox

    async def apply_batch(
        self, changes: Sequence[tuple[RawTwinEvent, TwinChange]], request_id: str
    ) -> BatchOutcome:
        """Parsed changes, each with the event it came from (recorded if it fails).

        Events of one device are merged in order into one change (one asset write at most);
        devices run concurrently. A device's failure goes to the reconciliation queue; only a
        failure to record it propagates.
        """
        outcome = BatchOutcome()
        by_device: dict[str, list[tuple[RawTwinEvent, TwinChange]]] = {}
        for raw, change in changes:
            by_device.setdefault(change.device_id, []).append((raw, change))

        async def device(device_id: str, items: list[tuple[RawTwinEvent, TwinChange]]) -> None:
            with _tracer.start_as_current_span(
                attr.TWIN_CHANGE_SPAN, record_exception=False, set_status_on_exception=False
            ) as span:
                log = DeviceLog(
                    _logger, request_id=request_id, registration_id=device_id, device_id=device_id
                )
                result = await device_changes(items, log)
                span.set_attribute(attr.SYNC_RESULT, result)

        async def device_changes(
            items: list[tuple[RawTwinEvent, TwinChange]], log: DeviceLog
        ) -> str:
            echoes = sum(1 for _, change in items if is_own_echo(change))
            outcome.count("echo", echoes)
            merged = _merge([change for _, change in items if not is_own_echo(change)])
            if merged is None:
                return "echo"
            try:
                async with self._gate:
                    result = await self._apply(merged, log)
                outcome.count(result)
                return result
            except (AssetError, SyncConflict) as error:
                await self._record(
                    items[-1][0], merged, type(error).__name__, str(error), request_id, False
                )
                outcome.recorded += 1
                log.warning("twin change recorded for reconciliation", reason=type(error).__name__)
                return "deferred"

        await asyncio.gather(*(device(d, items) for d, items in by_device.items()))
        _logger.info("twin change batch", extra={"requestId": request_id, **outcome.results})
        return outcome

    async def apply(self, change: TwinChange, log: DeviceLog) -> DeviceResult:
        """One change, failures raised (for reconciliation, which has its own retries)."""
        if is_own_echo(change):
            return "echo"
        async with self._gate:
            return await self._apply(change, log)

    async def _apply(self, change: TwinChange, log: DeviceLog) -> DeviceResult:
        if not change.reported:
            return "no device-owned change"
        matches = await self._assets.find_by_device_id(change.device_id)
        if not matches:
            log.info("twin change for a device no asset knows", hub=change.hub_name)
            return "unknown device"
        if len(matches) > 1:
            raise SyncConflict(f"{len(matches)} assets claim device {change.device_id}")
        asset: Asset = matches[0]
        log = log.bind(assetId=asset.asset_id)

        def plan(current: Asset) -> tuple[RoleAssignment, AssetPlan]:
            role = assign_role(
                current.asset_type, self._policy.role_rules, self._policy.default_role
            )
            return role, plan_asset_update(change, current, role.permissions)

        async def write(current: Asset, planned: tuple[RoleAssignment, AssetPlan]) -> None:
            assert planned[1].patch is not None
            await self._assets.patch_asset(
                current.asset_id, planned[1].patch, if_match=current.version
            )

        async def reread(current: Asset) -> Asset:
            return await self._assets.get_asset(current.asset_id)

        settled = await optimistic_update(
            asset,
            plan=plan,
            needs_write=lambda planned: planned[1].patch is not None,
            write=write,
            reread=reread,
            stale=AssetVersionConflict,
            attempts=self._max_attempts,
            give_up=lambda: SyncConflict(
                f"asset {asset.asset_id} kept changing under {self._max_attempts} tries"
            ),
        )
        asset, (role, planned) = settled.state, settled.plan
        # Only the plan that stood is reported: a re-read asset may have changed the role.
        await self._report_refusals(change, asset, planned, role.role.value, log)
        if not settled.written:
            return "unchanged"
        log.info("asset updated from twin", copied=",".join(planned.copied), hub=change.hub_name)
        await self._outbox.send(
            Emission.of_audit([asset_written_entry(change, asset.asset_id, planned, log)])
        )
        return "written"

    async def _report_refusals(
        self, change: TwinChange, asset: Asset, plan: AssetPlan, role: str, log: DeviceLog
    ) -> None:
        for name, action in plan.refused:
            log.warning(
                "device reported a field its role does not allow",
                audit="reportRefused",
                field=name,
                action=action,
                role=role,
            )
        for item in plan.invalid:
            log.warning(
                "device reported a value its field's constraint refuses",
                audit="reportInvalid",
                field=item.field,
                rule=item.rule,
                violation=item.violation,
            )
        if plan.serial_mismatch:
            log.warning(
                "device reports another serial number than its asset", audit="serialMismatch"
            )
        entries = refusal_entries(change, asset.asset_id, plan, role, log.fields.get("requestId"))
        await self._outbox.send(Emission.of_audit(entries))

    async def _record(
        self,
        raw: RawTwinEvent,
        change: TwinChange,
        reason: str,
        detail: str,
        request_id: str,
        permanent: bool,
    ) -> None:
        message = twin_change_message(raw, change, reason, detail, request_id, permanent=permanent)
        await self._outbox.send(Emission.deferred(message))


def _merge(changes: list[TwinChange]) -> TwinChange | None:
    """Later reported values win, as they would on the twin itself."""
    if not changes:
        return None
    reported: dict[str, object] = {}
    any_reported = False
    for change in changes:
        if change.reported is not None:
            any_reported = True
            reported.update(change.reported)
    last = changes[-1]
    return TwinChange(
        hub_name=last.hub_name,
        device_id=last.device_id,
        op_type=last.op_type,
        version=last.version,
        tags=last.tags,
        desired=last.desired,
        reported=reported if any_reported else None,
        sequence_number=last.sequence_number,
    )
