"""Retries with tenacity: exponential backoff with jitter, a per-attempt timeout, a deadline.

Only transient failures are retried; a Retry-After is honoured when it fits in the budget,
and a wait that would overrun the budget ends the retries instead of sleeping past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from app_errors import DependencyUnavailable
from observability.resilience_metrics import ResilienceMetrics, global_resilience_metrics
from resilience.deadline import remaining

T = TypeVar("T")
_logger = logging.getLogger("resilience.retry")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    deadline_seconds: float = 4.0
    attempt_timeout_seconds: float = 2.0
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 1.0


class DeadlineExceeded(DependencyUnavailable, TimeoutError):
    """The budget ran out before an attempt could start or finish."""


async def call_with_retries(
    operation: Callable[[float], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    retry_after: Callable[[BaseException], float | None] = lambda error: None,
    on_timeout: Callable[[float], BaseException] = lambda seconds: DeadlineExceeded(
        f"the budget of {seconds:.2f} s is spent"
    ),
    what: str = "call",
    dependency: str = "unnamed",
    metrics: ResilienceMetrics | None = None,
) -> T:
    """`what`: the call, for the log; `dependency`: its service, a bounded metric attribute."""
    budget = remaining(policy.deadline_seconds)
    deadline = time.monotonic() + budget
    backoff = wait_exponential(
        multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds
    ) + wait_random(0, policy.initial_backoff_seconds)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = retry_after(error) if error is not None else None
        return max(backoff(state), hinted or 0.0)

    def stop(state: RetryCallState) -> bool:
        if stop_after_attempt(policy.max_attempts)(state):
            return True
        # Do not start a wait that the budget cannot cover.
        return time.monotonic() + wait(state) >= deadline

    async def attempt() -> T:
        left = deadline - time.monotonic()
        if left <= 0:
            raise on_timeout(budget)
        # The operation enforces the limit itself, so that it can do so inside a breaker, where
        # a timeout is a verdict and a cancelled call is none. A limit under the attempt timeout
        # was set by the budget: its timeout says nothing about the dependency.
        return await operation(min(policy.attempt_timeout_seconds, left))

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        (metrics or global_resilience_metrics()).retried(dependency, error)
        _logger.info(
            "retrying",
            extra={
                "what": what,
                "attempt": state.attempt_number,
                "error": type(error).__name__,
                "waitSeconds": round(state.upcoming_sleep, 3),
            },
        )

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(is_transient),
        reraise=True,
        before_sleep=log_retry,
    )
    return await retrying(attempt)
