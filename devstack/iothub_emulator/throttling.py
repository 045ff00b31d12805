"""Token buckets standing in for IoT Hub's per-hub operation quotas."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` operations per `period` seconds, with a burst of one full period."""

    def __init__(
        self, rate: float, period: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or period <= 0:
            raise ValueError("rate and period must be positive")
        self._per_second = rate / period
        self._capacity = float(rate)
        self._tokens = float(rate)
        self._clock = clock
        self._updated = clock()

    def take(self) -> float:
        """Spend one token and return 0, or return the seconds until one will be there."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._per_second


def bucket_or_none(rate: float, period: float) -> TokenBucket | None:
    """No bucket at all when the limit is 0 (throttling off)."""
    return TokenBucket(rate, period) if rate > 0 else None
