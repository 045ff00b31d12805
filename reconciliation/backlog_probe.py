"""Measure what waits on the reconciliation and dead-letter queues, for the backlog gauges.

Run by a timer (the queues are read, never changed). A queue that cannot be read is logged and
keeps its last reading: a probe that fails says nothing about the backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from observability.reconciliation_metrics import (
    BacklogReading,
    ReconciliationMetrics,
    global_reconciliation_metrics,
)
from resilience.queue_port import BacklogSource, QueueBacklog, QueueError

_logger = logging.getLogger("reconciliation.backlog")


def reading_of(backlog: QueueBacklog, now: datetime) -> BacklogReading:
    """The oldest visible message's age in seconds; 0 when none is visible."""
    age = 0.0
    if backlog.oldest_enqueued_at is not None:
        age = max(0.0, (now - backlog.oldest_enqueued_at).total_seconds())
    return BacklogReading(backlog.queue_name, backlog.messages, age)


class BacklogProbe:
    def __init__(
        self,
        queues: Sequence[BacklogSource],
        *,
        metrics: ReconciliationMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._queues = tuple(queues)
        self._metrics = metrics or global_reconciliation_metrics()
        self._clock = clock

    async def run(self, *, request_id: str) -> list[BacklogReading]:
        readings = []
        for queue in self._queues:
            try:
                backlog = await queue.backlog()
            except QueueError as error:
                _logger.warning(
                    "queue backlog not measured",
                    extra={
                        "requestId": request_id,
                        "queue": error.queue_name,
                        "reason": type(error).__name__,
                    },
                )
                continue
            reading = reading_of(backlog, self._clock())
            self._metrics.backlog(reading)
            readings.append(reading)
        _logger.info(
            "queue backlog",
            extra={
                "requestId": request_id,
                **{f"{r.queue}Messages": r.messages for r in readings},
                **{f"{r.queue}OldestSeconds": round(r.oldest_age_seconds) for r in readings},
            },
        )
        return readings
