"""Metrics of the resilience layer: circuit breaker states, retries and IoT Hub throttling.

OpenTelemetry API only; with no SDK meter provider every instrument is the API's no-op. The
breaker state is an observable gauge, read from the live breakers at each collection, so an open
breaker is reported open in every export until it closes (an alert can ask "open for 5 minutes"
without depending on a transition falling in its window).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

BREAKER_STATE = "resilience.breaker.state"
RETRIES = "resilience.retries"
IOT_HUB_THROTTLED = "iothub.throttled_requests"

DEPENDENCY = "resilience.dependency"
ERROR_TYPE = "error.type"
HUB = "iothub.hub"
OPERATION = "iothub.operation"

# Ordered by how bad: a dashboard's max over a window shows the worst state it saw.
STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class WatchedBreaker(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...


class ResilienceMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._breakers: weakref.WeakSet[WatchedBreaker] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            BREAKER_STATE,
            callbacks=[self._observe_breakers],
            unit="{state}",
            description="Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open",
        )
        self._retries = meter.create_counter(
            RETRIES, unit="{retry}", description="Calls retried after a transient failure"
        )
        self._throttled = meter.create_counter(
            IOT_HUB_THROTTLED,
            unit="{request}",
            description="IoT Hub requests answered 429 (over the hub's quota)",
        )

    def watch(self, breaker: WatchedBreaker) -> None:
        """Report `breaker`'s state while it lives."""
        with self._lock:
            self._breakers.add(breaker)

    def retried(self, dependency: str, error: BaseException | None) -> None:
        attributes = {DEPENDENCY: dependency}
        if error is not None:
            attributes[ERROR_TYPE] = type(error).__name__
        self._retries.add(1, attributes)

    def throttled(self, hub: str, operation: str) -> None:
        self._throttled.add(1, {HUB: hub, OPERATION: operation})

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            breakers = list(self._breakers)
        # One point per dependency: breakers rebuilt under one name report the worst state.
        worst: dict[str, int] = {}
        for breaker in breakers:
            value = STATE_VALUES.get(breaker.state, STATE_VALUES["open"])
            worst[breaker.name] = max(value, worst.get(breaker.name, 0))
        return [Observation(value, {DEPENDENCY: name}) for name, value in sorted(worst.items())]


_global: ResilienceMetrics | None = None
_global_lock = threading.Lock()


def global_resilience_metrics() -> ResilienceMetrics:
    """One set of instruments per process, on the global meter provider (the API's proxy until
    start-up sets the SDK's): an observable gauge registered twice would report twice."""
    global _global
    with _global_lock:
        if _global is None:
            _global = ResilienceMetrics(metrics.get_meter("resilience"))
        return _global
