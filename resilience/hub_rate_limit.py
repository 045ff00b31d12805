"""Stay under each hub's throttles, and treat a 429 as backpressure.

IoT Hub S1 allows 50 twin updates/s per hub (S3: 250/s/unit); every writer of a hub shares
that quota, DPS included. A token bucket per hub keeps our writes under the configured rate;
a 429 pauses that hub's bucket for everyone for its Retry-After, then the write is retried
until a deadline. Identity-registry writes and queries have their own, much smaller quotas
(S1: 100 registry operations and 20 queries a minute per unit), each with its own bucket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from iothub_client import (
    DeviceRecord,
    HubNames,
    HubThrottled,
    IotHubRegistry,
    Twin,
    TwinPatch,
)

T = TypeVar("T")


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a token; callers are served in arrival order."""
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._updated) * self._rate
                )
                self._updated = now
                wait = max(self._not_before - now, (1 - self._tokens) / self._rate)
                # A microsecond of float dust must not turn into a sleep that moves no clock.
                if wait <= 1e-6:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """The hub said 429: nobody writes to it until Retry-After has passed."""
        self._not_before = max(self._not_before, self._clock() + seconds)
        self._tokens = min(self._tokens, 0.0)


class RateLimitedIotHubRegistry:
    """Wraps any IotHubRegistry; twin updates and registry writes spend their hub's quotas.

    Buckets exist only for configured hubs: a call for any other hub raises UnknownHub.
    """

    def __init__(
        self,
        inner: IotHubRegistry,
        *,
        hubs: Iterable[str],
        twin_updates_per_second: float,
        registry_ops_per_minute: float = 90.0,
        queries_per_minute: float = 15.0,
        max_wait_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._hubs = HubNames(hubs)
        self._rate = twin_updates_per_second
        self._registry_rate = registry_ops_per_minute / 60.0
        self._registry_buckets: dict[str, TokenBucket] = {}
        self._query_rate = queries_per_minute / 60.0
        self._query_buckets: dict[str, TokenBucket] = {}
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def inner(self) -> IotHubRegistry:
        """The registry it wraps (the composition root looks through it for the breakers)."""
        return self._inner

    def bucket(self, hub: str) -> TokenBucket:
        key = self._hubs.key(hub)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(self._rate, clock=self._clock, sleep=self._sleep)
        return self._buckets[key]

    async def update_twin(
        self, hub: str, device_id: str, patch: TwinPatch, *, etag: str | None
    ) -> Twin:
        return await self._with_backpressure(
            self.bucket(hub), lambda: self._inner.update_twin(hub, device_id, patch, etag=etag)
        )

    async def _with_backpressure(
        self, bucket: TokenBucket, operation: Callable[[], Awaitable[T]]
    ) -> T:
        """Take a token per attempt; a 429 pauses the bucket, then retry until the deadline."""
        deadline = self._clock() + self._max_wait
        while True:
            await bucket.acquire()
            try:
                return await operation()
            except HubThrottled as throttled:
                pause = throttled.retry_after if throttled.retry_after is not None else 1.0
                if self._clock() + pause > deadline:
                    raise
                bucket.pause(pause)

    async def get_twin(self, hub: str, device_id: str) -> Twin:
        self._hubs.key(hub)
        return await self._inner.get_twin(hub, device_id)

    async def get_device(self, hub: str, device_id: str) -> DeviceRecord:
        self._hubs.key(hub)
        return await self._inner.get_device(hub, device_id)

    def registry_bucket(self, hub: str) -> TokenBucket:
        """Identity-registry writes have their own, much smaller quota (S1: 100/min/unit)."""
        key = self._hubs.key(hub)
        if key not in self._registry_buckets:
            self._registry_buckets[key] = TokenBucket(
                self._registry_rate, burst=5, clock=self._clock, sleep=self._sleep
            )
        return self._registry_buckets[key]

    async def disable_device(self, hub: str, device_id: str) -> DeviceRecord:
        await self.registry_bucket(hub).acquire()
        return await self._inner.disable_device(hub, device_id)

    async def enable_device(self, hub: str, device_id: str) -> DeviceRecord:
        await self.registry_bucket(hub).acquire()
        return await self._inner.enable_device(hub, device_id)

    async def delete_device(self, hub: str, device_id: str, *, etag: str | None = None) -> None:
        await self.registry_bucket(hub).acquire()
        await self._inner.delete_device(hub, device_id, etag=etag)

    def query_bucket(self, hub: str) -> TokenBucket:
        """Queries have their own quota, shared with every other client of the hub.

        One token per call: a call reads up to 1000 twins, which IoT Hub serves as one page.
        """
        key = self._hubs.key(hub)
        if key not in self._query_buckets:
            self._query_buckets[key] = TokenBucket(
                self._query_rate, burst=3, clock=self._clock, sleep=self._sleep
            )
        return self._query_buckets[key]

    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> list[Twin]:
        return await self._with_backpressure(
            self.query_bucket(hub), lambda: self._inner.query_twins(hub, query, limit=limit)
        )
