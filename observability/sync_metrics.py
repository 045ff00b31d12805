"""Metrics of the two sync directions: what became of each change, and how long an asset change
took to reach the twin. OpenTelemetry API only (no-op until start-up sets an SDK provider)."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import metrics

from observability.allocation_metrics import DURATION_BUCKETS

CHANGES = "sync.changes"
LAG = "sync.lag"

DIRECTION = "sync.direction"
RESULT = "sync.result"
ASSET_TO_TWIN = "asset_to_twin"
TWIN_TO_ASSET = "twin_to_asset"

# Lag spans queueing and Event Grid's own retries: buckets up to an hour.
LAG_BUCKETS = (*DURATION_BUCKETS, 30, 60, 300, 900, 3600)


class SyncMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._changes = meter.create_counter(
            CHANGES,
            unit="{change}",
            description="Changes handled per sync direction, by result (written, echo, ...)",
        )
        self._lag = meter.create_histogram(
            LAG,
            unit="s",
            description="Asset change time to the twin write it caused",
            explicit_bucket_boundaries_advisory=list(LAG_BUCKETS),
        )

    def changes(self, direction: str, result: str, count: int = 1) -> None:
        if count:
            self._changes.add(count, {DIRECTION: direction, RESULT: result})

    def twin_written(self, changed_at: datetime | None, now: datetime | None = None) -> None:
        """An asset change reached its twin; `changed_at`: the event's time, when it had one."""
        if changed_at is None:
            return
        now = now or datetime.now(UTC)
        # The asset system's clock is not ours: a change "from the future" counts as no lag.
        self._lag.record(max(0.0, (now - changed_at).total_seconds()), {DIRECTION: ASSET_TO_TWIN})


def global_sync_metrics() -> SyncMetrics:
    return SyncMetrics(metrics.get_meter("sync"))
