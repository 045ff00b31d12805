"""Circuit breakers per dependency (pybreaker), usable around awaits, with one half-open trial.

pybreaker's `calling()` context manager works inside async code (its lock is not held across
the await); `breaker.call(async_fn)` does not (it counts creating the coroutine as success).
Half-open in pybreaker lets every concurrent caller through, so a gate admits one trial and
fails the rest fast until it resolves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pybreaker

T = TypeVar("T")
_logger = logging.getLogger("resilience.breaker")


class BreakerOpen(Exception):
    """The dependency is considered down: the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name} is open; not calling it")
        self.name = name
        self.retry_after = retry_after


class BreakerMetrics:
    """State transitions and fast rejections per breaker, for dashboards and tests."""

    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: BreakerMetrics) -> None:
        self._metrics = metrics

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", str(old_state))
        new = getattr(new_state, "name", str(new_state))
        self._metrics.transitions[(cb.name or "?", new)] += 1
        log = _logger.warning if new == "open" else _logger.info
        log("circuit breaker state change", extra={"breaker": cb.name, "from": old, "to": new})


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        is_failure: Callable[[BaseException], bool],
        fail_max: int = 5,
        reset_timeout_seconds: float = 30.0,
        metrics: BreakerMetrics | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics or BreakerMetrics()
        self._reset_timeout = reset_timeout_seconds
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_seconds,
            # Not a failure (a 4xx answer, a cancelled caller) counts as a success for pybreaker.
            exclude=[lambda error: not is_failure(error)],
            listeners=[_Listener(self.metrics)],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        trial = False
        if self.state != "closed":
            if self._trial_in_flight:
                raise self._rejection()
            self._trial_in_flight = trial = True
        try:
            with self._breaker.calling():
                return await operation()
        except pybreaker.CircuitBreakerError:
            raise self._rejection() from None
        finally:
            if trial:
                self._trial_in_flight = False

    def _rejection(self) -> BreakerOpen:
        self.metrics.rejected[self.name] += 1
        return BreakerOpen(self.name, self._reset_timeout)


def is_cancellation(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError)
