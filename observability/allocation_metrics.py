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
