"""Resilience: durable queues, reconciliation records and hub backpressure.

Work that cannot finish now is recorded durably instead of lost; writes toward a hub stay
under its throttle and treat 429 as backpressure; a failing hub's circuit opens.
"""

from resilience.durable_queue import (
    MAX_MESSAGE_BYTES,
    DurableQueue,
    QueueEncoding,
    QueueError,
    QueueRejected,
    QueueUnavailable,
    StorageQueue,
)
from resilience.hub_breakers import BreakerGuardedIotHubRegistry
from resilience.hub_rate_limit import RateLimitedIotHubRegistry, TokenBucket
from resilience.reconciliation import ReconciliationMessage, ReconciliationRecorder

__all__ = [
    "MAX_MESSAGE_BYTES",
    "BreakerGuardedIotHubRegistry",
    "DurableQueue",
    "QueueEncoding",
    "QueueError",
    "QueueRejected",
    "QueueUnavailable",
    "RateLimitedIotHubRegistry",
    "ReconciliationMessage",
    "ReconciliationRecorder",
    "StorageQueue",
    "TokenBucket",
]
