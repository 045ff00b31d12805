"""Asset -> twin: for an asset-change event, bring the device's twin up to the asset."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from allocation.errors import NoHubForDevice
from allocation.hub_selection import select_hub
from asset_client import Asset, AssetNotFound, AssetRepository
from iothub_client import DeviceNotFound, IotHubRegistry, Twin, TwinPreconditionFailed
from messages.emission import Emission
from observability import DeviceLog
from policies import Policy
from resilience.optimistic_update import optimistic_update
from resilience.outbox import Outbox
from sync.asset_to_twin import TwinPlan, TwinPlanner
from sync.audit_entries import twin_written_entry
from sync.coalescing import Coalescer
from sync.errors import DeviceNotOnAnyHub, SyncConflict
from sync.events import AssetEvent

_logger = logging.getLogger("sync.asset_to_twin")


@dataclass(frozen=True)
class AssetSyncOutcome:
    result: Literal["written", "unchanged", "not provisioned", "asset gone"]
    detail: str
    hub: str | None = None
    device_id: str | None = None


class AssetToTwinSync:
    def __init__(
        self,
        *,
        assets: AssetRepository,
        hubs: IotHubRegistry,
        hub_names: Sequence[str],
        policy: Policy,
        asset_api_public_url: str,
        outbox: Outbox,
        max_attempts: int = 5,
    ) -> None:
        self._outbox = outbox
        self._assets = assets
        self._hubs = hubs
        self.planner = TwinPlanner(policy, asset_api_public_url, tuple(hub_names))
        """Shared with reconciliation, which writes twins from assets too."""
        self._hub_names = list(hub_names)
        self._policy = policy
        self._max_attempts = max_attempts
        self._coalescer: Coalescer[AssetSyncOutcome] = Coalescer()
        self._device_hub: OrderedDict[str, str] = OrderedDict()

    async def handle(self, event: AssetEvent, log: DeviceLog) -> AssetSyncOutcome:
        """Concurrent events for one asset coalesce: each is answered by a run that began later."""
        log = log.bind(assetId=event.asset_id)
        return await self._coalescer.run(event.asset_id, lambda: self._sync(event.asset_id, log))

    async def _sync(self, asset_id: str, log: DeviceLog) -> AssetSyncOutcome:
        try:
            asset = await self._assets.get_asset(asset_id)
        except AssetNotFound:
            log.info("asset sync skipped", result="asset gone")
            return AssetSyncOutcome("asset gone", f"asset {asset_id} no longer exists")
        if asset.device_id is None:
            return AssetSyncOutcome("not provisioned", f"asset {asset_id} has no device yet")
        device_id = asset.device_id
        log = log.bind(deviceId=device_id, registrationId=device_id)
        hub, twin = await self._locate(asset)

        def plan(state: tuple[Twin, Asset]) -> TwinPlan:
            return self.planner.plan(state[0], state[1], hub)

        async def write(state: tuple[Twin, Asset], planned: TwinPlan) -> None:
            assert planned.patch is not None
            await self._hubs.update_twin(hub, device_id, planned.patch, etag=state[0].etag)

        async def reread(state: tuple[Twin, Asset]) -> tuple[Twin, Asset]:
            # Someone wrote the twin since we read it: read both sides again and re-plan.
            return await self._hubs.get_twin(hub, device_id), await self._assets.get_asset(asset_id)

        settled = await optimistic_update(
            (twin, asset),
            plan=plan,
            needs_write=lambda planned: planned.patch is not None,
            write=write,
            reread=reread,
            stale=TwinPreconditionFailed,
            attempts=self._max_attempts,
            give_up=lambda: SyncConflict(
                f"twin of {device_id} kept changing: {self._max_attempts} attempts lost on etag"
            ),
        )
        asset, planned = settled.state[1], settled.plan
        if not settled.written:
            log.info("twin up to date", hub=hub, assetVersion=asset.version, why=planned.reason)
            return AssetSyncOutcome("unchanged", planned.reason, hub, device_id)
        log.info(
            "twin updated from asset",
            hub=hub,
            assetVersion=asset.version,
            changed=",".join(planned.changed),
        )
        await self._outbox.send(
            Emission.of_audit([twin_written_entry(asset, device_id, hub, planned, log)])
        )
        if planned.reprovision is not None:
            log.warning(
                "device flagged for re-provisioning",
                audit="reprovisionRequested",
                hub=hub,
                targetHub=planned.reprovision.target_hub,
                reason=planned.reprovision.reason,
            )
        return AssetSyncOutcome("written", planned.reason, hub, device_id)

    async def _locate(self, asset: Asset) -> tuple[str, Twin]:
        """Where the device lives: last known hub, then the location's hub, then every hub."""
        device_id = asset.device_id
        assert device_id is not None
        for hub in self._candidate_hubs(asset):
            try:
                twin = await self._hubs.get_twin(hub, device_id)
            except DeviceNotFound:
                continue
            self._remember(device_id, hub)
            return hub, twin
        raise DeviceNotOnAnyHub(
            f"device {device_id} of asset {asset.asset_id} is on no hub yet", device_id
        )

    def _candidate_hubs(self, asset: Asset) -> list[str]:
        ordered: list[str] = []
        known = self._device_hub.get(asset.device_id or "")
        if known:
            ordered.append(known)
        try:
            choice = select_hub(
                location=asset.location,
                linked_hubs=self._hub_names,
                rules=self._policy.hub_rules,
                fallback=self._policy.hub_fallback,
                registration_id=asset.device_id or "",
                current_hub=None,
            )
            ordered.append(choice.hub)
        except NoHubForDevice:
            pass
        ordered += self._hub_names
        return list(dict.fromkeys(ordered))

    def _remember(self, device_id: str, hub: str) -> None:
        self._device_hub[device_id] = hub
        self._device_hub.move_to_end(device_id)
        while len(self._device_hub) > 100_000:
            self._device_hub.popitem(last=False)
