"""Circuit breakers per dependency (pybreaker), usable around awaits, with one half-open trial.

Every call ends in one of three verdicts on the dependency:
- a failure (what `is_failure` says is an outage): counted; enough in a row open the circuit;
- an answer (a success, or an error the dependency answered, such as a 4xx): the dependency is
  up, so the count of failures starts again and a half-open circuit closes;
- no verdict (a cancelled caller, or an error marked NoVerdict, such as a timeout set by the
  caller's own budget): nothing is recorded, and a half-open circuit waits for another trial.

pybreaker keeps the count and the states, but its `calling()` cannot express "no verdict": it
catches BaseException, so a cancellation is either a failure or, once excluded, a success (which
resets the count and closes a half-open circuit). So admission is decided here, and only
verdicts are handed to pybreaker, as synchronous calls. Half-open in pybreaker lets every
concurrent caller through, so a gate admits one trial and fails the rest fast until it resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import pybreaker

from app_errors import DependencyUnavailable
from observability.resilience_metrics import ResilienceMetrics, global_resilience_metrics

T = TypeVar("T")
_logger = logging.getLogger("resilience.breaker")


class BreakerOpen(DependencyUnavailable):
    """The dependency is considered down: the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name} is open; not calling it")
        self.name = name
        self.retry_after = retry_after


class NoVerdict:
    """Mixed into errors that say nothing about the dependency: the breaker ignores them."""


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


class _StateClock(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self._breaker.state_since = datetime.now(UTC)


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        is_failure: Callable[[BaseException], bool],
        fail_max: int = 5,
        reset_timeout_seconds: float = 30.0,
        metrics: BreakerMetrics | None = None,
        telemetry: ResilienceMetrics | None = None,
    ) -> None:
        """`telemetry`: where the state is reported (the process's OpenTelemetry instruments
        unless given)."""
        self.name = name
        self.metrics = metrics or BreakerMetrics()
        self._is_failure = is_failure
        self._reset_timeout = reset_timeout_seconds
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_seconds,
            listeners=[_Listener(self.metrics)],
            state_storage=self._storage,
            name=name,
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False
        self.state_since: datetime | None = None
        """When the circuit last changed state; None while it has been closed from the start."""
        self._breaker.add_listener(_StateClock(self))
        (telemetry or global_resilience_metrics()).watch(self)

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    @property
    def fail_max(self) -> int:
        """Failures in a row that open the circuit."""
        return self._breaker.fail_max

    @property
    def reset_timeout_seconds(self) -> float:
        """How long the circuit stays open before one trial call is let through."""
        return self._reset_timeout

    @property
    def fail_counter(self) -> int:
        """Failures counted since the last answer (pybreaker's count)."""
        return self._breaker.fail_counter

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        trial = self._admit()
        try:
            result = await operation()
        except BaseException as error:
            if not is_no_verdict(error):
                self._record(_raise_failure if self._is_failure(error) else _answered)
            raise
        else:
            self._record(_answered)
            return result
        finally:
            if trial:
                self._trial_in_flight = False

    def _admit(self) -> bool:
        """Whether this call is the half-open trial; raises BreakerOpen if it may not go."""
        state = self._breaker.current_state
        if state == pybreaker.STATE_CLOSED:
            return False
        if self._trial_in_flight:
            raise self._rejection()
        if state == pybreaker.STATE_OPEN:
            opened_at = self._storage.opened_at
            if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self._reset_timeout):
                raise self._rejection()
            self._breaker.half_open()
        self._trial_in_flight = True
        return True

    def _record(self, verdict: Callable[[], None]) -> None:
        if self._breaker.current_state == pybreaker.STATE_OPEN:
            return  # opened meanwhile by another call: a late verdict changes nothing
        with contextlib.suppress(_Failure):
            self._breaker.call(verdict)

    def _rejection(self) -> BreakerOpen:
        self.metrics.rejected[self.name] += 1
        return BreakerOpen(self.name, self._reset_timeout)


class _Failure(Exception):
    """How a counted failure is reported to pybreaker (the only error it ever sees)."""


def _raise_failure() -> NoReturn:
    raise _Failure


def _answered() -> None:
    return None


def is_cancellation(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError)


def is_no_verdict(error: BaseException) -> bool:
    """A cancelled caller, or an error marked NoVerdict: nothing learnt about the dependency."""
    return is_cancellation(error) or isinstance(error, NoVerdict)
