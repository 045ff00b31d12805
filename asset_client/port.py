"""The port the services depend on. The aiohttp adapter implements it; tests use fakes.

Retries and the circuit breaker wrap this port (a decorator implementing it), so neither the
adapter nor the services change when resilience arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from asset_client.models import Asset, DeviceLink


class AssetRepository(Protocol):
    async def get_asset(self, asset_id: str) -> Asset: ...

    async def find_by_device_id(self, device_id: str) -> list[Asset]: ...

    async def find_by_serial_number(self, serial_number: str) -> list[Asset]: ...

    async def link_device(self, asset_id: str, link: DeviceLink) -> Asset: ...

    async def patch_asset(
        self, asset_id: str, patch: Mapping[str, Any], *, if_match: int
    ) -> Asset: ...

    async def aclose(self) -> None: ...
