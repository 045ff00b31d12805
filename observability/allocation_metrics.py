"""The allocation webhook's metrics: their names, units and attributes in one place, for the
handler, the tests and docs/observability.md. OpenTelemetry API only: with no SDK meter provider
configured, every instrument is the API's no-op.

One counter with `outcome` and `reason` rather than separate fallback and refusal counters: the
four outcomes partition the requests, so one counter sums to the request count, a rate per
outcome is a filter on it, and the attributes are the allocation span's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import metrics

from observability import trace_attributes as attr

ALLOCATIONS = "dps.allocations"
ALLOCATION_DURATION = "dps.allocation.duration"

# The attributes a data point may carry, each of bounded cardinality (no device or request ids):
# outcome always; hub and role when allocated (or fallback); reason when refused (the problem's
# code) or failed (the error's type). A fallback's reason is the outage's message, free text, so
# it stays on the span and the log line only.
METRIC_ATTRIBUTES = (attr.OUTCOME, attr.REASON, attr.HUB, attr.ROLE)
_REASONED = ("refused", "failed")
# The semantic conventions' boundaries for a request duration in seconds (as for
# http.server.request.duration); the SDK's defaults are meant for milliseconds and would put
# every allocation (DPS allows it 5 s) in the first bucket.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class AllocationMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._allocations = meter.create_counter(
            ALLOCATIONS,
            unit="{allocation}",
            description="Allocation requests answered, by outcome",
        )
        self._duration = meter.create_histogram(
            ALLOCATION_DURATION,
            unit="s",
            description="Time to answer an allocation request, by outcome",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    def record(self, attributes: Mapping[str, str], seconds: float) -> None:
        """One answered request; `attributes`: the span's, of which the bounded ones are kept."""
        kept = {key: attributes[key] for key in METRIC_ATTRIBUTES if key in attributes}
        if kept.get(attr.OUTCOME) not in _REASONED:
            kept.pop(attr.REASON, None)
        self._allocations.add(1, kept)
        self._duration.record(seconds, {attr.OUTCOME: kept.get(attr.OUTCOME, "")})


def global_allocation_metrics() -> AllocationMetrics:
    """On the global meter provider: the API's proxy until start-up sets the SDK's."""
    return AllocationMetrics(metrics.get_meter("allocation"))
