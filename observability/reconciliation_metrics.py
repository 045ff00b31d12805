"""Metrics of reconciliation: messages handled, dead letters written, and the backlog.

The backlog (messages waiting and the oldest one's age, per queue) is measured by a timer, which
peeks the queues; observable gauges report the latest measurement at each collection, so a
stuck backlog stays visible between measurements.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

MESSAGES = "reconciliation.messages"
DEAD_LETTERS = "reconciliation.dead_letters"
BACKLOG_MESSAGES = "reconciliation.backlog.messages"
BACKLOG_AGE = "reconciliation.backlog.age"

KIND = "reconciliation.kind"
RESULT = "reconciliation.result"
REPLAYABLE = "dead_letter.replayable"
QUEUE = "messaging.destination.name"


@dataclass(frozen=True)
class BacklogReading:
    queue: str
    messages: int
    oldest_age_seconds: float


class ReconciliationMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._readings: dict[str, BacklogReading] = {}
        self._lock = threading.Lock()
        self._messages = meter.create_counter(
            MESSAGES, unit="{message}", description="Reconciliation messages handled, by result"
        )
        self._dead_letters = meter.create_counter(
            DEAD_LETTERS, unit="{message}", description="Dead letters written, by kind"
        )
        meter.create_observable_gauge(
            BACKLOG_MESSAGES,
            callbacks=[self._observe_messages],
            unit="{message}",
            description="Messages waiting per queue (the queue's approximate count)",
        )
        meter.create_observable_gauge(
            BACKLOG_AGE,
            callbacks=[self._observe_age],
            unit="s",
            description="Age of the oldest message waiting per queue (0 when empty)",
        )

    def handled(self, kind: str, result: str) -> None:
        self._messages.add(1, {KIND: kind, RESULT: result})

    def dead_lettered(self, kind: str, replayable: bool) -> None:
        self._dead_letters.add(1, {KIND: kind, REPLAYABLE: replayable})

    def backlog(self, reading: BacklogReading) -> None:
        with self._lock:
            self._readings[reading.queue] = reading

    def _observe_messages(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            readings = list(self._readings.values())
        return [Observation(r.messages, {QUEUE: r.queue}) for r in readings]

    def _observe_age(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            readings = list(self._readings.values())
        return [Observation(r.oldest_age_seconds, {QUEUE: r.queue}) for r in readings]


_global: ReconciliationMetrics | None = None
_global_lock = threading.Lock()


def global_reconciliation_metrics() -> ReconciliationMetrics:
    """One set per process: observable gauges registered twice would report twice."""
    global _global
    with _global_lock:
        if _global is None:
            _global = ReconciliationMetrics(metrics.get_meter("reconciliation"))
        return _global
