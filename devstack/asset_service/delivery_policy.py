"""Event Grid's webhook delivery rules: which answers count, when to retry, when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

# Event Grid's schedule after the 1st, 2nd, ... failed attempt; the last step repeats.
RETRY_SCHEDULE_SECONDS = (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
# Webhook answers Event Grid never retries: the event goes straight to dead-letter.
NON_RETRYABLE_STATUSES = frozenset({400, 401, 403, 404, 413})


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "deadLetter"


class DeadLetterReason(StrEnum):
    NON_RETRYABLE_STATUS = "NonRetryableStatusCode"
    MAX_DELIVERY_ATTEMPTS = "MaxDeliveryAttemptsExceeded"
    TIME_TO_LIVE = "TimeToLiveExceeded"


def judge(status: int | None) -> Verdict:
    """Any 2xx delivers; the statuses above dead-letter; the rest (and no answer) retry."""
    if status is not None and 200 <= status < 300:
        return Verdict.DELIVERED
    if status in NON_RETRYABLE_STATUSES:
        return Verdict.DEAD_LETTER
    return Verdict.RETRY


@dataclass(frozen=True)
class DeliveryPolicy:
    """Event Grid's defaults; retry_scale shrinks every delay and the time to live, for tests."""

    retry_scale: float = 1.0
    max_events_per_batch: int = 10
    response_timeout_seconds: float = 30.0
    max_delivery_attempts: int = 30
    time_to_live_seconds: float = 24 * 3600

    def __post_init__(self) -> None:
        if not self.retry_scale > 0:
            raise ValueError("the retry scale must be positive")
        if self.max_events_per_batch < 1:
            raise ValueError("a batch holds at least one event")
        if not self.response_timeout_seconds > 0:
            raise ValueError("the response timeout must be positive")

    def retry_delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after `attempts` failed tries (1 for the first), with +-20 % jitter."""
        step = RETRY_SCHEDULE_SECONDS[min(attempts, len(RETRY_SCHEDULE_SECONDS)) - 1]
        return step * self.retry_scale * rng.uniform(0.8, 1.2)

    def give_up(
        self, attempts: int, published_at: float, next_try_at: float
    ) -> DeadLetterReason | None:
        """Why a retry must not be scheduled, or None while the event may still be retried."""
        if attempts >= self.max_delivery_attempts:
            return DeadLetterReason.MAX_DELIVERY_ATTEMPTS
        if next_try_at > published_at + self.time_to_live_seconds * self.retry_scale:
            return DeadLetterReason.TIME_TO_LIVE
        return None
