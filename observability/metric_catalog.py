"""Every metric the app records, with the attributes its data points may carry: the one list the
workbook and alert queries of infra/ (tests/unit/test_infra.py) and docs/observability.md
(tests/unit/test_docs.py) are checked against."""

from __future__ import annotations

from observability import allocation_metrics as allocation
from observability import reconciliation_metrics as reconciliation
from observability import resilience_metrics as resilience
from observability import sync_metrics as sync
from observability import trace_attributes as attr

METRICS: dict[str, frozenset[str]] = {
    allocation.ALLOCATIONS: frozenset(allocation.METRIC_ATTRIBUTES),
    allocation.ALLOCATION_DURATION: frozenset({attr.OUTCOME}),
    resilience.BREAKER_STATE: frozenset({resilience.DEPENDENCY}),
    resilience.RETRIES: frozenset({resilience.DEPENDENCY, resilience.ERROR_TYPE}),
    resilience.IOT_HUB_THROTTLED: frozenset({resilience.HUB, resilience.OPERATION}),
    sync.CHANGES: frozenset({sync.DIRECTION, sync.RESULT}),
    sync.LAG: frozenset({sync.DIRECTION}),
    reconciliation.BACKLOG_MESSAGES: frozenset({reconciliation.QUEUE}),
    reconciliation.BACKLOG_AGE: frozenset({reconciliation.QUEUE}),
    reconciliation.MESSAGES: frozenset({reconciliation.KIND, reconciliation.RESULT}),
    reconciliation.DEAD_LETTERS: frozenset({reconciliation.KIND, reconciliation.REPLAYABLE}),
}
