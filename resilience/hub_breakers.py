"""A circuit breaker per IoT hub: a hub that keeps failing is not called until it may be back.

Only HubUnavailable (transport errors, timeouts, 5xx) counts as a failure; a 404, 412, 429 or
401 is an answer, and a cancelled caller is no verdict on the hub. While a hub's circuit is
open its calls fail at once with HubUnavailable, which every caller already treats as
transient (the event or message is retried later), and the other hubs are unaffected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from iothub_client import (
    DeviceRecord,
    HubNames,
    HubUnavailable,
    IotHubRegistry,
    Twin,
    TwinPatch,
)
from resilience.breaker import Breaker, BreakerMetrics, BreakerOpen

T = TypeVar("T")


def is_hub_outage(error: BaseException) -> bool:
    return isinstance(error, HubUnavailable)


class BreakerGuardedIotHubRegistry:
    """Wraps any IotHubRegistry with one Breaker per configured hub; other hubs: UnknownHub."""

    def __init__(
        self,
        inner: IotHubRegistry,
        *,
        hubs: Iterable[str],
        fail_max: int = 5,
        reset_timeout_seconds: float = 30.0,
        metrics: BreakerMetrics | None = None,
    ) -> None:
        self._inner = inner
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout_seconds
        self.metrics = metrics or BreakerMetrics()
        self._hubs = HubNames(hubs)
        self._breakers: dict[str, Breaker] = {}

    def breaker(self, hub: str) -> Breaker:
        key = self._hubs.key(hub)
        if key not in self._breakers:
            self._breakers[key] = Breaker(
                f"iot-hub:{key}",
                is_failure=is_hub_outage,
                fail_max=self._fail_max,
                reset_timeout_seconds=self._reset_timeout,
                metrics=self.metrics,
            )
        return self._breakers[key]

    def breakers(self) -> list[Breaker]:
        """Every configured hub's breaker, by hub name; one never called yet is made (closed)."""
        return [self.breaker(hub) for hub in self._hubs]

    async def _guarded(self, hub: str, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self.breaker(hub).call(operation)
        except BreakerOpen as open_circuit:
            raise HubUnavailable(
                f"{hub}: circuit open after repeated failures; not calling it"
                f" (next trial within {open_circuit.retry_after:.0f} s)"
            ) from None

    async def get_twin(self, hub: str, device_id: str) -> Twin:
        return await self._guarded(hub, lambda: self._inner.get_twin(hub, device_id))

    async def update_twin(
        self, hub: str, device_id: str, patch: TwinPatch, *, etag: str | None
    ) -> Twin:
        return await self._guarded(
            hub, lambda: self._inner.update_twin(hub, device_id, patch, etag=etag)
        )

    async def get_device(self, hub: str, device_id: str) -> DeviceRecord:
        return await self._guarded(hub, lambda: self._inner.get_device(hub, device_id))

    async def disable_device(self, hub: str, device_id: str) -> DeviceRecord:
        return await self._guarded(hub, lambda: self._inner.disable_device(hub, device_id))

    async def enable_device(self, hub: str, device_id: str) -> DeviceRecord:
        return await self._guarded(hub, lambda: self._inner.enable_device(hub, device_id))

    async def delete_device(self, hub: str, device_id: str, *, etag: str | None = None) -> None:
        await self._guarded(hub, lambda: self._inner.delete_device(hub, device_id, etag=etag))

    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> list[Twin]:
        return await self._guarded(hub, lambda: self._inner.query_twins(hub, query, limit=limit))
