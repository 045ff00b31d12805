"""In-memory fakes of our own ports, for unit tests of the services."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

from asset_client import (
    Asset,
    AssetConflict,
    AssetNotFound,
    AssetStatus,
    AssetVersionConflict,
    DeviceLink,
)
from devstack.iothub_emulator.query import QuerySyntaxError, parse_query
from iothub_client import (
    DeviceNotFound,
    DeviceRecord,
    HubRequestRejected,
    Twin,
    TwinPatch,
    TwinPreconditionFailed,
)


class FakeAssetRepository:
    """Behaves like the asset API's link rules, enough for the allocation service."""

    def __init__(self, *assets: Asset) -> None:
        self.assets = {asset.asset_id: asset for asset in assets}
        self.links: list[tuple[str, DeviceLink]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[str] = []
        self.closed = False

    async def get_asset(self, asset_id: str) -> Asset:
        self.calls.append("get_asset")
        try:
            return self.assets[asset_id]
        except KeyError:
            raise AssetNotFound(asset_id) from None

    async def find_by_device_id(self, device_id: str) -> list[Asset]:
        self.calls.append("find_by_device_id")
        return [a for a in self.assets.values() if a.device_id == device_id]

    async def find_by_serial_number(self, serial_number: str) -> list[Asset]:
        self.calls.append("find_by_serial_number")
        return [a for a in self.assets.values() if a.serial_number == serial_number]

    async def link_device(self, asset_id: str, link: DeviceLink) -> Asset:
        self.calls.append("link_device")
        asset = await self.get_asset(asset_id)
        replacing = (
            asset.device_id is not None
            and link.replacement_for == asset.device_id
            and asset.status == AssetStatus.PENDING_REPLACEMENT
        )
        if asset.device_id not in (None, link.device_id) and not replacing:
            raise AssetConflict(f"asset {asset_id} is linked to {asset.device_id}")
        self.links.append((asset_id, link))
        linked = asset.model_copy(
            update={
                "device_id": link.device_id,
                "provisioning_status": "provisioned",
                "status": AssetStatus.ACTIVE,
                "replacement": None,
                "version": asset.version + 1,
            }
        )
        self.assets[asset_id] = linked
        return linked

    async def patch_asset(self, asset_id: str, patch: Mapping[str, Any], *, if_match: int) -> Asset:
        self.calls.append("patch_asset")
        asset = await self.get_asset(asset_id)
        await asyncio.sleep(0)
        if asset.version != if_match:
            raise AssetVersionConflict(f"{asset_id} is at version {asset.version}")
        document = asset.model_dump(by_alias=True)
        merge_patch(document, dict(patch))
        document["version"] = asset.version + 1
        updated = Asset.model_validate(document)
        self.assets[asset_id] = updated
        self.patches.append((asset_id, dict(patch)))
        return updated

    def update(self, asset_id: str, **changes: Any) -> Asset:
        """The asset system changing on its own (an operator, another integration)."""
        asset = self.assets[asset_id]
        updated = asset.model_copy(update={**changes, "version": asset.version + 1})
        self.assets[asset_id] = updated
        return updated

    async def aclose(self) -> None:
        self.closed = True


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7396 in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeIotHubRegistry:
    """Twins with versions and etags, enough for the sync services; counts every write."""

    def __init__(self) -> None:
        self.twins: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, TwinPatch]] = []
        self.disabled: set[tuple[str, str]] = set()

    def add_device(
        self,
        hub: str,
        device_id: str,
        tags: dict[str, Any] | None = None,
        desired: dict[str, Any] | None = None,
    ) -> None:
        self.twins[(hub, device_id)] = {
            "tags": copy.deepcopy(tags or {}),
            "desired": copy.deepcopy(desired or {}),
            "reported": {},
            "version": 1,
        }

    def _state(self, hub: str, device_id: str) -> dict[str, Any]:
        try:
            return self.twins[(hub, device_id)]
        except KeyError:
            raise DeviceNotFound(f"{hub}: {device_id}") from None

    def _twin(self, hub: str, device_id: str) -> Twin:
        state = self._state(hub, device_id)
        return Twin(
            hub=hub,
            device_id=device_id,
            etag=f"etag-{state['version']}",
            version=state["version"],
            status="disabled" if (hub, device_id) in self.disabled else "enabled",
            tags=copy.deepcopy(state["tags"]),
            desired=copy.deepcopy(state["desired"]),
            reported=copy.deepcopy(state["reported"]),
        )

    async def get_twin(self, hub: str, device_id: str) -> Twin:
        await asyncio.sleep(0)
        return self._twin(hub, device_id)

    async def update_twin(
        self, hub: str, device_id: str, patch: TwinPatch, *, etag: str | None
    ) -> Twin:
        await asyncio.sleep(0)
        state = self._state(hub, device_id)
        if etag is not None and etag != f"etag-{state['version']}":
            raise TwinPreconditionFailed(f"{device_id}: stale etag")
        merge_patch(state["tags"], patch.tags or {})
        merge_patch(state["desired"], patch.desired or {})
        state["version"] += 1
        self.writes.append((hub, device_id, patch))
        return self._twin(hub, device_id)

    async def get_device(self, hub: str, device_id: str) -> DeviceRecord:
        self._state(hub, device_id)
        status = "disabled" if (hub, device_id) in self.disabled else "enabled"
        return DeviceRecord(hub, device_id, "e", status, "certificateAuthority", "g")

    async def disable_device(self, hub: str, device_id: str) -> DeviceRecord:
        self.disabled.add((hub, device_id))
        return await self.get_device(hub, device_id)

    async def enable_device(self, hub: str, device_id: str) -> DeviceRecord:
        self._state(hub, device_id)
        self.disabled.discard((hub, device_id))
        return await self.get_device(hub, device_id)

    async def delete_device(self, hub: str, device_id: str, *, etag: str | None = None) -> None:
        self._state(hub, device_id)
        del self.twins[(hub, device_id)]

    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> list[Twin]:
        """Filtered by the IoT Hub emulator's own parser, so fake and emulator agree."""
        await asyncio.sleep(0)
        try:
            parsed = parse_query(query)
        except QuerySyntaxError:
            raise HubRequestRejected(f"{hub}: query twins answered 400 (BadRequest)", 400) from None
        twins = [self._twin(h, device_id) for h, device_id in sorted(self.twins) if h == hub]
        return [twin for twin in twins if parsed.matches(_twin_document(twin))][:limit]


def _twin_document(twin: Twin) -> dict[str, Any]:
    """The fields of a twin as IoT Hub's query language sees them."""
    return {
        "deviceId": twin.device_id,
        "etag": twin.etag,
        "version": twin.version,
        "status": twin.status,
        "tags": twin.tags,
        "properties": {"desired": twin.desired, "reported": twin.reported},
    }


def make_asset(
    asset_id: str = "AST-1001",
    *,
    serial: str = "SN-1001",
    asset_type: str = "temperature-sensor",
    location: str = "us-east/plant-1/line-1",
    status: str = "planned",
    device_id: str | None = None,
    provisioning_status: str = "notProvisioned",
) -> Asset:
    return Asset.model_validate(
        {
            "assetId": asset_id,
            "serialNumber": serial,
            "assetType": asset_type,
            "location": location,
            "status": status,
            "deviceId": device_id,
            "provisioningStatus": provisioning_status,
            "attributes": {},
            "version": 1,
        }
    )
