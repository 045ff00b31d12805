"""The port services depend on; SdkIotHubRegistry implements it, unit tests use fakes."""

from __future__ import annotations

from typing import Protocol

from iothub_client.models import DeviceRecord, Twin, TwinPatch


class IotHubRegistry(Protocol):
    async def get_twin(self, hub: str, device_id: str) -> Twin: ...

    async def update_twin(
        self, hub: str, device_id: str, patch: TwinPatch, *, etag: str | None
    ) -> Twin: ...

    async def get_device(self, hub: str, device_id: str) -> DeviceRecord: ...

    async def disable_device(self, hub: str, device_id: str) -> DeviceRecord: ...

    async def enable_device(self, hub: str, device_id: str) -> DeviceRecord: ...

    async def delete_device(self, hub: str, device_id: str, *, etag: str | None = None) -> None: ...

    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> list[Twin]:
        """Twins matching an IoT Hub query (`SELECT * FROM devices WHERE ...`), at most `limit`."""
        ...
