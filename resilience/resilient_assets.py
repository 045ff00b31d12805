"""The asset port with retries and a circuit breaker around every call (a decorator).

Transient failures (transport errors, timeouts, 429, 502, 503, 504) are retried within the
request's budget; any other 4xx is final at once. Only outages count toward the breaker:
transport errors, the asset system's own timeouts, 429 and 5xx. Other 4xx answers and answers
that break the contract (a bad record is refused, it is no outage) are answers; cancelled
callers and timeouts set by the request's own budget say nothing about the asset system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from asset_client import (
    Asset,
    AssetCircuitOpen,
    AssetRepository,
    AssetUnavailable,
    DeviceLink,
)
from resilience.breaker import Breaker, BreakerOpen, NoVerdict
from resilience.retry import RetryPolicy, call_with_retries

T = TypeVar("T")
_RETRIED_STATUSES = (None, 429, 502, 503, 504)


class AssetBudgetSpent(AssetUnavailable, NoVerdict):
    """The request's budget ended the attempt before the asset system's own timeout could."""


def is_transient(error: BaseException) -> bool:
    return (
        isinstance(error, AssetUnavailable)
        and not isinstance(error, AssetCircuitOpen)
        and error.status in _RETRIED_STATUSES
    )


def is_outage(error: BaseException) -> bool:
    """What the breaker counts: a transport error, the asset system's timeout, 429 or 5xx."""
    return isinstance(error, AssetUnavailable) and not isinstance(
        error, AssetCircuitOpen | NoVerdict
    )


def _retry_after(error: BaseException) -> float | None:
    return error.retry_after if isinstance(error, AssetUnavailable) else None


class ResilientAssetRepository:
    def __init__(self, inner: AssetRepository, *, policy: RetryPolicy, breaker: Breaker) -> None:
        self._inner = inner
        self._policy = policy
        self.breaker = breaker

    async def get_asset(self, asset_id: str) -> Asset:
        return await self._call("get asset", lambda: self._inner.get_asset(asset_id))

    async def find_by_device_id(self, device_id: str) -> list[Asset]:
        return await self._call("find by device", lambda: self._inner.find_by_device_id(device_id))

    async def find_by_serial_number(self, serial_number: str) -> list[Asset]:
        return await self._call(
            "find by serial", lambda: self._inner.find_by_serial_number(serial_number)
        )

    async def link_device(self, asset_id: str, link: DeviceLink) -> Asset:
        # Idempotent per device id on the asset side, so a retry cannot link twice.
        return await self._call("link device", lambda: self._inner.link_device(asset_id, link))

    async def patch_asset(self, asset_id: str, patch: Mapping[str, Any], *, if_match: int) -> Asset:
        # If-Match makes a repeated patch fail with 412 rather than apply twice.
        return await self._call(
            "patch asset", lambda: self._inner.patch_asset(asset_id, patch, if_match=if_match)
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        async def timed(limit: float) -> T:
            try:
                async with asyncio.timeout(limit):
                    return await operation()
            except TimeoutError as exc:
                message = f"asset API gave no answer within {limit:.2f} s ({what})"
                if limit < self._policy.attempt_timeout_seconds:
                    # The budget left, not the asset system's timeout, cut this attempt short.
                    raise AssetBudgetSpent(f"{message}; the request's budget is spent") from exc
                raise AssetUnavailable(message) from exc

        async def guarded(limit: float) -> T:
            try:
                return await self.breaker.call(lambda: timed(limit))
            except BreakerOpen as open_:
                raise AssetCircuitOpen(
                    f"asset API circuit is open; {what} not attempted",
                    retry_after=open_.retry_after,
                ) from None

        return await call_with_retries(
            guarded,
            policy=self._policy,
            is_transient=is_transient,
            retry_after=_retry_after,
            on_timeout=lambda seconds: AssetBudgetSpent(
                f"asset API: the {seconds:.2f} s budget is spent ({what})"
            ),
            what=f"asset API: {what}",
            dependency=self.breaker.name,
        )
