"""In-memory fakes of our own ports, for unit tests of the services."""

from __future__ import annotations

from asset_client import Asset, AssetConflict, AssetNotFound, AssetStatus, DeviceLink


class FakeAssetRepository:
    """Behaves like the asset API's link rules, enough for the allocation service."""

    def __init__(self, *assets: Asset) -> None:
        self.assets = {asset.asset_id: asset for asset in assets}
        self.links: list[tuple[str, DeviceLink]] = []
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
        if asset.device_id not in (None, link.device_id):
            raise AssetConflict(f"asset {asset_id} is linked to {asset.device_id}")
        self.links.append((asset_id, link))
        linked = asset.model_copy(
            update={
                "device_id": link.device_id,
                "provisioning_status": "provisioned",
                "status": AssetStatus.ACTIVE,
                "version": asset.version + 1,
            }
        )
        self.assets[asset_id] = linked
        return linked

    async def aclose(self) -> None:
        self.closed = True


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
